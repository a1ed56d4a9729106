"""`sideman play`: a MIDI file plays the human's part in simulated real time through the same
Session the live box runs; what the AI would have sent is collected on a simulated scheduler that
follows the live one's rules (timed sends, HUSH drops what is queued and ends what sounds)."""

from __future__ import annotations

import heapq
import itertools
import statistics
from dataclasses import dataclass

from sideman import messages as mm
from sideman.clock import NS_PER_S
from sideman.model.events import AI, Event, Note, Pedal
from sideman.model.voice import HUSH
from sideman.play.session import Session

TICK_S = 0.005   # the live engine ticks every 5 ms
TAIL_S = 10.0    # keep listening this long after the last human note (room for the last answer)


def performance_messages(events: list[Event]) -> list[tuple[float, tuple]]:
    """Note and pedal events as timed channel messages; at equal times offs before ons."""
    timed = []
    for e in events:
        if isinstance(e, Pedal):
            timed.append((e.onset_s, 1, mm.control_change(0, mm.CC_SUSTAIN, 127 if e.down else 0)))
        else:
            timed.append((e.onset_s, 2, mm.note_on(0, e.pitch, max(1, e.velocity))))
            timed.append((e.onset_s + max(e.duration_s, 0.01), 0, mm.note_off(0, e.pitch)))
    timed.sort(key=lambda item: (item[0], item[1]))
    return [(t, msg) for t, _, msg in timed]


class SimulatedScheduler:
    def __init__(self):
        self._pending: list = []
        self._seq = itertools.count()
        self._sounding: dict[int, tuple[float, int]] = {}  # pitch -> (onset, velocity)
        self.notes: list[Note] = []
        self.hushes = 0

    def take(self, items, now_s: float) -> None:
        for item in items:
            if item is HUSH:
                self.advance(now_s)
                self._pending.clear()
                for pitch in list(self._sounding):
                    self._end(pitch, now_s)
                self.hushes += 1
            else:
                t_ns, message = item
                heapq.heappush(self._pending, (t_ns / NS_PER_S, next(self._seq), message))

    def advance(self, now_s: float) -> None:
        while self._pending and self._pending[0][0] <= now_s:
            t, _, message = heapq.heappop(self._pending)
            if mm.is_note_on(message):
                if message[1] in self._sounding:
                    self._end(message[1], t)
                self._sounding[message[1]] = (t, message[2])
            elif mm.is_note_off(message) and message[1] in self._sounding:
                self._end(message[1], t)

    def finish(self, end_s: float) -> None:
        self.advance(float("inf"))
        for pitch in list(self._sounding):
            self._end(pitch, end_s)

    def _end(self, pitch: int, t: float) -> None:
        onset, velocity = self._sounding.pop(pitch)
        self.notes.append(Note(onset, pitch, velocity, max(0.0, t - onset), AI))


@dataclass
class Recording:
    """What a simulated session played: the human's events, the AI's notes, and the session (its log)."""
    human: list[Event]
    ai: list[Note]
    session: Session

    def summary(self) -> dict:
        log = self.session.log
        gaps_ms, gaps_beats = [], []
        for answer in log.answers:
            if answer.phrase_end_s is not None and answer.first_note_s is not None:
                gap = answer.first_note_s - answer.phrase_end_s
                gaps_ms.append(gap * 1000)
                gaps_beats.append(gap / answer.beat_s if answer.beat_s else float("nan"))
        answered = [a for a in log.answers if a.notes > 0]
        return {
            "mode": self.session.policy.name,
            "voice": self.session.improviser.name,
            "phrases_heard": len(log.phrases),
            "answers": len(answered),
            "ai_notes": len(self.ai),
            "human_notes": sum(1 for e in self.human if isinstance(e, Note)),
            "barge_ins": log.barge_ins,
            "ai_onsets_during_human_notes": self.ai_onsets_during_human_notes(),
            "response_gap_ms": _distribution(gaps_ms),
            "response_gap_beats": _distribution(gaps_beats),
            "final_tempo_bpm": round(self.session.listener.beats.estimate(self._end_s()).tempo_bpm, 1),
        }

    def ai_onsets_during_human_notes(self, grace_s: float = 0.1) -> int:
        """AI note-ons while a human key is down (past the barge-in grace of its onset)."""
        human = sorted((n.onset_s, n.onset_s + n.duration_s) for n in self.human if isinstance(n, Note))
        count = 0
        for note in self.ai:
            if any(start + grace_s < note.onset_s < end for start, end in human if start < note.onset_s):
                count += 1
        return count

    def _end_s(self) -> float:
        times = [e.onset_s for e in self.human] + [n.onset_s + n.duration_s for n in self.ai]
        return max(times, default=0.0)


def play_performance(events: list[Event], session: Session, tail_s: float = TAIL_S,
                     extra_messages: list[tuple[float, tuple]] = ()) -> Recording:
    """extra_messages: (time, message) the player also sends, e.g. the "keep" CC."""
    messages = sorted(performance_messages(events) + list(extra_messages), key=lambda item: item[0])
    scheduler = SimulatedScheduler()
    end_s = (messages[-1][0] if messages else 0.0) + tail_s
    i = 0
    for step in range(int(end_s / TICK_S) + 1):
        t = step * TICK_S
        while i < len(messages) and messages[i][0] <= t:
            msg_t, message = messages[i]
            scheduler.advance(msg_t)
            scheduler.take(session.hear(message, int(msg_t * NS_PER_S)), msg_t)
            i += 1
        scheduler.advance(t)
        scheduler.take(session.tick(int(t * NS_PER_S)), t)
    session.hush(end_s)
    scheduler.finish(end_s)
    return Recording(events, sorted(scheduler.notes, key=lambda n: (n.onset_s, n.pitch)), session)


def _distribution(values: list[float]) -> dict:
    values = sorted(v for v in values if v == v)
    if not values:
        return {"n": 0}

    def q(p):
        return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]
    return {"n": len(values), "median": round(statistics.median(values), 3), "p10": round(q(0.1), 3),
            "p90": round(q(0.9), 3), "min": round(values[0], 3), "max": round(values[-1], 3)}

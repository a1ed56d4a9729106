"""The session: the voice the engine talks to. It feeds the listener, lets the mode's policy decide
when to play, pulls notes lazily from the improviser and commits each to the scheduler shortly
before it sounds (so a barge-in or a mode change drops only what was never sent).

Everything runs on the timestamps it is given: the live engine passes the monotonic clock, `sideman
play` passes a simulated one, and both go through this same code."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sideman import messages as mm
from sideman.clock import NS_PER_S
from sideman.controls import defaults as control_defaults
from sideman.controls import value as control_value
from sideman.listen.listener import Listener, ListenerState
from sideman.listen.phrases import VOICE_CUE_ON, Phrase
from sideman.model.events import Note
from sideman.model.voice import HUSH
from sideman.play.note_stream import NoteStream, PeekableNotes
from sideman.play.modes import make_policy
from sideman.play.request import ANSWER, PlayRequest
from sideman.play.steering import Steering
from sideman.play.texture import dress

# A note is handed to the scheduler this long before it sounds: enough to ride out an engine
# tick (5 ms) and a busy moment, short enough that a barge-in rarely finds anything queued.
COMMIT_AHEAD_S = 0.06
RECENT_HUMAN_NOTES = 256
GRID_WAIT_S = 0.15   # an answer waits this long at most for the beat grid


@dataclass
class AnswerLog:
    kind: str
    decided_s: float
    start_s: float
    phrase_end_s: float | None = None
    first_note_s: float | None = None
    notes: int = 0
    barged_in: bool = False
    beat_s: float = 0.5          # the tracked beat when it was decided


# What the session log keeps: the newest phrases and answers (about two hours of trading), so a
# box left on for days does not grow.
LOG_KEEP = 1000


@dataclass
class SessionLog:
    phrases: deque[Phrase] = field(default_factory=lambda: deque(maxlen=LOG_KEEP))
    answers: deque[AnswerLog] = field(default_factory=lambda: deque(maxlen=LOG_KEEP))
    barge_ins: int = 0


class Session:
    def __init__(self, improviser, mode: str = "call-response", controls: dict | None = None,
                 styles: tuple[str, ...] = ("mehldau",), seed: int = 0, answer_on_grid: bool = True):
        self.improviser = improviser
        self.controls = controls if controls is not None else control_defaults()
        self.styles = styles
        self.warnings: list[str] = []   # e.g. a style table that could not be loaded
        self.listener = Listener(tempo_bpm=control_value(self.controls, "tempo_bpm"))
        # the voice's own guess of when the player plays again is one cue of the phrase-end rule
        # (phrases.VOICE_CUE_ON: not yet, see there)
        if VOICE_CUE_ON:
            self.listener.phrases.turn_cue = lambda t_s, within_s: self.improviser.player_returns(t_s, within_s)
        self.policy = make_policy(mode)
        self.mode_changes = 0
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.answer_on_grid = answer_on_grid
        self.log = SessionLog()
        self.kept_phrase: Phrase | None = None
        self.last_human_onset_s: float | None = None
        self._human_notes: deque[Note] = deque(maxlen=RECENT_HUMAN_NOTES)
        # What the AI is asked to play, in order: note streams with peek() (the next note, None when
        # the stream is over) and pop() (commit it).
        self._streams: deque[tuple[NoteStream, AnswerLog | None]] = deque()
        self._pedal_down = False
        self._to_learn: list[list[Note]] = []   # phrases the voice learns in the next quiet tick
        self._sounding_until: dict[int, float] = {}   # AI pitch -> when its committed note ends
        self._out: list = []
        self._state_cache: tuple[float, ListenerState] | None = None
        self._clock_s = 0.0  # the time of the message or tick being handled

    # --- what the engine calls (the Voice contract) --------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.improviser.name}/{self.policy.name}"

    @property
    def improviser_name(self) -> str:
        return self.improviser.name

    @property
    def improviser_status(self) -> dict:
        return self.improviser.status

    @property
    def mode(self) -> str:
        return self.policy.name

    def use_clock(self, clock_follower) -> None:
        """Follow incoming MIDI clock (tempo and beat) when it runs."""
        self.listener.clock = clock_follower

    def hear(self, message, t_ns: int):
        t = self._clock_s = t_ns / NS_PER_S
        self._out = []
        if message[0] & 0xF0 == mm.CONTROL_CHANGE and len(message) == 3 \
                and message[1] == control_value(self.controls, "keep_cc") and message[2] >= 64:
            self.keep_phrase(t)
        heard = self.listener.hear(message, t)
        self._state_cache = None
        if heard.note_on is not None:
            self.last_human_onset_s = t
            self.policy.on_note(self, t, heard.note_on)
            self.improviser.hear_note(self, t, heard.note_on, message[2])
        elif message[0] & 0xF0 == mm.CONTROL_CHANGE and len(message) == 3 and message[1] == mm.CC_SUSTAIN:
            down = message[2] >= 64
            if down != self._pedal_down:
                self._pedal_down = down
                self.improviser.hear_pedal(self, t, down)
        self._commit(t)
        return self._out

    def tick(self, t_ns: int):
        t = self._clock_s = t_ns / NS_PER_S
        self._out = []
        self._state_cache = None
        self.listener.phrases.patience = control_value(self.controls, "patience")
        heard = self.listener.tick(t)
        if heard.phrase_ended is not None:
            phrase = heard.phrase_ended
            self.log.phrases.append(phrase)
            self._human_notes.extend(phrase.notes)
            self.policy.on_phrase_end(self, phrase, t)
            self._to_learn.append(phrase.notes)
        self.policy.on_tick(self, t)
        self._commit(t)
        if not self._out:
            # Work that can wait, only in ticks that send nothing (an answer decided this tick
            # leaves first; this runs in the next tick, 5 ms later): the voice learns the phrase,
            # then the lookahead and speculative answers (the transformer).
            while self._to_learn:
                self.improviser.learn(self._to_learn.pop(0))
            self.improviser.think(self, t)
            self._commit(t)
        return self._out

    # --- what policies call -----------------------------------------------------------------------
    @property
    def steering(self) -> Steering:
        return Steering.from_controls(self.controls, self.styles)

    @property
    def trade_bars(self) -> int:
        return control_value(self.controls, "trade_bars")

    def state(self, t_s: float) -> ListenerState:
        if self._state_cache is None or self._state_cache[0] != t_s:
            self._state_cache = (t_s, self.listener.state(t_s))
        return self._state_cache[1]

    def play(self, request: PlayRequest, phrase: Phrase | None = None) -> None:
        t = request.start_s
        entry = AnswerLog(request.kind, decided_s=self._now(), start_s=t,
                          phrase_end_s=phrase.end_s if phrase is not None else None,
                          beat_s=self.state(self._now()).beat_s)
        self.log.answers.append(entry)
        steering = self.steering
        stream = self.improviser.improvise(request, self.state_now, steering, self.rng)
        if not hasattr(stream, "peek"):
            stream = PeekableNotes(stream)
        if request.kind == ANSWER:   # two hands, on the pulse, shaped (comping and duet keep their own)
            stream = dress(stream, request, self.state_now, steering.left_hand, self.rng)
        self._streams.append((stream, entry))

    def hush(self, t_s: float, barge_in: bool = False) -> None:
        """Drop what is planned and end what sounds (the engine turns HUSH into note-offs)."""
        if barge_in:
            self.log.barge_ins += 1
            # Only the latest answer can still be sounding (the log grows all gig long).
            if self.log.answers and self.log.answers[-1].first_note_s is not None:
                self.log.answers[-1].barged_in = any(end > t_s for end in self._sounding_until.values())
        self._streams.clear()
        self.improviser.cancel(self, t_s)
        self._sounding_until.clear()
        self._out.append(HUSH)

    def ai_busy(self, t_s: float) -> bool:
        return bool(self._streams) or any(end > t_s for end in self._sounding_until.values())

    def state_now(self) -> ListenerState:
        """What the listener knows at the time being handled (voices read it as they go)."""
        return self.state(self._now())

    # --- what the improviser reads (contracts.SessionView) -----------------------------------
    def predicted_answer(self, t_s: float) -> PlayRequest | None:
        """The answer the mode would ask for if the phrase being played has ended with the key
        just released (call and response only). The transformer samples it ahead."""
        return self.policy.predict(self, t_s)

    @property
    def model_mode(self) -> str:
        return self.policy.model_mode

    @property
    def last_release_s(self) -> float | None:
        return self.listener.phrases.last_release_s

    def newest_human_duration_s(self) -> float | None:
        phrases = self.listener.phrases
        for phrase in (phrases.current, phrases.last):
            if phrase is not None and phrase.notes:
                return phrase.notes[-1].duration_s
        return None

    def keep_phrase(self, t_s: float) -> Phrase | None:
        """"Keep that phrase": the last finished phrase (or the one being played) becomes the
        material of variation mode."""
        phrase = self.listener.phrases.last
        current = self.listener.phrases.current
        if current is not None and current.notes:
            phrase = current
        if phrase is not None and phrase.notes:
            self.kept_phrase = Phrase(phrase.start_s, phrase.end_s, list(phrase.notes))
        return self.kept_phrase

    def use_styles(self, styles: tuple[str, ...], models: dict) -> None:
        """New ends for the style blend control (the panel's partner style); the tables are
        loaded by the caller, off this thread."""
        self.improviser.styles.update(models)
        self.styles = tuple(styles)

    def available_styles(self) -> list[str]:
        """The style names this session's voice can play (the panel's partner list)."""
        return self.improviser.available_styles()

    def set_mode(self, mode: str, t_s: float) -> None:
        self.policy = make_policy(mode)
        self.mode_changes += 1
        self.hush(t_s)

    def recent_human_notes(self) -> list[Note]:
        current = self.listener.phrases.current
        return list(self._human_notes) + (list(current.notes) if current is not None else [])

    def answer_start(self, phrase: Phrase, t_s: float) -> float:
        """Now, or the next eighth of the tracked grid when it comes within GRID_WAIT_S (the
        answer then lands in time with the player without making them wait)."""
        state = self.state(t_s)
        if not self.answer_on_grid or state.beat.confidence < 0.5:
            return t_s
        half = state.beat.period_s / 2
        aligned = state.beat.last_beat_s + math.ceil((t_s - state.beat.last_beat_s) / half - 1e-9) * half
        return aligned if aligned - t_s <= GRID_WAIT_S else t_s

    def register_around(self, notes) -> tuple[int, int]:
        """Answers sit where the call was played, two octaves wide, moved by register_shift."""
        pitches = [n.pitch for n in notes] or [66]
        centre = int(round(sum(pitches) / len(pitches))) + self.steering.register_shift
        centre = min(96, max(36, centre))
        return (centre - 14, centre + 14)

    # --- committing notes to the scheduler ------------------------------------------------------
    def _now(self) -> float:
        return self._clock_s

    def _commit(self, t_s: float) -> None:
        if len(self._sounding_until) > 64:
            self._sounding_until = {p: end for p, end in self._sounding_until.items() if end > t_s}
        horizon = t_s + COMMIT_AHEAD_S
        while True:
            head = self._peek()
            if head is None:
                return
            note, stream, entry = head
            if note.onset_s > horizon:
                return
            stream.pop()
            onset = max(note.onset_s, t_s)
            if self._sounding_until.get(note.pitch, -1.0) > onset:
                continue  # the same key is still down: a second note-on would be cut by the first's off
            end = onset + note.duration_s
            self._sounding_until[note.pitch] = end
            self._out.append((int(onset * NS_PER_S), mm.note_on(0, note.pitch, note.velocity)))
            self._out.append((int(end * NS_PER_S), mm.note_off(0, note.pitch)))
            if entry is not None:
                entry.notes += 1
                if entry.first_note_s is None:
                    entry.first_note_s = onset

    def _peek(self):
        while self._streams:
            stream, entry = self._streams[0]
            note = stream.peek()
            if note is not None:
                return note, stream, entry
            if not stream.finished():
                return None   # its next note is still to come: later streams wait their turn
            self._streams.popleft()
        return None


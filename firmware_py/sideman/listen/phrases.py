"""Phrases ("MIDI voice activity"): when the player starts playing and when a phrase has ended.

A phrase starts with the first note after silence. It ends when every key has been up for the
phrase-end gap, which the *patience* control sets (0.61 s by default) and two things stretch:
- a short phrase waits up to SHORT_PHRASE_WAIT_S longer (0.81 s by default after a phrase of
  SHORT_PHRASE_S or less, less and less up to SURE_PHRASE_S): a horn player's longest breaths
  come early in a line, and a statement rarely ends that soon;
- this player's own breaths inside phrases, when they are longer (the box learns how they
  breathe, over the gig).

Why a silence that depends on the phrase's length: on real solos (WJazzD horn calls: the first
and the middle phrase of every file, `sideman-train phrase-end-cues`) the length of the phrase so
far is the one cue the listener has that tells a breath from an end sooner than a plain timer.
The rule chosen on the 535 train-split calls cuts into 1.9 % of them and answers the median call
after 0.61 s, where the 0.6 s timer cuts into 6.5 % and the 0.65 s timer 3.4 %; on the 52 val
calls 0 % at 0.61 s (timers: 7.7 % at 0.6 s, 0 % only from 0.7 s). On the 40 calls that
`eval-answers` plays, shorter ones (a median of 3.4 s against 4.3 s), it sits on the timer's curve
(2.5 % at 0.66 s, the 0.65 s timer 2.5 %): how much it gains depends on how long players'
phrases are. No rule on the length answers half of those 40 calls within 0.55 s without cutting
into one (the report's length_ceiling: 37.5 %; 56 % of the train calls). The other cues tried
there (the rest in beats and against the player's breaths, the last note's length, beat position
and scale degree, a falling, low or soft ending, the sub-phrase since the last breath) added
nothing.

The voice's own ear can move that gap too (`turn_cue`, the transformer's guess of when the player
plays again, `sideman.model.turns`): once the keys have been up for QUICKEST_GAP_S, a chance of
the player coming back within TURN_HORIZON_S below `end_below(patience)` ends the phrase there
and then, and a chance above BREATH_ABOVE (it hears a breath) stretches the gap by BREATH_WAIT_S.
Thresholds chosen on WJazzD train-split calls (`sideman-train turn-cues`). The session asks the
voice only while VOICE_CUE_ON: with the voice of 2026-12-06 the cue does not tell a breath from an
end (on val calls the chance the player comes back is ~0.7-0.8 at both), so no threshold got below
the silence timer's curve.
The sustain pedal does not hold a phrase open: a pianist often lets the last chord ring.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sideman.model.events import Note

# The phrase-end silence after a phrase of SURE_PHRASE_S or more, for patience 0 .. 1 (0.5, the
# default, is 0.61 s); a phrase of SHORT_PHRASE_S or less waits SHORT_PHRASE_WAIT_S more, one in
# between a share of it. The player's own long breaths may stretch it to LONGEST_GAP_S.
# Chosen by `sideman-train phrase-end-cues`.
SILENCE_SPAN_S = (0.31, 0.91)
SHORT_PHRASE_S = 2.0
SURE_PHRASE_S = 3.5
SHORT_PHRASE_WAIT_S = 0.2
LONGEST_GAP_S = 1.2
QUICKEST_GAP_S = 0.3       # the voice's cue may end a phrase from this silence on
BREATHS_KEPT = 32          # the player's latest rests inside phrases
BREATH_MARGIN = 1.1        # the gap stays this much above their long breaths
MIN_BREATHS = 4
# The voice's cue (turn_cue): its chance that the player plays again within TURN_HORIZON_S.
TURN_HORIZON_S = 0.5
END_BELOW = (0.10, 0.25)   # a chance below this ends the phrase early: at patience 1 .. 0
BREATH_ABOVE = 0.5         # a chance above this is a breath: wait BREATH_WAIT_S longer
BREATH_WAIT_S = 0.3
VOICE_CUE_ON = False       # off until `sideman-train turn-cues` finds a rule below the timer's curve


def phrase_end_gap_s(patience: float, phrase_s: float) -> float:
    """The silence that ends a phrase that has lasted phrase_s (first onset to last release), set
    by the patience control: longer after a short phrase."""
    quickest, slowest = SILENCE_SPAN_S
    gap = quickest + (slowest - quickest) * min(1.0, max(0.0, patience))
    return gap + short_phrase_wait_s(phrase_s)


def short_phrase_wait_s(phrase_s: float, short_s: float = SHORT_PHRASE_S, sure_s: float = SURE_PHRASE_S,
                        wait_s: float = SHORT_PHRASE_WAIT_S) -> float:
    """How much longer a phrase phrase_s long waits: all of wait_s up to short_s, none from sure_s."""
    return wait_s * min(1.0, max(0.0, (sure_s - phrase_s) / (sure_s - short_s)))


def end_below(patience: float) -> float:
    """The voice's return chance under which the phrase ends at once: more eager when impatient."""
    p = min(1.0, max(0.0, patience))
    return END_BELOW[1] + (END_BELOW[0] - END_BELOW[1]) * p


@dataclass
class Phrase:
    start_s: float
    end_s: float | None = None          # the last key release (set when the phrase has ended)
    notes: list[Note] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        end = self.end_s if self.end_s is not None else (self.notes[-1].onset_s if self.notes else self.start_s)
        return max(0.0, end - self.start_s)


class PhraseListener:
    def __init__(self, fixed_gap_s: float | None = None, patience: float = 0.5,
                 turn_cue: Callable[[float, float], float | None] | None = None):
        self.fixed_gap_s = fixed_gap_s  # a plain silence timer, blind to breaths and cues (baselines)
        self.patience = patience        # the session keeps it at the patience control
        self.turn_cue = turn_cue        # (t_s, within_s) -> the voice's chance the player comes back
        self.ended_by_cue = 0           # phrases the voice's cue ended before the silence did
        self.breaths: deque[float] = deque(maxlen=BREATHS_KEPT)
        self._long_breath_s = 0.0   # the 90th percentile of breaths, kept as they come (not per tick)
        self.current: Phrase | None = None
        self.last: Phrase | None = None
        self._held: dict[int, tuple[float, int]] = {}  # pitch -> (onset, velocity)
        self._last_release_s: float | None = None

    @property
    def in_phrase(self) -> bool:
        return self.current is not None

    @property
    def last_release_s(self) -> float | None:
        """When the last key of the phrase being played went up (None while keys are down)."""
        return self._last_release_s if not self._held else None

    @property
    def keys_down(self) -> int:
        return len(self._held)

    def note_on(self, t_s: float, pitch: int, velocity: int) -> Phrase | None:
        """Returns the new phrase when this note starts one."""
        started = None
        if self.current is None:
            self.current = started = Phrase(start_s=t_s)
            if self.last is not None and self.last.end_s is not None and t_s - self.last.end_s < LONGEST_GAP_S:
                # Back so soon: that "end" was a breath (and the AI cut in). Wait longer next time.
                self._breathed(t_s - self.last.end_s)
        elif not self._held and self._last_release_s is not None:
            self._breathed(t_s - self._last_release_s)   # a rest inside the phrase
        if pitch in self._held:  # a repeated note-on without an off: close the first
            self._close(t_s, pitch)
        self._held[pitch] = (t_s, velocity)
        return started

    def note_off(self, t_s: float, pitch: int) -> None:
        if pitch in self._held:
            self._close(t_s, pitch)
            if not self._held:
                self._last_release_s = t_s

    def _close(self, t_s: float, pitch: int) -> None:
        onset, velocity = self._held.pop(pitch)
        if self.current is not None:
            self.current.notes.append(Note(onset, pitch, velocity, t_s - onset))

    def end_gap_s(self) -> float:
        """How long every key must stay up for the phrase to end: the patience control's silence
        for the phrase as long as it is now, or a little more than this player's long breaths (the
        90th percentile of their latest rests inside phrases) when those are longer."""
        if self.fixed_gap_s is not None:
            return self.fixed_gap_s
        gap = max(phrase_end_gap_s(self.patience, self.phrase_so_far_s()), BREATH_MARGIN * self._long_breath_s)
        return min(LONGEST_GAP_S, gap)

    def phrase_so_far_s(self) -> float:
        """From the phrase's first onset to its last release (0 while none is being played or a
        key is down)."""
        release = self.last_release_s
        if self.current is None or release is None:
            return 0.0
        return release - self.current.start_s

    def _breathed(self, rest_s: float) -> None:
        self.breaths.append(rest_s)
        if len(self.breaths) >= MIN_BREATHS:
            self._long_breath_s = float(np.percentile(self.breaths, 90))

    def check_end(self, t_s: float) -> Phrase | None:
        """Returns the phrase when it has just ended (all keys up for the phrase-end gap, as the
        voice's cue moves it)."""
        if self.current is None or self._held or self._last_release_s is None:
            return None
        silence = t_s - self._last_release_s
        gap = self.end_gap_s()
        if self.fixed_gap_s is None and self.turn_cue is not None and silence >= QUICKEST_GAP_S:
            chance = self.turn_cue(t_s, TURN_HORIZON_S)
            if chance is not None and chance < end_below(self.patience):
                if silence < gap:
                    self.ended_by_cue += 1
                gap = silence
            elif chance is not None and chance > BREATH_ABOVE:
                gap = min(LONGEST_GAP_S, gap + BREATH_WAIT_S)
        if silence < gap:
            return None
        phrase = self.current
        phrase.end_s = self._last_release_s
        phrase.notes.sort(key=lambda n: (n.onset_s, n.pitch))
        self.current, self.last = None, phrase
        return phrase

"""Naming the chord the human plays, online.

A chord is scored against weighted templates, not plain sets: each quality says which tones define it
(a missing third or seventh costs), which are optional (the fifth, 9 under a 13), which tensions a
jazz voicing may add for free (9 and 11 on m7, 9 and 13 on 7) and treats everything else as foreign.
So a rootless Dm9 over a D bass is Dm7, a 6/9 voicing is C6/9 and not Am11, and 7alt needs two
alterations. The bass decides what the pitch classes alone cannot (C6 vs Am7, Cm6 vs Am7b5).

ChordListener turns a stream of note and pedal events into pitch-class weights (sounding notes full,
released ones as a fading memory, lone notes ramping in so passing tones count little) and keeps the
label steady: it changes at once after a chord attack, otherwise only when a rival has clearly won for
a while. (The textbook method it is measured against, `sideman-train eval-listen`, lives in
training/sideman_train/listen_baselines.py.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NOTE_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# Quality -> intervals above the root (compound intervals for tensions: 14 = 9th, 21 = 13th).
QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "m": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "m7": (0, 3, 7, 10),
    "maj7": (0, 4, 7, 11),
    "sus4": (0, 5, 7),
    "sus2": (0, 2, 7),  # not jazz shorthand, but pop (and POP909) is full of it
    "6": (0, 4, 7, 9),
    "m6": (0, 3, 7, 9),
    "9": (0, 4, 7, 10, 14),
    "13": (0, 4, 7, 10, 14, 21),
    "6/9": (0, 4, 7, 9, 14),
    "7sus4": (0, 5, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "dim": (0, 3, 6),
    "dim7": (0, 3, 6, 9),
    "aug": (0, 4, 8),
    "mMaj7": (0, 3, 7, 11),
    "7b9": (0, 4, 7, 10, 13),
    "7#9": (0, 4, 7, 10, 15),
    "7alt": (0, 4, 10, 15, 20),  # the usual alt voicing: root, 3, b7, #9, b13
}

# Chord scales (intervals) for melodic choices over each quality.
IONIAN, DORIAN, MIXOLYDIAN, LYDIAN = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 9, 10), (0, 2, 4, 5, 7, 9, 10), (0, 2, 4, 6, 7, 9, 11)
SCALES: dict[str, tuple[int, ...]] = {
    "maj": IONIAN, "6": IONIAN, "6/9": IONIAN, "sus2": IONIAN,
    "maj7": LYDIAN,  # the #11 avoids the 4th rubbing against the 3rd
    "m": DORIAN, "m7": DORIAN, "m6": DORIAN,
    "mMaj7": (0, 2, 3, 5, 7, 9, 11),            # melodic minor
    "7": MIXOLYDIAN, "9": MIXOLYDIAN, "13": MIXOLYDIAN, "sus4": MIXOLYDIAN, "7sus4": MIXOLYDIAN,
    "7b9": (0, 1, 3, 4, 6, 7, 9, 10),           # half-whole diminished
    "7#9": (0, 1, 3, 4, 6, 7, 9, 10),
    "7alt": (0, 1, 3, 4, 6, 8, 10),             # altered (7th mode of melodic minor)
    "m7b5": (0, 1, 3, 5, 6, 8, 10),             # locrian
    "dim": (0, 1, 3, 5, 6, 8, 10),
    "dim7": (0, 2, 3, 5, 6, 8, 9, 11),          # whole-half diminished
    "aug": (0, 2, 4, 6, 8, 10),                 # whole tone
}

# --- Scoring -------------------------------------------------------------------------------------
# Per quality: defining intervals (present: +1, missing: -MISSING), optional ones with their reward,
# free tensions (0); every other interval is foreign (-FOREIGN). Prior: small costs for rare qualities.
# Score = template . presence + bias, presence 0..1 per pitch class; linear, so all 21 x 12 chords
# are one matrix product. Constants set by hand against the jazz voicings in tests/test_chords.py and
# checked on POP909 (`sideman-train eval-listen`, training/sideman_train/eval_chords.py).
MISSING, FOREIGN = 1.3, 0.7
BASS_IS_ROOT = 1.0  # in jazz comping the left hand's lowest note is the root far more often than not
BASS_WEIGHT = 0.5   # extra presence of the bass pitch class (share of the loudest)
SUSPENDED, SUS_THIRD = ("sus4", "sus2", "7sus4"), 2.0
_FIFTH = {7: 1.0}  # the fifth counts when there, costs nothing when left out
_SPEC: dict[str, tuple[tuple[int, ...], dict[int, float], tuple[int, ...], float]] = {
    #          defining          optional             tensions       prior
    "maj":   ((0, 4),            _FIFTH,              (2,),          0.0),
    "m":     ((0, 3),            _FIFTH,              (2,),          0.0),
    "7":     ((0, 4, 10),        _FIFTH,              (2, 9, 6),     0.0),
    "m7":    ((0, 3, 10),        _FIFTH,              (2, 5),        0.0),
    "maj7":  ((0, 4, 11),        _FIFTH,              (2, 6, 9),     0.0),
    # A sus triad needs its fifth: C F alone is a fourth, not Csus4 (and G C E is C/G, not Gsus4).
    "sus4":  ((0, 5, 7),         {},                  (2,),          -0.05),
    "sus2":  ((0, 2, 7),         {},                  (5,),          -0.05),
    # A 6 chord keeps its fifth, or it is an inverted minor triad (Eb G C is Cm/Eb, not Eb6).
    "6":     ((0, 4, 9, 7),      {},                  (2,),          -0.02),
    "m6":    ((0, 3, 9, 7),      {},                  (2, 5),        -0.02),
    "9":     ((0, 4, 10, 2),     _FIFTH,              (9, 6),        -0.1),
    "13":    ((0, 4, 10, 9),     {7: 1.0, 2: 0.5},    (6,),          -0.1),
    "6/9":   ((0, 4, 9, 2),      _FIFTH,              (6,),          -0.1),
    "7sus4": ((0, 5, 10),        _FIFTH,              (2, 9),        -0.05),
    "m7b5":  ((0, 3, 6, 10),     {},                  (2, 5),        0.0),
    "dim":   ((0, 3, 6),         {},                  (),            -0.05),
    "dim7":  ((0, 3, 6, 9),      {},                  (2, 5, 11),    0.0),
    "aug":   ((0, 4, 8),         {},                  (),            -0.05),
    "mMaj7": ((0, 3, 11),        _FIFTH,              (2, 5),        -0.1),
    "7b9":   ((0, 4, 10, 1),     _FIFTH,              (9,),          -0.1),
    "7#9":   ((0, 4, 10, 3),     _FIFTH,              (),            -0.1),
    # Alterations are optional at 0.8 each, and the prior asks for two of them (one makes 7b9/7#9).
    "7alt":  ((0, 4, 10),        {1: 0.8, 3: 0.8, 6: 0.8, 8: 0.8}, (), -1.0),
}
QUALITY_ORDER = tuple(_SPEC)  # ties go to the earlier (commoner) quality


def _template(quality: str) -> tuple[np.ndarray, float]:
    defining, optional, tensions, prior = _SPEC[quality]
    row = np.full(12, -FOREIGN)
    for i in tensions:
        row[i] = 0.0
    for i, value in optional.items():
        row[i] = value
    for i in defining:
        row[i] = 1.0 + MISSING  # present: +1; the bias below charges MISSING for each absent one
    if quality in SUSPENDED:
        row[[3, 4]] = -SUS_THIRD  # a suspension is the absence of the third
    return row, prior - MISSING * len(defining)


def _template_matrix() -> tuple[np.ndarray, np.ndarray]:
    rows, biases = [], []
    for quality in QUALITY_ORDER:
        row, bias = _template(quality)
        for root in range(12):
            rows.append(np.roll(row, root))  # row[pc] = template[(pc - root) % 12]
            biases.append(bias)
    return np.array(rows), np.array(biases)


_MATRIX, _BIAS = _template_matrix()  # row index = quality index * 12 + root


@dataclass(frozen=True)
class Chord:
    root: int                 # pitch class 0..11 (0 = C)
    quality: str              # a key of QUALITIES
    bass: int | None = None   # pitch class of the bass when it is not the root (slash chord)

    @property
    def label(self) -> str:
        suffix = "" if self.quality == "maj" else self.quality
        slash = "" if self.bass is None else "/" + NOTE_NAMES[self.bass]
        return NOTE_NAMES[self.root] + suffix + slash

    def pitch_classes(self) -> frozenset[int]:
        pcs = {(self.root + i) % 12 for i in QUALITIES[self.quality]}
        if self.bass is not None:
            pcs.add(self.bass)
        return frozenset(pcs)

    def scale_pitch_classes(self) -> frozenset[int]:
        return frozenset((self.root + i) % 12 for i in SCALES[self.quality])

    def __str__(self) -> str:
        return self.label


def chord_scores(weights, bass_pc: int | None = None) -> np.ndarray | None:
    """Score of every (quality, root), index = quality index * 12 + root; None when fewer than two
    pitch classes count. The bass gets BASS_WEIGHT of the loudest level on top and is then the scale
    (1.0): the other tones are present as much as they sound next to the bass."""
    w = np.array(weights, dtype=float)
    peak = w.max()
    if peak <= 1e-9 or np.count_nonzero(w >= 0.2 * peak) < 2:
        return None
    if bass_pc is not None:
        w[bass_pc] += BASS_WEIGHT * peak
    scores = _MATRIX @ (w / w.max()) + _BIAS
    if bass_pc is not None:
        scores[bass_pc::12] += BASS_IS_ROOT
    return scores


def chord_at(index: int, bass_pc: int | None) -> Chord:
    root = index % 12
    return Chord(root, QUALITY_ORDER[index // 12], None if bass_pc in (None, root) else bass_pc)


def name_chord(weights, bass_pc: int | None = None) -> Chord | None:
    """Best chord for a 12-long pitch-class weight vector (None when silence/too little).

    weights: how strongly each pitch class sounds (any scale; an octave doubling should not add up,
    or the doubled tone drowns the others). bass_pc: the lowest note's pitch class, if known."""
    scores = chord_scores(weights, bass_pc)
    return None if scores is None else chord_at(int(np.argmax(scores)), bass_pc)


# --- Listening -----------------------------------------------------------------------------------

class Keys:
    """Which keys are down and which notes the pedal holds (counts: a file may double a pitch)."""

    def __init__(self) -> None:
        self.down: dict[int, int] = {}
        self.pedal = False
        self.pedaled: set[int] = set()

    def press(self, pitch: int) -> None:
        self.down[pitch] = self.down.get(pitch, 0) + 1
        self.pedaled.discard(pitch)

    def release(self, pitch: int) -> bool:
        """True when the note stops sounding now (last key up and no pedal)."""
        count = self.down.get(pitch, 0) - 1
        if count > 0:
            self.down[pitch] = count
            return False
        self.down.pop(pitch, None)
        if self.pedal:
            self.pedaled.add(pitch)
            return False
        return True

    def sustain(self, down: bool) -> list[int]:
        """Pedal change; returns the notes the lift lets go."""
        self.pedal = down
        if down:
            return []
        freed = sorted(self.pedaled)
        self.pedaled.clear()
        return freed

    def sounding(self, pitch: int) -> bool:
        return pitch in self.down or pitch in self.pedaled


class ChordListener:
    """Online: fed the human's events in time order, names the chord that sounds now.

    Weight of a note: velocity (less above C5: melody register), times a string decay while it
    sounds (held keys or pedal; under a long pedal the newer notes matter more). A note struck alone
    ramps in over RAMP_S, so a short passing tone stays small; one struck with others (a chord attack)
    counts at once. A released note stays as memory at MEMORY of its level, halving every half_life_s.
    A pitch class weighs as its loudest note. The bass is the lowest note that still counts.
    Hysteresis on root + quality: right after a chord attack the best chord wins; otherwise a rival
    must beat the current chord by STICKY for CONFIRM_S. The slash bass follows the bass freely.
    chord() recomputes only after an event or RECOMPUTE_S."""

    STRING_HALF_LIFE_S = 1.5
    MEMORY = 0.35
    RAMP_S = 0.2            # time constant of a lone note's ramp
    GROUP_S = 0.05          # onsets this close form a chord attack
    ATTACK_WINDOW_S = 0.15  # after an attack the label follows the best chord at once
    STICKY = 0.3            # score a rival needs above the current chord ...
    CONFIRM_S = 0.25        # ... for this long
    BASS_FLOOR = 0.25       # share of the loudest weight a note needs to count as the bass
    FORGET = 0.02           # released notes below this weight are dropped
    RECOMPUTE_S = 0.02
    HIGH_PITCH = 72         # notes above C5 weigh less (melody register) ...
    HIGH_FACTOR = 0.3       # ... down to this share two octaves higher

    def __init__(self, half_life_s: float = 0.8):
        self.half_life_s = half_life_s
        self._keys = Keys()
        # pitch -> [onset, loudness, grouped]; released: pitch -> (release time, level then)
        self._notes: dict[int, list] = {}
        self._released: dict[int, tuple[float, float]] = {}
        self._last_onset = -math.inf
        self._last_attack = -math.inf
        self._current: Chord | None = None
        self._current_index = -1
        self._rival = -1
        self._rival_since = 0.0
        self._computed_at = -math.inf
        self._changed_at = -math.inf
        self._dirty = True

    # events
    def note_on(self, t_s: float, pitch: int, velocity: int) -> None:
        grouped = t_s - self._last_onset <= self.GROUP_S
        if grouped:
            for state in self._notes.values():  # the note(s) just before belong to the attack too
                if t_s - state[0] <= self.GROUP_S:
                    state[2] = True
            self._last_attack = t_s
        self._last_onset = t_s
        self._keys.press(pitch)
        self._released.pop(pitch, None)
        loudness = 0.4 + 0.6 * min(127, max(1, velocity)) / 127
        if pitch > self.HIGH_PITCH:
            loudness *= 1.0 - (1.0 - self.HIGH_FACTOR) * min(1.0, (pitch - self.HIGH_PITCH) / 24)
        self._notes[pitch] = [t_s, loudness, grouped]
        self._changed(t_s)

    def note_off(self, t_s: float, pitch: int) -> None:
        if pitch in self._notes and self._keys.release(pitch):
            self._let_go(t_s, pitch)

    def sustain(self, t_s: float, down: bool) -> None:
        for pitch in self._keys.sustain(down):
            if pitch in self._notes:
                self._let_go(t_s, pitch)

    def _let_go(self, t_s: float, pitch: int) -> None:
        self._released[pitch] = (t_s, self.MEMORY * self._sounding_level(self._notes.pop(pitch), t_s))
        self._changed(t_s)

    def _changed(self, t_s: float) -> None:
        self._dirty = True
        self._changed_at = t_s

    def _sounding_level(self, state: list, t_s: float) -> float:
        onset, loudness, grouped = state
        age = max(0.0, t_s - onset)
        level = loudness * 2.0 ** (-age / self.STRING_HALF_LIFE_S)
        return level if grouped else level * (1.0 - math.exp(-age / self.RAMP_S))

    # state
    def weights(self, t_s: float) -> tuple[np.ndarray, int | None]:
        """Pitch-class weights now (not normalized) and the bass pitch class."""
        w = np.zeros(12)
        counted: list[tuple[int, float]] = []
        for pitch, state in self._notes.items():
            counted.append((pitch, self._sounding_level(state, t_s)))
        for pitch, (released, level) in list(self._released.items()):
            now = level * 2.0 ** (-(t_s - released) / self.half_life_s)
            if now < self.FORGET:
                del self._released[pitch]
            else:
                counted.append((pitch, now))
        if not counted:
            return w, None
        peak = max(level for _, level in counted)
        bass = min((p for p, level in counted if level >= self.BASS_FLOOR * peak), default=None)
        for pitch, level in counted:  # octave doublings do not add up: a pitch class is there or not
            w[pitch % 12] = max(w[pitch % 12], level)
        if bass is not None:
            bass %= 12
        return w, bass

    def chord(self, t_s: float) -> Chord | None:
        if not self._dirty and t_s - self._computed_at < self.RECOMPUTE_S:
            return self._current
        looked_before = self._computed_at
        self._dirty = False
        self._computed_at = t_s
        weights, bass = self.weights(t_s)
        scores = chord_scores(weights, bass)
        if scores is None:
            if not self._notes and not self._released:
                self._current, self._current_index = None, -1
            return self._current  # one note alone keeps the chord it belongs to
        best = int(np.argmax(scores))
        if self._current is None or best == self._current_index:
            self._set(best, bass)
        elif t_s - self._last_attack <= self.ATTACK_WINDOW_S:
            self._set(best, bass)
        elif scores[best] - scores[self._current_index] > self.STICKY:
            if best != self._rival:
                # it has led since the last look or the last event, whichever came later
                self._rival, self._rival_since = best, max(looked_before, self._changed_at)
            if t_s - self._rival_since >= self.CONFIRM_S:
                self._set(best, bass)
        else:
            self._rival = -1
        return self._current

    def _set(self, index: int, bass: int | None) -> None:
        self._current_index = index
        self._current = chord_at(index, bass)
        self._rival = -1

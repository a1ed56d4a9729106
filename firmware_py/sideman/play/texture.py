"""How an answer sounds as a pianist's, whichever voice chose its line: two hands, a pulse, a shape.

The voice (transformer or Markov) plays the right hand's line. Around it, for answers only
(comping and duet keep their own rules):
- **On the pulse.** Onsets sit on eighth notes of the tracked beat (a line wandering between
  grids has no swing), counted from the answer's start while the tracker is unsure of where the
  beat falls; notes struck together are at most
  MAX_TOGETHER (the Markov voice stacked five-note chords under a horn line).
- **A left hand** below the call's register: a low chord tone on the bar's first beat and a shell
  (third and seventh) later in the bar, on rhythm cells, from the chord the listener hears (else
  the key). How busy it is: the *left_hand* control (0 leaves it out, for a band with a bassist).
- **A dynamic shape**: the line swells toward the middle of the answer and eases off at its end;
  the left hand sits under it.

`dress()` wraps the voice's note stream; the session commits from the wrapped stream exactly as
from the voice's own."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from sideman.model.events import AI, Note
from sideman.play.request import PlayRequest

MAX_TOGETHER = 2           # right-hand notes struck at one onset
TOGETHER_S = 0.03
PULSE_DIVISIONS = 2        # eighth notes
LEFT_HAND_LOWEST = 36
LEFT_HAND_TOP = 59         # and always below the call's lowest note
LEFT_HAND_LOUDNESS = 0.8   # of the line's velocity
SWELL = 0.25               # the line's velocity rises by up to this share mid-answer
# Left-hand cells for one 4/4 bar, (beat, length in beats, "low" for the bass note or "shell").
LEFT_HAND_CELLS = (
    ((0.0, 2.0, "low"),),
    ((0.0, 1.5, "low"), (2.0, 1.5, "shell")),
    ((0.0, 1.0, "low"), (1.5, 1.0, "shell")),
    ((0.0, 2.5, "low"), (2.5, 1.0, "shell")),
    ((0.0, 1.0, "low"), (1.5, 0.5, "shell"), (3.0, 1.0, "shell")),
)


def dress(stream, request: PlayRequest, state_now, left_hand: float, rng: np.random.Generator) -> "Answer":
    return Answer(stream, request, state_now, left_hand_notes(request, state_now(), left_hand, rng))


class Answer:
    """The voice's line on the pulse, capped in chord size, shaped in velocity, with the left hand
    merged in time order (a NoteStream)."""

    def __init__(self, line, request: PlayRequest, state_now, left: list[Note]):
        self.line = line
        self.request = request
        self.state_now = state_now
        self.left = sorted(left, key=lambda n: (n.onset_s, n.pitch))
        self._struck_at: float | None = None   # the latest committed line onset
        self._struck = 0

    def _line_head(self) -> Note | None:
        while True:
            note = self.line.peek()
            if note is None:
                return None
            # The first note is where the session put the answer (it chose the moment); the rest
            # fall on the pulse.
            onset = note.onset_s if self._struck_at is None else self._on_pulse(note.onset_s)
            if self._struck_at is not None and abs(onset - self._struck_at) <= TOGETHER_S \
                    and self._struck >= MAX_TOGETHER:
                self.line.pop()      # one note too many in the chord: left out
                continue
            return replace(note, onset_s=onset, velocity=self._shaped(note.velocity, onset))

    def peek(self) -> Note | None:
        line = self._line_head()
        left = self.left[0] if self.left else None
        if left is not None and (line is None or left.onset_s < line.onset_s):
            # The line's next note, still to be sampled, may come sooner only if it is late:
            # the session commits a note just before it sounds.
            return left
        return line

    def finished(self) -> bool:
        return not self.left and self.line.finished()

    def pop(self) -> Note:
        line = self._line_head()
        if self.left and (line is None or self.left[0].onset_s < line.onset_s):
            return self.left.pop(0)
        self.line.pop()
        if self._struck_at is not None and abs(line.onset_s - self._struck_at) <= TOGETHER_S:
            self._struck += 1
        else:
            self._struck_at, self._struck = line.onset_s, 1
        return line

    def _on_pulse(self, onset: float) -> float:
        """The nearest eighth of the tracked beat; while the tracker is unsure of where the beat
        falls, the eighths of its tempo counted from the answer's start (a pulse of its own)."""
        beat = self.state_now().beat
        anchor = beat.last_beat_s if beat.confidence >= 0.5 else self.request.start_s
        step = beat.period_s / PULSE_DIVISIONS
        snapped = anchor + round((onset - anchor) / step) * step
        while snapped < self.request.start_s - 1e-6:
            snapped += step
        if snapped >= self.request.end_s:   # never past the answer's end (a trade turn's bar line)
            snapped -= step
        return max(snapped, self.request.start_s)

    def _shaped(self, velocity: int, onset: float) -> int:
        span = max(1e-3, self.request.end_s - self.request.start_s)
        x = min(1.0, max(0.0, (onset - self.request.start_s) / span))
        factor = 1.0 - SWELL / 2 + SWELL * math.sin(math.pi * x)
        return int(min(127, max(1, round(velocity * factor))))


def left_hand_notes(request: PlayRequest, state, amount: float, rng: np.random.Generator) -> list[Note]:
    """The left hand for the whole answer, bar by bar on the tracked beat; empty when amount is
    0 or there is no chord or key to voice."""
    if amount <= 0 or (state.chord is None and state.key is None):
        return []
    beat = state.beat.period_s
    material_low = min((n.pitch for n in request.material), default=60)
    top = min(LEFT_HAND_TOP, material_low - 2, request.register[0] + 6)
    if top < LEFT_HAND_LOWEST + 7:
        return []
    low_pc, shell_pcs = _chord_tones(state)
    velocity = int(max(1, min(127, state.features.loudness * LEFT_HAND_LOUDNESS)))
    first_bar = state.beat.next_beat_after(request.start_s - 1e-6) if state.beat.confidence >= 0.5 else request.start_s
    # Busier with the control: 0.5 gives cells of one or two events a bar.
    cells = LEFT_HAND_CELLS[: 2 + int(round(3 * min(1.0, amount)))]
    notes = []
    bar = first_bar
    while bar < request.end_s:
        for beat_at, length, part in cells[int(rng.integers(len(cells)))]:
            onset = bar + beat_at * beat
            if onset >= request.end_s:
                break
            duration = min(length * beat * 0.95, request.end_s + 0.5 - onset)
            if part == "low":
                pitches = [_place(low_pc, LEFT_HAND_LOWEST, LEFT_HAND_LOWEST + 11)]
            else:
                pitches = [_place(pc, top - 11, top) for pc in shell_pcs]
            for pitch in sorted(set(pitches)):
                notes.append(Note(onset, pitch, velocity, max(0.1, duration), AI))
        bar += 4 * beat
    return notes


def _chord_tones(state) -> tuple[int, list[int]]:
    """(the bass note's pitch class, the shell's: third and seventh)."""
    if state.chord is not None:
        root = state.chord.bass if state.chord.bass is not None else state.chord.root
        pcs = state.chord.pitch_classes()
        third = next(((state.chord.root + i) % 12 for i in (4, 3) if (state.chord.root + i) % 12 in pcs), None)
        seventh = next(((state.chord.root + i) % 12 for i in (10, 11, 9) if (state.chord.root + i) % 12 in pcs), None)
        shell = [pc for pc in (third, seventh) if pc is not None] or [(state.chord.root + 7) % 12]
        return root, shell
    tonic = state.key.tonic
    minor = state.key.mode == "minor"
    return tonic, [(tonic + (3 if minor else 4)) % 12, (tonic + (10 if minor else 11)) % 12]


def _place(pc: int, low: int, high: int) -> int:
    """The pitch of class pc in [low, high] (the lowest such)."""
    pitch = low + ((pc - low) % 12)
    return pitch if pitch <= high else pitch - 12

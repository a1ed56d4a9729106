"""The Markov voice as a musician: turns a PlayRequest into notes, lazily (a generator), so the
session pulls only what it needs next: the first note of an answer is ready in a millisecond and a
barge-in throws away what was never computed.

Answers and duet lines continue the call with the Markov model, bent toward the chord and key the
listener hears now; comping voices the current chord (guide tones, rootless) on beat-grid rhythm
cells; variations transform the kept phrase (transpose to the chord, displace, ornament).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterator

import numpy as np

from sideman.listen.listener import ListenerState
from sideman.model import events as ev
from sideman.model.events import AI, Note
from sideman.model.markov import MarkovBlend
from sideman.play.request import COMP, VARIATION, PlayRequest
from sideman.play.steering import Steering

StateNow = Callable[[], ListenerState]

MAX_NOTE_S = 2.0        # no AI note rings longer than this
MAX_NOTES_PER_S = 14


class MarkovImproviser:
    name = "markov"

    def __init__(self, model, live_learning_weight: float = 1.0):
        """model: one MarkovModel, or {style name: MarkovModel} for the style blend control."""
        self.styles = dict(model) if isinstance(model, dict) else {getattr(model, "name", "style"): model}
        self.model = next(iter(self.styles.values()))
        self.live_learning_weight = live_learning_weight

    @property
    def status(self) -> dict:
        """The Markov voice is the last resort: it always plays and hands over to nobody."""
        return {"voice": "markov", "reason": "", "fallbacks": 0}

    def learn(self, notes: list[Note]) -> None:
        """The player's phrase joins every style's live layer (the Continuator idea)."""
        if len(notes) >= 2:
            encoded = ev.encode(notes)
            for model in self.styles.values():
                model.learn(encoded, weight=self.live_learning_weight)

    def clear_live(self) -> None:
        for model in self.styles.values():
            model.clear_live()

    # The Markov voice needs no word of each note (it learns whole phrases, at their end) and
    # computes its notes as the session pulls them: nothing to do ahead, nothing to roll back.
    def hear_note(self, session, t_s: float, pitch: int, velocity: int) -> None: ...
    def hear_pedal(self, session, t_s: float, down: bool) -> None: ...
    def think(self, session, t_s: float) -> None: ...
    def cancel(self, session, t_s: float) -> None: ...

    @staticmethod
    def player_returns(t_s: float, within_s: float) -> None:
        """A Markov table has no idea when the player comes back: the phrase-end rule's silence decides."""
        return None

    @staticmethod
    def available_styles() -> list[str]:
        from sideman.model.markov import available_styles
        return available_styles()

    def blend_for(self, steering: Steering):
        """The model mix the steering asks for (the style blend is read at every request)."""
        pairs = [(self.styles[name], w) for name, w in steering.styles if name in self.styles and w > 0]
        if not pairs:
            return self.model
        return pairs[0][0] if len(pairs) == 1 else MarkovBlend(pairs)

    def improvise(self, request: PlayRequest, state_now: StateNow, steering: Steering,
                  rng: np.random.Generator) -> Iterator[Note]:
        model = self.blend_for(steering)
        if request.kind == COMP:
            return self._comp(request, state_now, steering, rng)
        if request.kind == VARIATION:
            return self._variation(request, model, state_now, steering, rng)
        return self._line(request, model, state_now, steering, rng)

    # --- lines: answers and duet -------------------------------------------------------------
    def _line(self, request: PlayRequest, model, state_now: StateNow, steering: Steering,
              rng: np.random.Generator) -> Iterator[Note]:
        time_weights = _density_weights(request.density)
        t = request.start_s
        first = True
        played = 0
        budget = max(1, int(MAX_NOTES_PER_S * (request.end_s - request.start_s)))
        # The opening (the call's motif developed) first; the model continues from it.
        opening = [replace(n, onset_s=request.start_s + n.onset_s) for n in request.opening]
        for note in opening:
            if note.onset_s >= request.end_s:
                return
            t, first = note.onset_s, False
            played += 1
            yield note
        history = ev.encode((list(request.material) + opening)[-48:])
        while played < budget:
            state = state_now()
            pitch_weights = _pitch_weights(state, request.register, steering.chord_bias)
            event = model.sample(history, rng, temperature=steering.temperature,
                                      pitch_weights=pitch_weights, time_weights=time_weights,
                                      allow_pedal=False)
            history.append(event)
            time_bin, pitch, duration_bin, velocity_bin = event
            if not first:
                t += ev.TIME_BINS_S[time_bin]
            first = False
            if t >= request.end_s:
                return
            if pitch >= ev.PEDAL_DOWN or not request.register[0] <= pitch <= request.register[1]:
                continue
            if request.density < 0.5 and rng.random() < (0.5 - request.density) * 1.2:
                continue  # sparse: some of the line becomes rests (time still moves on)
            # The first note is where the session put the answer (on its grid, or now); the
            # rest fall on sixteenths of the tracked beat.
            onset = request.start_s if played == 0 else _on_grid(t, state, 4)
            duration = min(ev.DURATION_BINS_S[duration_bin], MAX_NOTE_S, request.end_s + 0.5 - onset)
            velocity = _blend_velocity(ev.velocity_of_bin(velocity_bin), state.features.loudness)
            played += 1
            yield Note(max(onset, request.start_s), pitch, velocity, max(0.05, duration), AI)

    # --- comping: chord voicings on rhythm cells ---------------------------------------------
    def _comp(self, request: PlayRequest, state_now: StateNow, steering: Steering,
              rng: np.random.Generator) -> Iterator[Note]:
        state = state_now()
        beat = state.beat.period_s
        cells = COMP_CELLS_SPARSE if request.density < 0.5 else COMP_CELLS_BUSY
        cell = cells[int(rng.integers(len(cells)))]
        bar_start = request.start_s
        for beat_offset, length_beats in cell:
            onset = bar_start + beat_offset * beat
            if onset >= request.end_s:
                return
            state = state_now()
            voicing = _voicing(state, request.register, rng)
            velocity = _blend_velocity(int(state.features.loudness * 0.8), state.features.loudness * 0.8)
            for pitch in voicing:
                yield Note(onset, pitch, velocity, max(0.08, length_beats * beat * 0.9), AI)

    # --- variations of the kept phrase -------------------------------------------------------
    def _variation(self, request: PlayRequest, model, state_now: StateNow, steering: Steering,
                   rng: np.random.Generator) -> Iterator[Note]:
        kept = sorted(request.material, key=lambda n: (n.onset_s, n.pitch))
        if not kept:
            return
        state = state_now()
        beat = state.beat.period_s
        # Transpose so the phrase sits on the chord now sounding (same root motion as the kept
        # phrase's lowest note to the chord root), within the register.
        shift = 0
        if state.chord is not None:
            shift = ((state.chord.root - kept[0].pitch) % 12)
            shift = shift - 12 if shift > 6 else shift
            if rng.random() < 0.5:
                shift = 0 if rng.random() < 0.5 else shift
        displace = float(rng.choice([0.0, 0.0, 0.5, 1.0])) * beat
        ornament_share = 0.1 + 0.2 * min(1.0, steering.temperature / 2)  # ~1 note in 5 at temperature 1
        origin = kept[0].onset_s
        history: list[ev.EncodedEvent] = []
        for note in kept:
            onset = request.start_s + displace + (note.onset_s - origin)
            if onset >= request.end_s:
                return
            pitch = note.pitch + shift
            if rng.random() < ornament_share:
                # An ornament: the model picks a neighbour of the kept pitch (±3 semitones).
                weights = _pitch_weights(state_now(), (pitch - 3, pitch + 3), steering.chord_bias)
                sampled = model.sample(history or ev.encode(kept[:8]), rng, temperature=steering.temperature,
                                            pitch_weights=weights, allow_pedal=False)
                if sampled[1] < ev.PEDAL_DOWN:
                    pitch = sampled[1]
            pitch = _fold_into(pitch, request.register)
            history.append((0, pitch, ev.duration_bin(note.duration_s), ev.velocity_bin(note.velocity)))
            yield Note(onset, pitch, note.velocity, min(note.duration_s, MAX_NOTE_S), AI)


# Comping rhythm cells in beats (onset, length) for one 4/4 bar.
COMP_CELLS_SPARSE = (
    ((0.0, 1.0),),                       # a downbeat stab
    ((0.0, 1.0), (2.5, 1.0)),            # Charleston
    ((1.5, 1.0),),                       # the and of two
    ((3.5, 0.5),),                       # anticipation of the next bar
)
COMP_CELLS_BUSY = (
    ((0.0, 1.0), (1.5, 0.5), (2.5, 1.0)),
    ((1.0, 0.5), (3.0, 0.5)),            # two and four
    ((0.0, 0.5), (1.5, 1.0), (3.5, 0.5)),
    ((0.5, 1.0), (2.0, 1.0), (3.5, 0.5)),
)


def _voicing(state: ListenerState, register: tuple[int, int], rng: np.random.Generator) -> list[int]:
    """A rootless three- or four-note voicing of the chord now sounding (guide tones first)."""
    low, high = register
    if state.chord is not None:
        root = state.chord.root
        pcs = sorted(state.chord.pitch_classes(), key=lambda pc: _guide_tone_rank((pc - root) % 12))
    elif state.key is not None:
        root = state.key.tonic
        third = 3 if state.key.mode == "minor" else 4
        pcs = [(root + third) % 12, (root + 7) % 12, (root + 10 if state.key.mode == "minor" else root + 11) % 12]
    else:
        return []
    size = 3 + int(rng.random() < 0.5)
    chosen = pcs[:size]
    pitches = []
    floor = low + int(rng.integers(0, 5))
    for pc in chosen:
        pitch = floor + ((pc - floor) % 12)
        while pitch > high and pitch - 12 >= low:
            pitch -= 12
        if low <= pitch <= high:
            pitches.append(pitch)
    return sorted(set(pitches))


def _guide_tone_rank(interval: int) -> int:
    """3rds and 7ths first (they say what the chord is), then colour tones, the root last."""
    order = {3: 0, 4: 0, 10: 1, 11: 1, 9: 2, 2: 3, 1: 3, 6: 4, 8: 4, 7: 5, 5: 5, 0: 6}
    return order.get(interval, 7)


def _pitch_weights(state: ListenerState, register: tuple[int, int], chord_bias: float) -> np.ndarray:
    """Multipliers on the model's pitch choices: zero outside the register, higher on chord tones
    and scale tones, lower elsewhere (how strongly: the chord_bias control)."""
    weights = np.zeros(ev.PITCH_TOKENS)
    low, high = max(0, register[0]), min(127, register[1])
    if low > high:
        low, high = high, low
    weights[low:high + 1] = 1.0
    chord = state.chord.pitch_classes() if state.chord is not None else frozenset()
    scale = (state.chord.scale_pitch_classes() if state.chord is not None
             else state.key.scale_pitch_classes() if state.key is not None else frozenset())
    if chord or scale:
        factors = np.empty(12)
        for pc in range(12):
            factors[pc] = (1 + 3 * chord_bias) if pc in chord else (1 + chord_bias) if pc in scale else (1 - 0.8 * chord_bias)
        weights[:128] *= np.tile(factors, 11)[:128]
    return weights


def _density_weights(density: float) -> np.ndarray:
    """Multipliers on the time-between-onsets bins: dense favours short gaps, sparse long ones."""
    times = np.asarray(ev.TIME_BINS_S) + 0.05
    return times ** (4.0 * (0.5 - density))


def _on_grid(t: float, state: ListenerState, divisions: int) -> float:
    """Snap an onset to the nearest 1/divisions of the tracked beat, only when the tracker is sure."""
    if state.beat.confidence < 0.5:
        return t
    step = state.beat.period_s / divisions
    k = round((t - state.beat.last_beat_s) / step)
    return state.beat.last_beat_s + k * step


def _blend_velocity(sampled: int, player_loudness: float) -> int:
    """The model's dynamics, pulled halfway toward how loud the player plays now."""
    return int(min(127, max(1, round(0.5 * sampled + 0.5 * player_loudness))))


def _fold_into(pitch: int, register: tuple[int, int]) -> int:
    low, high = register
    while pitch < low and pitch + 12 <= 127:
        pitch += 12
    while pitch > high and pitch - 12 >= 0:
        pitch -= 12
    return min(127, max(0, pitch))



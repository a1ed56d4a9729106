"""Playing the transformer event by event: feed events through the static KV cache, sample the AI's
next event field by field with steering. Pure functions over an explicit `StreamState`, so a caller can
keep an old state and roll back to it (the live voice does; evaluation just continues).

Steering acts on the logits at sampling time, never on the weights:
    temperature   all four fields ("adventure")
    register      pitches outside (low, high) are not sampled
    density       added to the log-odds of short gaps (> 0: busier, < 0: sparser)
    chord_bias    added to the logits of pitches whose pitch class the human's chord profile holds
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

from sideman.model.conditioning import MODEL_MODES, chord_profiles, tempo_features
from sideman.model.events import (AI, HUMAN, PEDAL_DOWN, TIME_BINS_S, Event, Pedal, decode, duration_bin,
                                  sort_events, time_bin, velocity_bin)
from sideman.model.transformer import JazzTransformer

CONTEXT_KEEP = 0.5   # when the cache is full, keep this share of the newest events and re-prime
CHORD_LOOKBACK = 64  # events looked at for the chord input (covers CHORD_WINDOW_S of dense playing)


@dataclass(frozen=True)
class Steering:
    temperature: float = 1.0
    register: tuple[int, int] = (21, 108)
    density: float = 0.0
    chord_bias: float = 0.0
    allow_pedal: bool = True


@dataclass
class StreamState:
    """Everything the network has heard: the encoded events (with voices) in its context, the KV
    cache that matches them, and the conditioning inputs. Immutable in use: functions return new ones."""
    k: torch.Tensor
    v: torch.Tensor
    h: torch.Tensor | None        # backbone state predicting the next event (None before the first step)
    position: int                 # events in the cache
    previous: tuple[int, int, int, int, int] | None   # last event fed (time, pitch, dur, vel, voice)
    style_vector: torch.Tensor
    mode: int


_TIME_S = torch.tensor(TIME_BINS_S)
_SHORT_GAPS = (_TIME_S < 0.25) & (_TIME_S > 0.0)   # what density makes likelier


@lru_cache(maxsize=32)
def _pitch_allowed(low: int, high: int, allow_pedal: bool) -> torch.Tensor:
    """Pitch tokens the register steering lets through (built once per setting, not per event)."""
    keep = torch.zeros(PEDAL_DOWN + 2, dtype=torch.bool)
    keep[max(0, low):min(127, high) + 1] = True
    keep[PEDAL_DOWN:] = allow_pedal
    return keep


def new_stream(model: JazzTransformer, style_weights: torch.Tensor, mode: str = "solo") -> StreamState:
    k, v = model.empty_cache()
    with torch.no_grad():
        style_vector = model.style_vector(style_weights)
    return StreamState(k, v, None, 0, None, style_vector, MODEL_MODES.index(mode))


@torch.no_grad()
def advance(model: JazzTransformer, state: StreamState, event: tuple[int, int, int, int, int] | None,
            chord: np.ndarray, tempo: float) -> StreamState:
    """Feed one event (None = the beginning marker) and compute the state that predicts the next.
    chord (12,) and tempo: what the listener knows now, before the next event."""
    previous = event if event is not None else (0, 0, 0, 0, 0)
    h, k, v = model.step(torch.tensor([previous]), torch.tensor([1.0 if event is None else 0.0]),
                         state.style_vector, torch.tensor([state.mode]),
                         torch.as_tensor(chord, dtype=torch.float32)[None], torch.tensor([float(tempo)]),
                         torch.tensor(state.position), state.k, state.v)
    return replace(state, k=k, v=v, h=h, position=state.position + 1, previous=event)


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    if temperature <= 1e-3:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def sample_event(model: JazzTransformer, state: StreamState, generator: torch.Generator,
                 steering: Steering = Steering(), chord: np.ndarray | None = None,
                 voice: int = AI) -> tuple[int, int, int, int]:
    """Draw the next event's (time, pitch, duration, velocity) bins for `voice`, field by field."""
    s = state.h + model.voice_out(torch.tensor([voice]))
    time_logits = model.time_head(s)[0].clone()
    if steering.density:
        time_logits[_SHORT_GAPS] += steering.density
    tb = _sample(time_logits, steering.temperature, generator)
    pitch_logits = model.pitch_head(s, torch.tensor([tb]))[0].clone()
    low, high = steering.register
    pitch_logits[~_pitch_allowed(int(low), int(high), bool(steering.allow_pedal))] = float("-inf")
    if steering.chord_bias and chord is not None and np.any(chord > 0):
        pcs = torch.as_tensor(np.asarray(chord, dtype=np.float32))
        pitch_logits[:128] += steering.chord_bias * pcs[torch.arange(128) % 12]
    pitch = _sample(pitch_logits, steering.temperature, generator)
    if pitch >= PEDAL_DOWN:
        return tb, pitch, 0, 0
    db = _sample(model.duration_head(s, torch.tensor([tb]), torch.tensor([pitch]))[0], steering.temperature, generator)
    vb = _sample(model.velocity_head(s, torch.tensor([tb]), torch.tensor([pitch]), torch.tensor([db]))[0],
                 steering.temperature, generator)
    return tb, pitch, db, vb


# ---------------------------------------------------------------------------------------------
# Whole continuations (evaluation, sample duets, `sideman play` offline)


def estimate_tempo_bpm(events: list[Event]) -> float | None:
    """The listener's tempo after these notes (the beat tracker the training cache used)."""
    from sideman.listen.tempo import BeatTracker
    tracker, heard = BeatTracker(), False
    for e in sort_events(events):
        if not isinstance(e, Pedal):
            tracker.onset(e.onset_s, e.velocity, e.pitch)
            heard = True
    return tracker.estimate(events[-1].onset_s).tempo_bpm if heard else None


def encode_with_voices(events: list[Event]) -> tuple[list[tuple[int, int, int, int, int]], np.ndarray, np.ndarray]:
    """Events → [(time, pitch, dur, vel, voice)], onsets (s) and pitch tokens, in codec order."""
    ordered = sort_events(events)
    out, onsets, pitches, previous = [], [], [], None
    for e in ordered:
        dt = 0.0 if previous is None else e.onset_s - previous
        previous = e.onset_s
        if isinstance(e, Pedal):
            token = PEDAL_DOWN if e.down else PEDAL_DOWN + 1
            out.append((time_bin(dt), token, 0, 0, e.voice))
        else:
            token = e.pitch
            out.append((time_bin(dt), token, duration_bin(e.duration_s), velocity_bin(e.velocity), e.voice))
        onsets.append(e.onset_s)
        pitches.append(token)
    return out, np.asarray(onsets, dtype=np.float64), np.asarray(pitches, dtype=np.int64)


def _chord_now(onsets: list[float], pitches: list[int], voices: list[int]) -> np.ndarray:
    """The chord input for the next event: human notes in the window before the last onset."""
    if not onsets:
        return np.zeros(12, dtype=np.float32)
    # Only the last CHORD_LOOKBACK events can fall in the window that matters (dense playing
    # is < 32 events per second), and copying the whole history each event would be O(n²).
    onsets, pitches, voices = onsets[-CHORD_LOOKBACK:], pitches[-CHORD_LOOKBACK:], voices[-CHORD_LOOKBACK:]
    o = np.asarray(onsets + [onsets[-1]])
    p = np.asarray(pitches + [0])
    v = np.asarray(voices + [AI])
    return chord_profiles(o, p, v)[-1]


@torch.no_grad()
def continue_events(model: JazzTransformer, prompt: list[Event], n_events: int, style_weights: torch.Tensor,
                    mode: str = "solo", seed: int = 0, steering: Steering = Steering(),
                    tempo_bpm: float | None = None) -> list[Event]:
    """The AI's next n_events after a prompt (its events keep their voices), as absolute-time events.
    Deterministic for a seed. The tempo input is tempo_bpm, else the prompt's (beat tracker).
    When the cache fills, the newest half of the context is re-primed."""
    generator = torch.Generator().manual_seed(seed)
    encoded, onsets, pitches = encode_with_voices(prompt)
    voices = [e[4] for e in encoded]
    onset_list, pitch_list = list(onsets), list(pitches)
    if tempo_bpm is None and prompt:
        tempo_bpm = estimate_tempo_bpm(prompt)
    tempo = float(tempo_features(np.array([tempo_bpm if tempo_bpm else np.nan]))[0])
    context = model.config.context

    def prime(history):
        state = new_stream(model, style_weights, mode)
        state = advance(model, state, None, _chord_now([], [], []), tempo)
        start = len(onset_list) - len(history)
        for i, event in enumerate(history):
            upto = start + i + 1
            state = advance(model, state, event, _chord_now(onset_list[:upto], pitch_list[:upto], voices[:upto]), tempo)
        return state

    history = encoded[-(context - 1):]
    state = prime(history)
    out: list[Event] = []
    now = onset_list[-1] if onset_list else 0.0
    for _ in range(n_events):
        if state.position >= context:
            history = history[-int(context * CONTEXT_KEEP):]
            state = prime(history)
        chord = _chord_now(onset_list, pitch_list, voices)
        tb, pitch, db, vb = sample_event(model, state, generator, steering, chord)
        now += TIME_BINS_S[tb] if (onset_list or out) else 0.0
        event = decode([(0, pitch, db, vb)], start_s=now, voice=AI)[0]
        out.append(event)
        encoded_event = (tb, pitch, db, vb, AI)
        history.append(encoded_event)
        onset_list.append(now)
        pitch_list.append(pitch)
        voices.append(AI)
        state = advance(model, state, encoded_event, _chord_now(onset_list, pitch_list, voices), tempo)
    return out


@torch.no_grad()
def accompany(model: JazzTransformer, human: list[Event], style_weights: torch.Tensor, mode: str = "comp",
              seed: int = 0, steering: Steering = Steering(), tail_events: int = 0,
              tempo_bpm: float | None = None) -> list[Event]:
    """The AI playing along with a given human part, event by event in time order: at each step
    the AI's next event is sampled; if the human plays first, that sample is dropped (the state is
    not advanced by it, a one-event rollback) and the human event is heard instead. Returns the
    AI's events. Used to measure harmony (does the AI land in the human's chord?) offline."""
    generator = torch.Generator().manual_seed(seed)
    pending, _, _ = encode_with_voices([replace(e, voice=HUMAN) for e in human])
    human_onsets = [e.onset_s for e in sort_events(human)]
    if tempo_bpm is None and human:
        tempo_bpm = estimate_tempo_bpm(human)   # the part's tempo (an offline tool: known in advance)
    tempo = float(tempo_features(np.array([tempo_bpm if tempo_bpm else np.nan]))[0])
    context = model.config.context
    onset_list: list[float] = []
    pitch_list: list[int] = []
    voices: list[int] = []
    history: list[tuple[int, int, int, int, int]] = []

    def prime():
        state = advance(model, new_stream(model, style_weights, mode), None, np.zeros(12, np.float32), tempo)
        start = len(onset_list) - len(history)
        for i, event in enumerate(history):
            upto = start + i + 1
            state = advance(model, state, event, _chord_now(onset_list[:upto], pitch_list[:upto], voices[:upto]), tempo)
        return state

    def hear(event, onset):
        history.append(event)
        onset_list.append(onset)
        pitch_list.append(event[1])
        voices.append(event[4])

    state = prime()
    out: list[Event] = []
    i_human, extra = 0, 0
    while i_human < len(pending) or extra < tail_events:
        if state.position >= context:
            del history[:len(history) - int(context * CONTEXT_KEEP)]
            state = prime()
        chord = _chord_now(onset_list, pitch_list, voices)
        tb, pitch, db, vb = sample_event(model, state, generator, steering, chord)
        last = onset_list[-1] if onset_list else (human_onsets[0] if human_onsets else 0.0)
        ai_onset = last + (TIME_BINS_S[tb] if onset_list else 0.0)
        if i_human < len(pending) and human_onsets[i_human] <= ai_onset:
            t, p, d, v, _ = pending[i_human]
            gap = human_onsets[i_human] - last if onset_list else 0.0
            event = (time_bin(gap), p, d, v, HUMAN)
            onset = human_onsets[i_human]
            i_human += 1
        else:
            event = (tb, pitch, db, vb, AI)
            onset = ai_onset
            out.append(decode([(0, pitch, db, vb)], start_s=onset, voice=AI)[0])
            if i_human >= len(pending):
                extra += 1
        hear(event, onset)
        state = advance(model, state, event, _chord_now(onset_list, pitch_list, voices), tempo)
    return out

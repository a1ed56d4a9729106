"""The transformer's running context on the live box: commit, lookahead and rollback.

    committed   every event that has happened, in the order it happened: the human's notes and
                pedal as they arrive, the AI's notes once handed to the scheduler. The KV cache
                holds them (the newest ones: the cache is static, see `slide`).
    ahead       AI events sampled beyond the committed ones (the lookahead), each with the model
                state after it. Nobody has heard them yet.

Committing the next ahead event adopts the state computed when it was sampled (no recompute).
A rollback forgets the ahead events. The human playing something new rolls back and the lookahead
is sampled again from what they played.

One KV cache for all of it: the context keeps only the newest cache, and each event keeps its
state's small part (h and the time logits). The cache's slots below `ahead_position` hold the
committed and lookahead events; slots from there on may still hold events that were rolled back.
The model never sees those: a step at position p writes slot p and attends to slots <= p only. So
a rollback leaves what a fresh recompute would for everything the model sees (tested), and the
memory stays one cache, not one per lookahead event (48 of them were 72 MB with the shipped model;
in the hour's soak they grew the box's own memory by a quarter).

The cache is static (the exported graphs' shape). When the committed events fill it, it slides:
the newest half is prefilled into a fresh cache in one call (the init graph / forward), so the
model always sees the last 128-256 events (about 5-15 s of two pianists).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from itertools import chain

import numpy as np

from sideman.model.backends import History, ModelBackend, StepOutput
from sideman.model.conditioning import CHORD_WINDOW_S, as_pulse
from sideman.model.events import HUMAN, PEDAL_DOWN, TIME_BINS_S

CONTEXT_KEEP = 0.5     # share of the newest events kept when the cache slides
MAX_AHEAD = 48         # lookahead events at most (the horizon usually stops it long before)

_TIME_S = np.asarray(TIME_BINS_S)


@dataclass(frozen=True)
class ContextEvent:
    """One event as the model is fed it, with the conditioning it was fed with."""
    encoded: tuple[int, int, int, int, int]   # time, pitch, duration, velocity bins, voice
    onset_s: float
    chord: np.ndarray      # (12,) the human's chord around this event (conditioning of the next step)
    pulse: np.ndarray      # (PULSE_DIM,) tempo and where this event fell in the beat (conditioning.pulse_features)
    mode: int
    style: np.ndarray      # (D,) the style vector it was fed with


@dataclass
class AheadEvent:
    event: ContextEvent
    out: StepOutput        # the state after it: h and time logits (its cache is the context's one)
    tag: object = None     # who asked for it (the live voice's plan)
    note: object = None    # what it sounds as (the live voice's Note)


@dataclass
class LiveContext:
    backend: ModelBackend
    committed: list[ContextEvent] = field(default_factory=list)   # the ones in the cache, oldest first
    ahead: list[AheadEvent] = field(default_factory=list)
    version: int = 0       # bumped on every committed change (what a speculative answer is keyed on)
    slides: int = 0

    def __post_init__(self):
        self._begin: tuple | None = None   # conditioning of the marker step: chord, pulse, mode, style
        self._human: deque[tuple[float, int]] = deque(maxlen=64)   # (onset, pitch class) for the chord input
        self._committed_out: StepOutput | None = None   # after the committed events, without its cache
        self._cache = None    # the newest cache: committed events, then the lookahead's
        self.position = 0

    # --- conditioning ------------------------------------------------------------------------
    def chord_after(self, onset_s: float, human_pitch: int | None = None) -> np.ndarray:
        """The chord input fed with an event at onset_s (itself included when it is a human note):
        pitch classes of the human's notes since onset_s - CHORD_WINDOW_S, scaled to max 1 (the
        same feature `chord_profiles` computes for training)."""
        counts = np.zeros(12, np.float32)
        for onset, pc in self._human:
            if onset >= onset_s - CHORD_WINDOW_S:
                counts[pc] += 1.0
        if human_pitch is not None and human_pitch < PEDAL_DOWN:
            counts[human_pitch % 12] += 1.0
        peak = counts.max()
        return counts / peak if peak > 0 else counts

    # --- the state ---------------------------------------------------------------------------
    @property
    def last_onset_s(self) -> float | None:
        if self.ahead:
            return self.ahead[-1].event.onset_s
        return self.committed[-1].onset_s if self.committed else None

    @property
    def last_committed_onset_s(self) -> float | None:
        return self.committed[-1].onset_s if self.committed else None

    def last_of_voice(self, voice: int) -> tuple[float | None, int]:
        """Onset of the newest event of `voice` (lookahead included) and how many of its events
        sound together there (a chord being built)."""
        onset, together = None, 0
        newest_first = chain((a.event for a in reversed(self.ahead)), reversed(self.committed[-16:]))
        for event in newest_first:
            if event.encoded[4] != voice:
                if onset is not None:
                    break
                continue
            if onset is None:
                onset = event.onset_s
            if event.onset_s != onset:
                break
            together += 1
        return onset, together

    @property
    def state(self) -> StepOutput | None:
        """The state predicting the next event after the committed ones."""
        return self._committed_out and self._committed_out._replace(cache=self._cache)

    @property
    def latest(self) -> StepOutput:
        """The state predicting the next event after everything, lookahead included."""
        return (self.ahead[-1].out if self.ahead else self._committed_out)._replace(cache=self._cache)

    @property
    def ahead_position(self) -> int:
        return self.position + len(self.ahead)

    def start(self, style_vector: np.ndarray, mode: int, pulse: np.ndarray) -> None:
        """A fresh context: just the beginning marker."""
        self.committed.clear()
        self.ahead.clear()
        self._begin = (np.zeros(12, np.float32), as_pulse(pulse), int(mode),
                       np.asarray(style_vector, np.float32))
        chord, pulse, mode, style = self._begin
        self._committed_out = self._keep(self.backend.step(None, style, mode, chord, pulse, 0,
                                                           self.backend.empty_cache()))
        self.position = 1
        self.version += 1

    def room_ahead(self) -> bool:
        return len(self.ahead) < MAX_AHEAD and self.ahead_position < self.backend.context

    def make_event(self, encoded, onset_s: float, pulse: np.ndarray, mode: int, style_vector: np.ndarray) -> ContextEvent:
        pitch = encoded[1] if encoded[4] == HUMAN else None
        return ContextEvent(tuple(int(x) for x in encoded), float(onset_s),
                            self.chord_after(onset_s, pitch), as_pulse(pulse), int(mode), style_vector)

    def _step(self, event: ContextEvent, position: int) -> StepOutput:
        """The event at `position`, on the context's cache (whatever it holds from `position` on is
        overwritten or unseen); returns the state after it, without its cache."""
        return self._keep(self.backend.step(event.encoded, event.style, event.mode, event.chord, event.pulse,
                                            position, self._cache))

    def _keep(self, out: StepOutput) -> StepOutput:
        self._cache = out.cache
        return out._replace(cache=None)

    # --- committed events --------------------------------------------------------------------
    def append(self, event: ContextEvent) -> None:
        """Something happened (the human played): the lookahead is rolled back, the event goes in."""
        self.rollback()
        if self.position >= self.backend.context:
            self.slide()
        self._committed_out = self._step(event, self.position)
        self.position += 1
        self._remember(event)
        self.committed.append(event)
        self.version += 1

    def push_ahead(self, event: ContextEvent, tag=None, note=None) -> AheadEvent:
        """Sample-ahead: the event goes in after the lookahead, remembered with its state."""
        if not self.ahead and self.position >= self.backend.context:
            self.slide()
        if not self.room_ahead():
            raise RuntimeError("no room ahead (check room_ahead first)")
        out = self._step(event, self.ahead_position)
        item = AheadEvent(event, out, tag, note)
        self.ahead.append(item)
        return item

    def commit_next(self) -> AheadEvent:
        """The next lookahead event is being played: it joins the committed ones, with its state."""
        item = self.ahead.pop(0)
        self._committed_out = item.out
        self.position += 1
        self._remember(item.event)
        self.committed.append(item.event)
        self.version += 1
        return item

    def rollback(self) -> None:
        """Forget the lookahead: the state after the committed events is still there (the cache's
        slots from `position` on are unseen until overwritten)."""
        self.ahead.clear()

    def _remember(self, event: ContextEvent) -> None:
        if event.encoded[4] == HUMAN and event.encoded[1] < PEDAL_DOWN:
            self._human.append((event.onset_s, event.encoded[1] % 12))

    # --- sliding the static cache ------------------------------------------------------------
    def slide(self) -> None:
        """Keep the newest CONTEXT_KEEP of the committed events and prefill them into a fresh cache.
        The lookahead must be empty (its states belong to the old cache)."""
        assert not self.ahead
        keep = max(1, int(self.backend.context * CONTEXT_KEEP))
        kept = self.committed[-keep:]
        # The kept events are re-read in the mode and style playing now (a knob may have moved
        # since): one mode and style per sequence is also how the model was trained, and it lets
        # the whole history go through one prefill call.
        mode, style = kept[-1].mode, kept[-1].style
        self.committed = [e if e.mode == mode and e.style is style else replace(e, mode=mode, style=style)
                          for e in kept]
        chord, pulse, _, _ = self._begin
        self._begin = (chord, pulse, mode, style)
        events = self.committed
        self._committed_out = self._keep(self.backend.prefill(History(
            np.array([e.encoded for e in events], np.int64),
            np.stack([chord] + [e.chord for e in events]).astype(np.float32),
            np.stack([pulse] + [e.pulse for e in events]).astype(np.float32), mode, style)))
        self.position = len(events) + 1
        self.slides += 1


def draw(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One sample from softmax(logits / temperature); argmax at temperature ~0."""
    if temperature <= 1e-3:
        return int(np.argmax(logits))
    z = np.asarray(logits, np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    c = np.cumsum(p)
    i = int(np.searchsorted(c, rng.random() * c[-1], side="right"))
    return min(i, len(c) - 1)


def earliest_time_bins(last_onset_s: float | None, not_before_s: float) -> np.ndarray:
    """Time bins that put the next onset at or after not_before_s (time has passed since the last
    event with nothing played: the model's gap is conditioned on being at least that long). At
    least the longest bin stays allowed."""
    if last_onset_s is None:
        return np.ones(len(_TIME_S), bool)
    allowed = last_onset_s + _TIME_S >= not_before_s - 1e-6
    if not allowed.any():
        allowed[-1] = True
    return allowed

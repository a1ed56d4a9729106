"""The transformer as the session's improviser: it plays what the session's policies ask for
(answers, comping, duet lines) event by event from the model's live context.

- Every human note and pedal change goes into the context the moment it arrives (`hear_note`).
  A note's length is not known at its note-on: the context gets the length of the player's
  previous note (the model sees lengths, the live box cannot wait for them).
- Lookahead: on every engine tick the voice samples ahead of the clock, up to `horizon_s`
  (default 1.5 s). A note is committed (the session hands it to the scheduler) only
  COMMIT_AHEAD_S before it sounds; whatever the human plays before that rolls the lookahead back
  and it is sampled again from what they played.
- Steering, read at every sample from the session's controls: temperature (adventure), density
  (log-odds of short gaps), register (the request's range, moved by register_shift), chord-tone
  bias (logits of the pitch classes the human plays), answer length (the request's end), and the
  style blend (a weighted sum of the pianists' embeddings, an input of every step).
- Speculative answers (call and response): as soon as every key is up, a candidate answer is
  sampled for the time the phrase would end if nothing else is played; when the session decides
  the phrase has ended and the answer starts in the same time bin, the candidate is played
  as it is (no waiting on the model at the decision).
- Graceful degradation: a step slower than the budget (or a model backend error) hands the playing to
  the Markov voice at once, mid-answer, from the next note on (no gap); the status says so, and
  the transformer is tried again after `retry_s` (doubling while it keeps failing).

Variations of a kept phrase stay with the Markov voice (a variation is a transformation of the
kept notes with a few ornaments, not a continuation).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from sideman.model.conditioning import MODEL_MODES, pulse_features
from sideman.model.events import (AI, DURATION_BINS_S, HUMAN, PEDAL_DOWN, PEDAL_UP, TIME_BINS_S, Note,
                                  duration_bin, time_bin, velocity_bin, velocity_of_bin)
from sideman.model.live_stream import LiveContext, draw, earliest_time_bins
from sideman.model.turns import return_chance
from sideman.play.improviser import MAX_NOTE_S, MarkovImproviser
from sideman.play.motifs import lean_on_cells
from sideman.play.note_stream import PeekableNotes
from sideman.play.contracts import SessionView
from sideman.play.request import ANSWER, COMP, DUET, MODEL_MODE_OF_KIND, VARIATION, PlayRequest
from sideman.play.steering import Steering

if TYPE_CHECKING:
    from sideman.model.bundle import Bundle
    from sideman.model.backends import ModelBackend

log = logging.getLogger("sideman.transformer")

HORIZON_S = 1.5           # how far ahead of the clock the lookahead samples
STEP_BUDGET_S = 0.020     # one event (step + heads + sampling) slower than this is an overrun
OVERRUNS_TO_FALL_BACK = 3  # within the last OVERRUN_WINDOW events (or one 5x over budget)
OVERRUN_WINDOW = 32
RETRY_S = 10.0            # after a fall-back, try the transformer again after this (doubling)
MAX_RETRY_S = 120.0
STEPS_PER_TICK = 2        # lookahead events per engine tick (1-3 ms on the box): a tick never holds up the next
SLIDE_MARGIN = 16         # slide the cache this many events before it is full, in a quiet tick
CANDIDATE_EVENTS = 8      # a speculative answer's length (the rest is sampled as it plays)

# Steering scales: controls are 0..1, the model's logits are in nats.
DENSITY_NATS = 3.0        # density 0 → −3, 1 → +3 on the log-odds of gaps under 0.25 s
# Added for answers (call and response, trading), so that the default density is as busy as an
# answer gets: on Mehldau's train-split pairs (`sideman-train eval-answers --pijama-split train
# --density D`) answers rise from 3.9 notes/s at D 0.5 to 4.2 at D 0.6, which is this offset
# ((0.6 - 0.5) x 2 x DENSITY_NATS), and no more than 3 % further up to D 0.85 (the eighth-note
# texture caps them); his own answers there: 6.1.
ANSWER_DENSITY_NATS = 0.6
CHORD_BIAS_NATS = 2.0     # chord_bias 1 → +2 on pitches of the human's chord
HUMAN_DURATION_GUESS_S = 0.25
MAX_CHORD_NOTES = 4       # comping and duet: notes struck together at most


_SHORT_GAPS = (np.asarray(TIME_BINS_S) < 0.25) & (np.asarray(TIME_BINS_S) > 0.0)
_PITCH_CLASS = np.arange(128) % 12


@lru_cache(maxsize=64)
def _register_mask(low: int, high: int) -> np.ndarray:
    """Pitch tokens the register lets through (notes only: the AI never plays the pedal); built
    once per range, not per event."""
    mask = np.zeros(PEDAL_DOWN + 2, bool)
    mask[max(0, low):min(127, high) + 1] = True
    mask.flags.writeable = False
    return mask


@dataclass
class Plan:
    """One request being played by the transformer (the session holds it as its note stream)."""
    voice: "TransformerImproviser"
    request: PlayRequest
    steering: Steering
    state_now: object
    rng: np.random.Generator
    notes_ahead: int = 0       # sampled, not committed
    notes_played: int = 0      # committed
    exhausted: bool = False    # sampling has passed its end
    fallback: PeekableNotes | None = None
    sounded: list = field(default_factory=list)  # the plan's notes: committed, then sampled ahead

    def notes_so_far(self) -> list[Note]:
        """Committed and sampled-ahead notes, in order (what a rollback took back is dropped)."""
        del self.sounded[self.notes_played + self.notes_ahead:]
        return self.sounded

    def peek(self) -> Note | None:
        return self.voice.peek_for(self)

    def finished(self) -> bool:
        """Sampled past its end with nothing left ahead (or its Markov stand-in is over)."""
        if self.fallback is not None:
            return self.fallback.finished()
        return self.exhausted and self.notes_ahead == 0

    def pop(self) -> Note:
        return self.voice.pop_for(self)


class TransformerImproviser:
    def __init__(self, bundle: "Bundle", backend: "ModelBackend", fallback: MarkovImproviser,
                 horizon_s: float = HORIZON_S, step_budget_s: float = STEP_BUDGET_S, retry_s: float = RETRY_S,
                 clock=time.perf_counter):
        self.bundle = bundle
        self.backend = backend
        self.fallback = fallback
        self.horizon_s = horizon_s
        self.step_budget_s = step_budget_s
        self._clock = clock           # measures step cost (wall clock, also in simulated sessions)
        self.context = LiveContext(backend)
        self.plans: list[Plan] = []
        self.candidate: tuple | None = None    # (key, plan) of the speculative answer
        self.healthy = True
        self.reason = ""
        self.fallbacks = 0    # times the Markov voice took over
        self.retry_at: float | None = None    # session time when the transformer is tried again
        self._retry_s = retry_s
        self._overruns: deque[bool] = deque(maxlen=OVERRUN_WINDOW)
        self._style_cache: dict[tuple, np.ndarray] = {}
        self._unknown_styles: set[str] = set()
        self.speculation = {"adopted": 0, "missed": 0, "computed": 0}
        self.event_seconds: deque[float] = deque(maxlen=2000)   # cost of the latest sampled events (status)
        self.rollbacks = 0
        self._beat = None             # the listener's latest beat estimate (the pulse input)
        self._mode = MODEL_MODES.index("answer")
        self._last_human_duration_s = HUMAN_DURATION_GUESS_S
        self._started = False
        self._now = 0.0
        self._speculated_for: tuple | None = None   # what the current prediction was made for
        self._prediction: PlayRequest | None = None

    # --- what the session and the panel see ----------------------------------------------------
    @property
    def name(self) -> str:
        return f"transformer[{self.backend.name}]" if self.healthy else "markov (transformer resting)"

    @property
    def styles(self) -> dict:
        """The Markov tables (the fall-back and variation voice); the session's style switch
        updates them, and the transformer reads the same style names from its own style table."""
        return self.fallback.styles

    @property
    def status(self) -> dict:
        costs = list(self.event_seconds)
        return {"voice": "transformer" if self.healthy else "markov", "backend": self.backend.name,
                "healthy": self.healthy, "reason": self.reason, "fallbacks": self.fallbacks,
                "event_ms_p50": round(float(np.median(costs)) * 1000, 3) if costs else None,
                "speculation": dict(self.speculation), "rollbacks": self.rollbacks,
                "cache_slides": self.context.slides}

    def available_styles(self) -> list[str]:
        return sorted(s.name for s in self.bundle.styles)

    @property
    def hears_turns(self) -> bool:
        """The model was trained on the human's events too (train.human_weight > 0), so its
        human-voice time head knows when players play again (models before that never learnt it)."""
        train = (self.bundle.manifest.get("training") or {}).get("train") or {}
        return float(train.get("human_weight", 0.0) or 0.0) > 0.0

    def player_returns(self, t_s: float, within_s: float) -> float | None:
        """The model's chance that the player plays again within `within_s` after t_s, given that
        nothing came since their newest event. None when it has no opinion: resting, a model
        without the human's events, or the newest event is the AI's."""
        if not (self.healthy and self._started and self.hears_turns) or not self.context.committed:
            return None
        newest = self.context.committed[-1]
        state = self.context.state
        if newest.encoded[4] != HUMAN or state is None:
            return None
        return return_chance(state.human_time_logits, max(0.0, t_s - newest.onset_s), within_s)

    def learn(self, notes: list[Note]) -> None:
        self.fallback.learn(notes)   # the Markov voice keeps learning the player, ready to take over

    # --- conditioning --------------------------------------------------------------------------
    def style_vector(self, steering: Steering) -> np.ndarray:
        key = steering.styles
        vector = self._style_cache.get(key)
        if vector is None:
            names = {s.name for s in self.bundle.styles}
            blend = {}
            for name, weight in key:
                if name in names:
                    blend[name] = blend.get(name, 0.0) + weight
                elif name not in self._unknown_styles:
                    self._unknown_styles.add(name)
                    log.warning("the transformer has no style %r; the blend uses its other styles", name)
            if not blend:
                blend = {self.bundle.default_style: 1.0}
            vector = self.bundle.style_vector(blend)
            self._style_cache[key] = vector
        return vector

    def _conditions(self, session: SessionView, t_s: float) -> None:
        state = session.state(t_s)
        self._beat = state.beat
        self._mode = MODEL_MODES.index(session.model_mode)

    def _pulse_at(self, t_s: float) -> np.ndarray:
        """The pulse input of an event at t_s: the tempo, and where t_s falls on the tracked grid
        (as in training: the tracker's estimate when the event is heard)."""
        beat = self._beat
        if beat is None:
            return pulse_features(np.nan, np.nan, 0.0)
        return pulse_features(beat.tempo_bpm, beat.beat_position(t_s) % 1.0, beat.confidence)

    def _ensure_started(self, session: SessionView, t_s: float) -> None:
        if not self._started:
            self._conditions(session, t_s)
            self.context.start(self.style_vector(session.steering), self._mode, self._pulse_at(t_s))
            self._started = True

    # --- what the session calls ---------------------------------------------------------------
    def hear_note(self, session: SessionView, t_s: float, pitch: int, velocity: int) -> None:
        """A human note-on: it goes into the context now; the lookahead is sampled again after it."""
        self._hear(session, t_s, pitch, duration_bin(self._guess_duration(session)), velocity_bin(velocity))

    def hear_pedal(self, session: SessionView, t_s: float, down: bool) -> None:
        self._hear(session, t_s, PEDAL_DOWN if down else PEDAL_UP, 0, 0)

    def _hear(self, session, t_s, token, db, vb) -> None:
        self._now = t_s
        if not self.healthy and self.retry_at is not None and t_s < self.retry_at:
            self._started = False   # resting: the context starts afresh when the transformer is back
            return
        if not self._try(self._ensure_started, session, t_s):
            return
        self._conditions(session, t_s)
        last = self.context.last_committed_onset_s
        gap = 0.0 if last is None else max(0.0, t_s - last)
        event = self.context.make_event((time_bin(gap), token, db, vb, HUMAN), t_s, self._pulse_at(t_s), self._mode,
                                        self.style_vector(session.steering))
        self._forget_lookahead()
        self._try(self.context.append, event)

    def _forget_lookahead(self) -> None:
        """Roll the lookahead back: the plans sample again from the newest committed event."""
        if self.context.ahead:
            self.rollbacks += 1
        self.context.rollback()
        self.candidate = None
        for plan in self.plans:
            plan.notes_ahead, plan.exhausted = 0, False

    def _guess_duration(self, session: SessionView) -> float:
        newest = session.newest_human_duration_s()
        if newest is not None:
            self._last_human_duration_s = newest
        return self._last_human_duration_s

    def improvise(self, request: PlayRequest, state_now, steering: Steering, rng: np.random.Generator):
        if request.kind == VARIATION:
            return PeekableNotes(self.fallback.improvise(request, state_now, steering, rng))
        if not self.healthy:
            return PeekableNotes(self.fallback.improvise(request, state_now, steering, rng))
        adopted = self._adopt_candidate(request, steering)
        if adopted is not None:
            return adopted
        if self.context.ahead and self.context.ahead[-1].tag not in self.plans:
            self.context.rollback()   # a speculative answer nobody asked for
        self.candidate = None
        plan = Plan(self, request, steering, state_now, rng)
        self.plans.append(plan)
        return plan

    def cancel(self, session: SessionView, t_s: float) -> None:
        """The session hushed (barge-in, mode change, end of a trade turn): nothing ahead is played."""
        self.plans.clear()
        self._forget_lookahead()

    def think(self, session: SessionView, t_s: float) -> None:
        """Every engine tick: recover when rested, fill the lookahead up to the horizon, and keep
        a speculative answer ready."""
        if not self.healthy and self.retry_at is not None and t_s >= self.retry_at:
            self.healthy, self.reason = True, ""
            log.warning("the transformer plays again (after a rest of %.0f s)", self._retry_s)
        self._now = t_s
        if not self.healthy or not self._try(self._ensure_started, session, t_s):
            return
        if self.context.position >= self.backend.context - SLIDE_MARGIN:
            # Slide the cache now, in a tick with nothing due, rather than when a note is wanted
            # (a prefill takes ~10 ms here); what was sampled ahead is sampled again.
            self._forget_lookahead()
            self._try(self.context.slide)
            return
        # Plans done with (sampled past their end, nothing left ahead; handed-over ones once over).
        self.plans = [p for p in self.plans if (p.request.end_s > t_s if p.fallback is not None
                                                else not (p.exhausted and p.notes_ahead == 0))]
        if self.plans:
            self._follow_knobs(session.steering)
            steps = 0
            while steps < STEPS_PER_TICK and self.context.room_ahead():
                last = self.context.last_onset_s
                if last is not None and last > t_s + self.horizon_s:
                    break
                if not self._sample_next(t_s):
                    break
                steps += 1
        else:
            self._speculate(session, t_s)

    def _follow_knobs(self, steering: Steering) -> None:
        """A knob moved while an answer plays: what is not committed yet is sampled again with
        the new setting, so the change is heard within the commit window (60 ms), not at the next
        answer. Density and register move the request by the change (the policy scaled them)."""
        changed = False
        for plan in self.plans:
            old = plan.steering
            if plan.fallback is not None or old == steering:
                continue
            request = plan.request
            density = request.density
            if steering.density != old.density:
                density = request.density * steering.density / old.density if old.density > 0 else steering.density
            shift = steering.register_shift - old.register_shift
            plan.request = replace(request, density=min(1.0, max(0.0, density)),
                                   register=(request.register[0] + shift, request.register[1] + shift))
            plan.steering = steering
            changed = True
        if changed:
            self._forget_lookahead()

    # --- sampling ------------------------------------------------------------------------------
    def _generating_plan(self) -> Plan | None:
        for plan in self.plans:
            if not plan.exhausted and plan.fallback is None:
                return plan
        return None

    def _sample_next(self, now_s: float) -> bool:
        """Sample one more event for the plan being generated; False when no plan wants one."""
        plan = self._generating_plan()
        if plan is None:
            return False
        started = self._clock()
        try:
            self.sample_for(plan, now_s)
        except Exception as exc:  # a backend error must not stop the music: Markov takes over
            log.exception("transformer step failed")
            self._fall_back(f"model backend error: {type(exc).__name__}: {exc}", now_s)
            return False
        cost = self._clock() - started
        self.event_seconds.append(cost)
        self._check_budget(cost, now_s)
        return True

    def sample_for(self, plan: Plan, now_s: float) -> None:
        request, steering = plan.request, plan.steering
        context, backend = self.context, self.backend
        state = context.latest
        last = context.last_onset_s
        index = plan.notes_played + plan.notes_ahead
        first = index == 0
        if index < len(request.opening):
            self._push_opening(plan, request.opening[index], now_s)
            return
        if first:
            # The answer starts where the session put it (on its grid, or now): its time bin is given.
            onset = max(request.start_s, now_s, last if last is not None else now_s)
            tb = time_bin(onset - last) if last is not None else 0
        else:
            logits = state.time_logits.astype(np.float64, copy=True)
            density = (request.density - 0.5) * 2 * DENSITY_NATS
            if request.kind == ANSWER:
                density += ANSWER_DENSITY_NATS
            logits[_SHORT_GAPS] += density
            allowed = earliest_time_bins(last, now_s)
            if request.kind in (COMP, DUET):
                allowed &= self._accompaniment_times(plan, last, now_s)
            logits[~allowed] = -np.inf
            tb = draw(logits, steering.temperature, plan.rng)
            onset = last + TIME_BINS_S[tb]
        if onset >= request.end_s:
            plan.exhausted = True
            return
        allowed = _register_mask(*request.register)
        if not allowed.any():
            plan.exhausted = True
            return
        pitch_logits = backend.pitch_logits(state.h, AI, tb).astype(np.float64, copy=True)
        chord = context.chord_after(onset)
        if steering.chord_bias > 0 and chord.any():
            pitch_logits[:128] += steering.chord_bias * CHORD_BIAS_NATS * chord[_PITCH_CLASS]
        pitch_logits[~allowed] = -np.inf
        if request.kind == ANSWER:   # the call's figures (motifs.py)
            lean_on_cells(plan.notes_so_far(), request.cells, onset, steering.echo, steering.temperature, pitch_logits)
        pitch = draw(pitch_logits, steering.temperature, plan.rng)
        db = draw(backend.duration_logits(state.h, AI, tb, pitch), steering.temperature, plan.rng)
        vb = draw(backend.velocity_logits(state.h, AI, tb, pitch, db), steering.temperature, plan.rng)
        self._push(plan, onset, (tb, pitch, db, vb))

    def _push(self, plan: Plan, onset: float, tokens: tuple[int, int, int, int]) -> None:
        """An AI event into the lookahead, with the note it will sound as."""
        tb, pitch, db, vb = tokens
        request = plan.request
        duration = max(0.05, min(DURATION_BINS_S[db], MAX_NOTE_S, request.end_s + 0.5 - onset))
        note = Note(onset, pitch, velocity_of_bin(vb), duration, AI)
        mode = MODEL_MODES.index(MODEL_MODE_OF_KIND[request.kind])
        event = self.context.make_event((tb, pitch, db, vb, AI), onset, self._pulse_at(onset), mode,
                                        self.style_vector(plan.steering))
        self.context.push_ahead(event, tag=plan, note=note)
        plan.notes_so_far().append(note)
        plan.notes_ahead += 1

    def _push_opening(self, plan: Plan, given: Note, now_s: float) -> None:
        """One note of the answer's opening (the call's motif developed) goes into the context as
        if sampled: the model continues from the player's own material."""
        request = plan.request
        last = self.context.last_onset_s
        wanted = request.start_s + given.onset_s
        if last is None:
            tb, onset = 0, max(wanted, now_s)
        elif plan.notes_played + plan.notes_ahead == 0:
            onset = max(wanted, now_s, last)
            tb = time_bin(onset - last)
        else:   # on the model's time grid, as close to the motif's rhythm as its bins allow
            bins = np.flatnonzero(earliest_time_bins(last, now_s))
            tb = int(bins[np.argmin(np.abs(last + np.asarray(TIME_BINS_S)[bins] - wanted))])
            onset = last + TIME_BINS_S[tb]
        if onset >= request.end_s:
            plan.exhausted = True
            return
        pitch = min(request.register[1], max(request.register[0], given.pitch))
        self._push(plan, onset, (tb, pitch, duration_bin(given.duration_s), velocity_bin(given.velocity)))

    def _accompaniment_times(self, plan: Plan, last: float, now_s: float) -> np.ndarray:
        """Comping and duet lines breathe: a new chord or note no sooner than a gap set by the
        density (1 beat at the default comping density, half a beat at the busiest), and at most
        MAX_CHORD_NOTES notes struck together. (The model learnt from solo pianists' left hands,
        which are busier than a second pianist should be.)"""
        beat = plan.state_now().beat.period_s
        min_gap = beat * 2 ** (1 - 4 * plan.request.density)
        last_ai, together = self.context.last_of_voice(AI)
        not_before = now_s if last_ai is None else max(now_s, last_ai + min_gap)
        allowed = earliest_time_bins(last, not_before)
        if last_ai is not None and last_ai == last and together < MAX_CHORD_NOTES:
            allowed[0] = True  # another note of the chord being struck
        return allowed

    def _check_budget(self, cost: float, now_s: float) -> None:
        if self.step_budget_s is None:
            return
        self._overruns.append(cost > self.step_budget_s)
        if cost > 5 * self.step_budget_s or sum(self._overruns) >= OVERRUNS_TO_FALL_BACK:
            self._fall_back(f"steps over budget ({cost * 1000:.1f} ms > {self.step_budget_s * 1000:.0f} ms)", now_s)

    def _fall_back(self, reason: str, now_s: float) -> None:
        if self.healthy:
            self.fallbacks += 1
            log.warning("%s: the Markov voice plays for %.0f s", reason, self._retry_s)
        else:
            self._retry_s = min(MAX_RETRY_S, self._retry_s * 2)
        self.healthy, self.reason = False, reason
        self.retry_at = now_s + self._retry_s
        self._overruns.clear()
        self.candidate = None
        self.context.rollback()
        for plan in self.plans:  # what was planned goes on in the Markov voice, from the next note
            self._hand_over(plan, now_s)

    def _hand_over(self, plan: Plan, now_s: float) -> None:
        if plan.fallback is None:
            start = max(plan.request.start_s, now_s)
            if start < plan.request.end_s:
                # The Markov voice goes on from here; an opening already begun is not restarted.
                opening = plan.request.opening if plan.notes_played == 0 else ()
                request = replace(plan.request, start_s=start, opening=opening)
                plan.fallback = PeekableNotes(self.fallback.improvise(request, plan.state_now, plan.steering, plan.rng))
            else:
                plan.fallback = PeekableNotes(iter(()))
            plan.notes_ahead = 0

    def _try(self, action, *args) -> bool:
        try:
            action(*args)
            return True
        except Exception as exc:
            log.exception("transformer failed")
            self._fall_back(f"model backend error: {type(exc).__name__}: {exc}", self._now)
            return False

    # --- the session's note stream ----------------------------------------------------------------
    def peek_for(self, plan: Plan) -> Note | None:
        """The plan's next note (sampled now if nothing is ahead yet), None while it is to come."""
        now_s = plan.state_now().t_s
        if plan.fallback is None and not self.healthy:
            self._hand_over(plan, now_s)
        if plan.fallback is not None:
            return plan.fallback.peek()
        while True:
            ahead = self.context.ahead
            if ahead:
                return ahead[0].note if ahead[0].tag is plan else None
            if plan.exhausted or self._generating_plan() is not plan:
                return None
            # Nothing sampled yet (an answer decided this instant): sample its first note now.
            if not self._sample_next(now_s):
                return plan.fallback.peek() if plan.fallback is not None else None
            if plan.fallback is not None:
                return plan.fallback.peek()

    def pop_for(self, plan: Plan) -> Note:
        """The plan's next note is played: it joins the committed context."""
        if plan.fallback is not None:
            return plan.fallback.pop()
        item = self.context.commit_next()
        plan.notes_ahead -= 1
        plan.notes_played += 1
        return item.note

    # --- speculative answers ---------------------------------------------------------------------
    def _speculate(self, session: SessionView, t_s: float) -> None:
        """Keep a candidate answer for the phrase ending as it stands; a few events per tick,
        so no tick is long (its first event is there one tick after the key goes up)."""
        # The prediction changes only when something is played, a key goes up, a knob or the
        # mode moves: not worked out again on every tick of a pause.
        steering = session.steering
        situation = (self.context.version, session.last_release_s, steering, session.mode_changes)
        if situation != self._speculated_for:
            self._speculated_for = situation
            self._prediction = session.predicted_answer(t_s)
        predicted = self._prediction
        if predicted is None:
            return
        key = self._candidate_key(predicted, steering)
        if self.candidate is None or self.candidate[0] != key:
            self.context.rollback()
            plan = Plan(self, predicted, steering, session.state_now, session.rng)
            self.candidate = (key, plan)
            self.speculation["computed"] += 1
        plan = self.candidate[1]
        if plan.notes_ahead >= CANDIDATE_EVENTS or plan.exhausted:
            return
        self.plans = [plan]
        try:
            for _ in range(STEPS_PER_TICK):
                if plan.notes_ahead >= CANDIDATE_EVENTS or not self.context.room_ahead() or not self._sample_next(t_s):
                    break
        finally:
            self.plans = []
        if not self.healthy:
            self.candidate = None
            self.context.rollback()

    def _candidate_key(self, request: PlayRequest, steering: Steering) -> tuple:
        last = self.context.last_committed_onset_s
        first_bin = time_bin(request.start_s - last) if last is not None else 0
        return (self.context.version, first_bin, request.register, round(request.density, 6), steering,
                request.opening)

    def _adopt_candidate(self, request: PlayRequest, steering: Steering) -> Plan | None:
        if self.candidate is None or request.kind != ANSWER or self.plans:
            return None
        key, plan = self.candidate
        self.candidate = None
        ahead = self.context.ahead
        if key != self._candidate_key(request, steering) or not ahead or ahead[0].tag is not plan:
            self.speculation["missed"] += 1
            self.context.rollback()
            return None
        shift = request.start_s - ahead[0].note.onset_s
        for item in ahead:
            item.note = replace(item.note, onset_s=item.note.onset_s + shift)
            item.event = replace(item.event, onset_s=item.event.onset_s + shift)
        end = request.end_s
        while ahead and ahead[-1].note.onset_s >= end:
            ahead.pop()
        plan.request = request
        plan.notes_ahead = len(ahead)
        plan.sounded = [item.note for item in ahead]   # a candidate has played nothing yet
        self.plans.append(plan)
        self.speculation["adopted"] += 1
        return plan

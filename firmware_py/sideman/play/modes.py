"""The session modes. Each is a policy: it decides *when* the AI plays and what it asks the voice
for; the voice decides the notes. Policies see the session (listener state, steering, what the AI
is doing) and call `session.play(request)` or `session.hush()`.

A policy also carries its mode's names and conditioning (`Policy`'s class attributes); every table
of modes (flags, settings, the panel's knob and screen, the network's mode input) derives from
MODES at the bottom, so a new mode is one class here."""

from __future__ import annotations

from dataclasses import replace

from sideman.controls import value as control_value
from sideman.listen.phrases import Phrase
from sideman.play.motifs import call_seed, develop_call
from sideman.play.request import ANSWER, COMP, DUET, VARIATION, PlayRequest

BEATS_PER_BAR = 4
MAX_ANSWER_BARS = 8
# How far ahead of a bar line a policy asks for the next bar, so its first note is on time.
LEAD_S = 0.12


class Policy:
    """A mode. `session` in every method is the play.session.Session deciding with it."""
    name = "?"               # flags, settings, presets, the MIDI mode CC
    screen_label = "?"       # the OLED's mode line (at most 9 characters)
    knob_label = "?"         # the mode knob's value (at most 5 characters)
    activity = "answering"   # what the panel says the AI is doing while it plays
    model_mode = "answer"    # the network's mode input (one of model.conditioning.MODEL_MODES)

    def on_note(self, session, t_s: float, pitch: int) -> None: ...
    def on_phrase_end(self, session, phrase: Phrase, t_s: float) -> None: ...
    def on_tick(self, session, t_s: float) -> None: ...

    def predict(self, session, t_s: float) -> PlayRequest | None:
        """The request this mode would make if the phrase being played ended with the key just
        released (the transformer samples it ahead); None where the mode does not answer phrases."""
        return None


class CallResponse(Policy):
    """Answer when the phrase ends, as long as the call scaled by answer_length (1 to 8 bars);
    stop the moment the player starts again."""
    name = "call-response"
    screen_label = "CALL-RESP"
    knob_label = "CALL"

    def on_note(self, session, t_s, pitch):
        if session.ai_busy(t_s):
            session.hush(t_s, barge_in=True)

    def on_phrase_end(self, session, phrase, t_s):
        session.play(self.request(session, phrase, t_s, ANSWER, tuple(phrase.notes)), phrase)

    def predict(self, session, t_s):
        """The answer to the phrase as it stands, decided when every key has stayed up for the
        phrase-end gap."""
        phrases = session.listener.phrases
        current, released = phrases.current, phrases.last_release_s
        if current is None or released is None or not current.notes:
            return None
        decided = max(t_s, released + phrases.end_gap_s())
        phrase = Phrase(current.start_s, released, sorted(current.notes, key=lambda n: (n.onset_s, n.pitch)))
        return self.request(session, phrase, decided, ANSWER, tuple(phrase.notes))

    @staticmethod
    def request(session, phrase: Phrase, t_s: float, kind: str, material) -> PlayRequest:
        state = session.state(t_s)
        beat = state.beat_s
        start = session.answer_start(phrase, t_s)
        call_bars = phrase.duration_s / (BEATS_PER_BAR * beat)
        bars = min(MAX_ANSWER_BARS, max(1, round(call_bars * session.steering.answer_length)))
        register = session.register_around(phrase.notes)
        return PlayRequest(kind, start, start + bars * BEATS_PER_BAR * beat, register, material,
                           session.steering.density, opening=_opening(session, t_s, kind, material, register))


class Variation(CallResponse):
    """Like call and response, but once the player says "keep", every answer is a variation of
    the kept phrase."""
    name = "variation"
    screen_label = "VARIATION"
    knob_label = "VAR"

    def predict(self, session, t_s):
        return None   # a variation is played by the Markov voice, from the kept phrase: nothing to sample ahead

    def on_phrase_end(self, session, phrase, t_s):
        if session.kept_phrase is None:
            super().on_phrase_end(session, phrase, t_s)
            return
        kept = session.kept_phrase
        request = self.request(session, phrase, t_s, VARIATION, tuple(kept.notes))
        # A variation is as long as the kept phrase (plus room to displace it), whatever the call.
        room = kept.duration_s + 2 * session.state(t_s).beat_s
        session.play(replace(request, end_s=max(request.end_s, request.start_s + room)), phrase)


class _BarByBar(Policy):
    """Comp and duet: while the player is active, ask for one bar at a time on the beat grid."""
    kind = COMP
    density_scale = 0.5
    idle_bars = 2  # stop after this many bars without a note from the player

    def __init__(self):
        self.planned_until: float | None = None

    def on_tick(self, session, t_s):
        state = session.state(t_s)
        bar = BEATS_PER_BAR * state.beat_s
        last_onset = session.last_human_onset_s
        active = state.in_phrase or (last_onset is not None and t_s - last_onset < self.idle_bars * bar)
        if not active:
            self.planned_until = None
            return
        if self.planned_until is not None and self.planned_until - t_s > LEAD_S:
            return
        start = self.planned_until if self.planned_until is not None and self.planned_until >= t_s \
            else state.beat.next_beat_after(t_s)
        self.planned_until = start + bar
        session.play(PlayRequest(self.kind, start, start + bar, self.register(session, state),
                                 (), session.steering.density * self.density_scale))

    def register(self, session, state) -> tuple[int, int]:
        raise NotImplementedError


class Comp(_BarByBar):
    """Chords under the player: below their lowest recent note, on the beat grid, sparse."""
    name = "comp"
    screen_label = "COMP"
    knob_label = "COMP"
    activity = "comping"
    model_mode = "comp"
    kind = COMP

    def register(self, session, state):
        high = min(67, max(52, state.features.lowest - 2)) + session.steering.register_shift
        return (high - 17, high)


class Duet(_BarByBar):
    """Play along: lines an octave away from the player's centre, lighter than an answer."""
    name = "duet"
    screen_label = "DUET"
    knob_label = "DUET"
    activity = "playing"
    model_mode = "duet"
    kind = DUET
    density_scale = 0.6

    def register(self, session, state):
        centre = state.features.mean_pitch
        centre = centre - 12 if centre >= 66 else centre + 12
        centre += session.steering.register_shift
        return (int(centre) - 9, int(centre) + 9)

    def on_note(self, session, t_s, pitch):
        pass


class Trade(Policy):
    """Trading fours (or trade_bars): the player's first note is a downbeat; turns alternate at bar
    lines counted on the tracked beat; the AI answers the player's last turn. A player turn with no
    notes ends the trading until the next note."""
    name = "trade"
    screen_label = "TRADE"
    knob_label = "TRADE"
    activity = "trading"

    def __init__(self):
        self.turn_start: float | None = None
        self.ai_turn = False
        self.turn_notes = 0

    def on_note(self, session, t_s, pitch):
        if self.turn_start is None:
            self.turn_start, self.ai_turn, self.turn_notes = t_s, False, 0
        if not self.ai_turn:
            self.turn_notes += 1

    def on_tick(self, session, t_s):
        if self.turn_start is None:
            return
        state = session.state(t_s)
        turn_end = self.turn_end(session, state)
        if t_s < turn_end - LEAD_S:
            return
        if self.ai_turn:
            if t_s < turn_end:
                return
            session.hush(t_s)  # the AI's turn is over at the bar line
            self.turn_start, self.ai_turn, self.turn_notes = turn_end, False, 0
            return
        if self.turn_notes == 0:  # the player sat out a turn: trading stops
            self.turn_start = None
            return
        material = tuple(n for n in session.recent_human_notes() if n.onset_s >= self.turn_start)
        next_end = turn_end + session.trade_bars * BEATS_PER_BAR * self.counting_beat(session, state)
        register = session.register_around(material)
        session.play(PlayRequest(ANSWER, turn_end, next_end - 0.05, register, material,
                                 session.steering.density, opening=_opening(session, t_s, ANSWER, material, register)))
        self.turn_start, self.ai_turn = turn_end, True

    def turn_end(self, session, state) -> float:
        """The bar line ending the current turn, snapped onto the tracked beat grid."""
        beat = self.counting_beat(session, state)
        nominal = self.turn_start + session.trade_bars * BEATS_PER_BAR * beat
        if state.beat.confidence < 0.5:
            return nominal
        k = round((nominal - state.beat.last_beat_s) / beat)
        snapped = state.beat.last_beat_s + k * beat
        return snapped if abs(snapped - nominal) < beat / 2 else nominal

    @staticmethod
    def counting_beat(session, state) -> float:
        """The beat bars are counted in: the tracked one, folded into the octave of the tempo
        control. A steady eighth-note line is as much 240 BPM as 120 to any tracker; counting
        "4 bars" at the wrong octave would end the player's turn halfway."""
        configured = 60.0 / control_value(session.controls, "tempo_bpm")
        if state.beat.confidence < 0.5:
            return configured
        beat = state.beat_s
        while beat < configured / 1.5:
            beat *= 2
        while beat > configured * 1.5:
            beat /= 2
        return beat


def _opening(session, t_s: float, kind: str, material, register) -> tuple:
    """An answer opens with the call's last motif developed (as much as the echo control says),
    in the key heard."""
    if kind != ANSWER or not material:
        return ()
    state = session.state(t_s)
    scale = state.key.scale_pitch_classes() if state.key is not None else \
        state.chord.scale_pitch_classes() if state.chord is not None else frozenset()
    return develop_call(material, session.steering.echo, register, call_seed(material, session.seed), scale)


# In the mode knob's and the MIDI mode CC's order.
MODES: dict[str, type[Policy]] = {p.name: p for p in (CallResponse, Comp, Trade, Duet, Variation)}
MODE_NAMES: tuple[str, ...] = tuple(MODES)


def make_policy(name: str) -> Policy:
    try:
        return MODES[name]()
    except KeyError:
        raise ValueError(f"unknown mode {name!r} (choose from {', '.join(MODES)})") from None


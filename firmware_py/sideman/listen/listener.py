"""The listener: one object the session feeds with the human's MIDI, answering "what is going on
now" (sounding notes, chord, key, beat grid, phrase, player features) and "what just happened"
(a phrase started, a phrase ended)."""

from __future__ import annotations

from dataclasses import dataclass

from sideman import messages as mm
from sideman.listen.chords import Chord, ChordListener
from sideman.listen.features import FeatureListener, PlayerFeatures
from sideman.listen.key import Key, KeyListener
from sideman.listen.phrases import Phrase, PhraseListener
from sideman.listen.tempo import BeatEstimate, BeatTracker
from sideman.model.events import Note


@dataclass(frozen=True)
class ListenerState:
    t_s: float
    chord: Chord | None
    key: Key | None
    beat: BeatEstimate
    features: PlayerFeatures
    in_phrase: bool
    keys_down: int
    phrase_started_s: float | None
    recent_notes: tuple[Note, ...]   # the phrase being played (or the last one), for context

    @property
    def beat_s(self) -> float:
        return self.beat.period_s


@dataclass(frozen=True)
class Heard:
    """What one message or tick changed, for the session's policies."""
    phrase_started: Phrase | None = None
    phrase_ended: Phrase | None = None
    note_on: int | None = None       # pitch of a human note-on


class Listener:
    def __init__(self, tempo_bpm: float = 120.0):
        self.chords = ChordListener()
        self.keys = KeyListener()
        self.beats = BeatTracker(initial_bpm=tempo_bpm)
        self.phrases = PhraseListener()
        self.player = FeatureListener()
        self.clock = None  # a ClockFollower: its tempo and beat win over the tracker's guess
        self._following_clock = False

    def hear(self, message: tuple, t_s: float) -> Heard:
        if len(message) < 3 or message[0] >= 0xF0:
            return Heard()
        if mm.is_note_on(message):
            pitch, velocity = message[1], message[2]
            self.chords.note_on(t_s, pitch, velocity)
            self.keys.note_on(t_s, pitch, velocity)
            self.beats.onset(t_s, velocity, pitch)
            self.player.note_on(t_s, pitch, velocity)
            started = self.phrases.note_on(t_s, pitch, velocity)
            return Heard(phrase_started=started, note_on=pitch)
        if mm.is_note_off(message):
            self.chords.note_off(t_s, message[1])
            self.phrases.note_off(t_s, message[1])
        elif message[0] & 0xF0 == mm.CONTROL_CHANGE and message[1] == mm.CC_SUSTAIN:
            self.chords.sustain(t_s, message[2] >= 64)
        return Heard()

    def tick(self, t_s: float) -> Heard:
        self._follow_clock(t_s)
        ended = self.phrases.check_end(t_s)
        return Heard(phrase_ended=ended) if ended else Heard()

    def _follow_clock(self, t_s: float) -> None:
        if self.clock is None:
            return
        t_ns = int(t_s * 1e9)
        bpm = self.clock.tempo_bpm(t_ns)
        if bpm is not None:
            beat_ns = self.clock.last_beat_ns(t_ns)
            self.beats.set_tempo(bpm, None if beat_ns is None else beat_ns / 1e9)
            self._following_clock = True
        elif self._following_clock:
            self.beats.clear_override()
            self._following_clock = False

    def state(self, t_s: float) -> ListenerState:
        phrase = self.phrases.current or self.phrases.last
        return ListenerState(
            t_s=t_s, chord=self.chords.chord(t_s), key=self.keys.key(t_s), beat=self.beats.estimate(t_s),
            features=self.player.features(t_s), in_phrase=self.phrases.in_phrase,
            keys_down=self.phrases.keys_down,
            phrase_started_s=self.phrases.current.start_s if self.phrases.current else None,
            recent_notes=tuple(phrase.notes) if phrase else ())

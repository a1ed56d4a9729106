"""The panel controller on a real Box (its engine, scheduler and a Markov session running; the synth
is an in-process recording output): knobs act on the session, buttons panic/mute/keep, MIDI learn and
Program Change work through the box's input path, settings and presets are saved atomically and a
bad file changes nothing."""

from __future__ import annotations

import threading
import time

import pytest

from midi_probe import sounding_after, wait_until
from music_fixtures import fixture_markov
from sideman import messages as mm
from sideman.clock import NS_PER_S
from sideman.box import Box, BoxConfig
from sideman.panel.controller import PanelController
from sideman.panel.events import Click, Press, Turn
from sideman.panel.presets import PresetBank
from sideman.panel.settings import Settings, load_settings, settings_path
from sideman.panel.views import AlertView, HomeView, MenuView
from sideman.play.improviser import MarkovImproviser
from sideman.play.session import Session
from sideman.schedule.outputs import OutputSlot

AI = 1  # channel index of the AI (channel 2)


class Synth:
    """The far end of an output: records what reaches it."""

    def __init__(self, name="synth"):
        self.name = name
        self.received: list[tuple] = []
        self._lock = threading.Lock()

    def send(self, message):
        with self._lock:
            self.received.append(tuple(message))

    def messages(self):
        with self._lock:
            return list(self.received)

    def close(self):
        pass


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def rig(tmp_path):
    config = BoxConfig(capture=False)
    session = Session(MarkovImproviser(fixture_markov()), controls=config.controls, styles=("fixture",))
    box = Box(config, voice=session, announce=lambda text: None)
    synth = Synth()
    box.outputs.add(OutputSlot(synth, 0))
    box.scheduler.start()
    box.engine.start()
    clock = Clock()
    settings = Settings(controls=config.controls, styles="fixture")
    panel = PanelController(box, settings, bank=PresetBank(tmp_path / "presets"), clock=clock,
                            styles_available=lambda: ["fixture", "other"])
    box.midi_controls = panel.midi
    yield box, panel, synth, clock
    box.engine.stop()
    box.scheduler.stop()


def settle(panel, clock, seconds=0.0):
    """Let the panel handle what arrived, and the engine run what the panel asked of it."""
    clock.t += seconds
    panel.step(clock.t)
    done = threading.Event()
    panel.box.engine.call_soon(done.set)
    assert done.wait(2), "the engine thread did not run the panel's command"


def test_density_knob_moves_what_the_session_reads_and_push_turn_is_the_second_function(rig):
    box, panel, _synth, clock = rig
    before = box.voice.steering
    panel.post(Turn(3, 4))
    settle(panel, clock)
    assert box.voice.steering.density == pytest.approx(before.density + 4 / 40)
    assert box.voice.steering.answer_length == before.answer_length
    panel.post(Turn(3, -2, held=True))
    settle(panel, clock)
    assert box.voice.steering.answer_length == pytest.approx(before.answer_length - 2 * 1.75 / 40)
    view = panel.view(clock.t)
    assert isinstance(view, HomeView)
    assert view.knobs[3].label == "LEN" and view.knobs[3].held
    # The second function shows a moment, then the knob reads as its first again.
    assert panel.view(clock.t + 2).knobs[3].label == "DENS"


def test_push_turning_the_adventure_knob_sets_patience_and_the_phrase_end_waits_longer(rig):
    box, panel, _synth, clock = rig
    from sideman.listen.phrases import phrase_end_gap_s
    before, adventure = box.voice.controls["patience"], box.voice.controls["temperature"]
    panel.post(Turn(2, 8, held=True))
    settle(panel, clock)
    assert box.voice.controls["patience"] == pytest.approx(before + 8 / 40)
    assert box.voice.controls["temperature"] == adventure   # the turn's first function is left alone
    assert panel.view(clock.t).knobs[2].label == "WAIT"
    # the session hands it to its phrase listener at the next tick: a longer silence ends a phrase
    box.engine.call_soon(lambda: box.voice.tick(int(clock.t * 1e9)))
    settle(panel, clock)
    no_phrase = 0.0   # nothing played yet: the gap for a short phrase
    assert box.voice.listener.phrases.end_gap_s() == pytest.approx(phrase_end_gap_s(before + 8 / 40, no_phrase))
    assert phrase_end_gap_s(before + 8 / 40, no_phrase) > phrase_end_gap_s(before, no_phrase) + 0.1


def test_turning_past_the_end_stays_at_the_end(rig):
    box, panel, _synth, clock = rig
    panel.post(Turn(0, 200))
    settle(panel, clock)
    assert box.voice.controls["style_blend"] == 1.0


def test_mode_knob_changes_the_sessions_mode_one_step_per_detent(rig):
    box, panel, _synth, clock = rig
    assert box.voice.policy.name == "call-response"
    panel.post(Turn(1, 5))  # an accelerated turn still moves one mode
    settle(panel, clock)
    assert box.voice.policy.name == "comp"
    assert panel.view(clock.t).knobs[1].value == "COMP"


def test_partner_style_knob_loads_the_other_table_and_sets_the_blend_ends(rig, monkeypatch):
    box, panel, _synth, clock = rig
    import sideman.play.voices as voices

    monkeypatch.setattr(voices, "load_style", lambda name: fixture_markov(seed=3))
    panel.post(Turn(0, 1, held=True))
    settle(panel, clock)
    assert box.voice.styles == ("fixture", "other")
    assert "other" in box.voice.improviser.styles
    assert panel.settings.styles == "fixture,other"


def test_panic_button_silences_sounding_ai_notes(rig):
    box, panel, synth, clock = rig
    now = time.monotonic_ns()
    box.scheduler.play_note(now, 64, 90, 5_000_000_000)  # a five-second AI note
    assert wait_until(lambda: (mm.NOTE_ON | AI, 64, 90) in synth.messages())
    panel.post(Press("panic"))
    settle(panel, clock)
    assert wait_until(lambda: any(m[0] == mm.NOTE_OFF | AI and m[1] == 64 or
                                m[:2] == (mm.NOTE_ON | AI, 64) and m[2] == 0 for m in synth.messages()))
    assert (mm.CONTROL_CHANGE | AI, mm.CC_ALL_NOTES_OFF, 0) in synth.messages()
    assert box.scheduler.panics == 1
    assert panel.view(clock.t).title == "PANIC"


def test_long_panic_mutes_the_ai_and_a_second_long_press_unmutes(rig):
    box, panel, synth, clock = rig
    panel.post(Press("panic", long=True))
    settle(panel, clock)
    assert box.engine.muted and panel.home(clock.t).activity == "muted"

    def phrase_then_its_answer_is_due():
        """A whole phrase, then the silence that ends it; returns once the answer's first note
        was due 0.3 s ago (so a late answer cannot pass for a muted one)."""
        t0 = time.monotonic_ns()
        for i, pitch in enumerate((60, 62, 64, 65, 67, 65, 64, 62)):
            box.on_human((mm.NOTE_ON, pitch, 80), t0 + i * 150_000_000)
            box.on_human((mm.NOTE_OFF, pitch, 0), t0 + i * 150_000_000 + 100_000_000)
        answers = box.voice.log.answers
        assert wait_until(lambda: answers and answers[-1].start_s * NS_PER_S > t0 and
                          answers[-1].first_note_s is not None, timeout_s=5)
        assert wait_until(lambda: time.monotonic() > answers[-1].first_note_s + 0.3, timeout_s=5)

    def ai_note_ons():
        return [m for m in synth.messages() if m[0] == mm.NOTE_ON | AI]

    phrase_then_its_answer_is_due()
    assert not ai_note_ons()   # muted: the answer was played into nothing
    panel.post(Press("panic", long=True))
    settle(panel, clock)
    assert not box.engine.muted
    # Unmuted, the same phrase's answer reaches the synth: the silence above was the mute.
    time.sleep(1.0)
    phrase_then_its_answer_is_due()
    assert ai_note_ons()


def test_keep_button_keeps_the_phrase_for_variation(rig):
    box, panel, _synth, clock = rig
    t0 = time.monotonic_ns()
    for i, pitch in enumerate((60, 64, 67, 72)):
        box.on_human((mm.NOTE_ON, pitch, 80), t0 + i * 100_000_000)
        box.on_human((mm.NOTE_OFF, pitch, 0), t0 + i * 100_000_000 + 80_000_000)
    panel.post(Press("keep"))
    settle(panel, clock)
    settle(panel, clock)  # the engine posted back what it kept
    assert box.voice.kept_phrase is not None and len(box.voice.kept_phrase.notes) == 4
    view = panel.view(clock.t)
    assert isinstance(view, AlertView) and view.title == "PHRASE KEPT" and "4 notes" in view.lines


def test_settings_are_saved_atomically_after_the_knob_rests(rig):
    box, panel, _synth, clock = rig
    panel.post(Turn(2, 3))  # adventure
    settle(panel, clock)
    assert not settings_path().exists()  # still turning: nothing written yet
    settle(panel, clock, seconds=1.5)
    saved = load_settings()
    assert saved.controls["temperature"] == pytest.approx(1.0 + 3 * 1.8 / 40)
    assert not list(settings_path().parent.glob(".settings.toml.tmp-*"))


def test_preset_saved_by_long_keep_is_recalled_by_program_change(rig):
    box, panel, synth, clock = rig
    panel.post(Turn(3, 10))   # density 0.75
    panel.post(Turn(1, 1))    # comp
    settle(panel, clock)
    panel.post(Press("keep", long=True))
    settle(panel, clock)
    assert panel.view(clock.t).title == "SAVED"
    panel.post(Turn(3, -20))  # density 0.25
    panel.post(Turn(1, -1))   # call-response
    settle(panel, clock)
    assert box.voice.controls["density"] == pytest.approx(0.25)
    box.on_human((mm.PROGRAM_CHANGE, 0), time.monotonic_ns())  # channel 1: the keyboard's patch change
    settle(panel, clock)
    assert box.voice.controls["density"] == pytest.approx(0.25)
    box.on_human((mm.PROGRAM_CHANGE | 15, 0), time.monotonic_ns())  # the preset channel (16)
    settle(panel, clock)
    assert box.voice.controls["density"] == pytest.approx(0.75)
    assert box.voice.policy.name == "comp"
    assert (mm.PROGRAM_CHANGE | 15, 0) in synth.messages()  # the synth gets its Program Change too


def test_a_bad_preset_changes_nothing_and_says_so(rig, tmp_path):
    box, panel, _synth, clock = rig
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "007-broken.toml").write_text('name = "broken"\nprogram = 7\n[controls]\ndensity = 9\n')
    before = dict(box.voice.controls)
    box.on_human((mm.PROGRAM_CHANGE | 15, 7), time.monotonic_ns())
    settle(panel, clock)
    assert box.voice.controls == before
    view = panel.view(clock.t)
    assert view.title == "BAD PRESET"


def test_midi_learn_from_the_menu_then_the_cc_moves_the_control_and_stays_off_the_synth(rig):
    box, panel, synth, clock = rig
    panel.post(Click(0))
    settle(panel, clock)
    menu = panel.view(clock.t)
    assert isinstance(menu, MenuView)
    panel.post(Turn(0, menu.items.index("MIDI learn")))
    panel.post(Click(0))
    settle(panel, clock)
    learn = panel.view(clock.t)
    assert learn.title == "MIDI LEARN"
    panel.post(Turn(0, learn.items.index("DENSITY")))
    panel.post(Click(0))
    settle(panel, clock)
    assert panel.view(clock.t).title == "MIDI LEARN"  # "move a knob for DENSITY"
    box.on_human((mm.CONTROL_CHANGE, 64, 127), time.monotonic_ns())  # the pedal is never taken
    box.on_human((mm.CONTROL_CHANGE, 0, 1), time.monotonic_ns())     # nor bank select
    box.on_human((mm.CONTROL_CHANGE, 80, 0), time.monotonic_ns())    # nor the keep CC
    box.on_human((mm.CONTROL_CHANGE, 21, 100), time.monotonic_ns())
    settle(panel, clock)
    assert panel.midi.cc_map == {21: "density"}
    box.on_human((mm.CONTROL_CHANGE, 21, 0), time.monotonic_ns())
    settle(panel, clock)
    assert box.voice.controls["density"] == 0.0
    box.on_human((mm.CONTROL_CHANGE, 22, 5), time.monotonic_ns())  # not mapped: the synth's
    sent = synth.messages()
    assert (mm.CONTROL_CHANGE, 64, 127) in sent and (mm.CONTROL_CHANGE, 22, 5) in sent
    assert not [m for m in sent if m[:2] == (mm.CONTROL_CHANGE, 21)]
    settle(panel, clock, seconds=1.5)
    assert load_settings().cc_map == {21: "density"}


def test_the_home_screen_names_the_chord_being_played(rig):
    box, panel, _synth, clock = rig
    t = time.monotonic_ns()
    for pitch in (50, 53, 57, 60):  # D F A C
        box.on_human((mm.NOTE_ON, pitch, 80), t)
    assert wait_until(lambda: (settle(panel, clock, 0.2), panel.home(clock.t).chord)[1] == "Dm7")


def test_a_lost_output_is_announced_and_shown(rig):
    box, panel, _synth, clock = rig
    settle(panel, clock)
    box.outputs.remove(box.outputs.slots[0])
    settle(panel, clock)
    view = panel.view(clock.t)
    assert view.title == "PORT LOST" and "synth" in view.lines[0]
    settle(panel, clock, seconds=5)  # the alert goes; the badge stays while nothing listens
    assert panel.view(clock.t).badge == "NO OUTPUT"


def test_the_readme_pictures_are_the_real_screens(rig, screenshot):
    """The controller's own views, drawn by the OLED code on luma's dummy device: home while
    comping a Dm7, the menu, MIDI learn, a lost port, and the front panel."""
    from sideman.panel.display import Display, make_device
    from sideman.panel.drawing import draw_front_panel

    box, panel, _synth, clock = rig
    panel.display = Display(make_device(kind="dummy"))
    box.voice.use_styles(("mehldau", "tatum"), {"mehldau": fixture_markov(1), "tatum": fixture_markov(2)})
    panel.settings.styles = "mehldau,tatum"
    panel.post(Turn(1, 1))      # comp
    panel.post(Turn(0, 12))     # blend
    t = time.monotonic_ns()
    for beat in range(8):       # quarter notes at 120 BPM for the beat tracker, then a Dm7
        onset = t - (8 - beat) * 500_000_000
        box.on_human((mm.NOTE_ON, 38 if beat % 2 == 0 else 45, 90), onset)
        box.on_human((mm.NOTE_OFF, 38 if beat % 2 == 0 else 45, 0), onset + 200_000_000)
    for pitch in (50, 53, 57, 60):
        box.on_human((mm.NOTE_ON, pitch, 80), t)
    assert wait_until(lambda: (settle(panel, clock, 0.2), panel.home(clock.t).chord)[1] == "Dm7")
    home = panel.view(clock.t)
    assert isinstance(home, HomeView) and home.mode == "comp"
    panel.step(clock.t)
    screenshot("oled-home.png", panel.display.image())
    screenshot("front-panel.png", draw_front_panel(home), scale=1)
    redraws = panel.display.redraws
    panel.step(clock.t)
    assert panel.display.redraws == redraws  # nothing changed, nothing drawn
    panel.post(Turn(3, -3, held=True))
    settle(panel, clock)
    screenshot("oled-home-held.png", panel.display.image())
    panel.post(Click(2))
    panel.post(Turn(2, 2))
    settle(panel, clock, 2)
    assert isinstance(panel.view(clock.t), MenuView)
    screenshot("oled-menu.png", panel.display.image())
    panel.post(Click(2))        # MIDI learn
    panel.post(Turn(2, 3))
    panel.post(Click(2))        # ... density
    settle(panel, clock)
    screenshot("oled-learn.png", panel.display.image())
    panel.post(Click(2))        # cancel
    settle(panel, clock, 5)
    box.outputs.remove(box.outputs.slots[0])
    settle(panel, clock)
    assert panel.view(clock.t).title == "PORT LOST"
    screenshot("oled-alert.png", panel.display.image())


def test_an_oled_that_drops_off_the_bus_does_not_stop_the_settings_being_saved(rig):
    from luma.core.error import DeviceNotFoundError

    from sideman.panel.display import Display, make_device

    class FlakyOled:
        """luma's dummy device, until the I2C bus stops answering (luma raises its own error)."""
        def __init__(self):
            self.inner = make_device(kind="dummy")
            self.width, self.height, self.mode, self.size = 128, 64, "1", (128, 64)
            self.gone = False

        def display(self, image):
            if self.gone:
                raise DeviceNotFoundError("I2C device not found on address: 0x3C")
            self.inner.display(image)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    box, panel, _synth, clock = rig
    oled = FlakyOled()
    panel.display = Display(oled)
    settle(panel, clock)
    oled.gone = True
    panel.post(Turn(3, 2))
    settle(panel, clock)
    settle(panel, clock, seconds=1.5)
    assert load_settings().controls["density"] == pytest.approx(0.55)
    oled.gone = False
    panel.post(Turn(3, 1))
    settle(panel, clock)
    assert panel.display.error is None  # back, and drawing again


def test_muting_never_strands_a_note_on(rig):
    """Mute lands between two of the voice's batches, so each note-on keeps its note-off."""
    box, panel, synth, clock = rig
    t0 = time.monotonic_ns()
    for phrase in range(3):
        for i, pitch in enumerate((60, 62, 64, 65)):
            onset = t0 + (phrase * 1500 + i * 120) * 1_000_000
            box.on_human((mm.NOTE_ON, pitch, 80), onset)
            box.on_human((mm.NOTE_OFF, pitch, 0), onset + 90_000_000)
        for _ in range(3):
            panel.post(Press("panic", long=True))
            settle(panel, clock)
            time.sleep(0.1)
    time.sleep(2.5)  # longer than any AI note: whatever was sent has had its note-off
    assert sounding_after(synth.messages()) == set()

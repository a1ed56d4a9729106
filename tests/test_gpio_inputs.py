"""The panel's GPIO input driver, through a fake Jetson.GPIO: quadrature decoding (bounce, missed
edges, acceleration), push/click/turn, buttons with long press, the pin map, start/close.
Deterministic: the fake owns the clock, edges fire callbacks synchronously, no sleeps."""

from __future__ import annotations

import re
import sys
import threading

import pytest

from fake_jetson_gpio import FakeJetsonGPIO
from sideman.panel.events import LONG_PRESS_S, Click, Press, Turn
from sideman.panel.gpio_inputs import GpioUnavailable, PanelInputs, open_jetson_gpio
from sideman.panel.pin_map import REPO_PINMAP, PinMapError, load_pin_map

PIN_MAP = load_pin_map(REPO_PINMAP)
BLEND, DENSITY = PIN_MAP.encoders[0], PIN_MAP.encoders[3]
PANIC, KEEP = PIN_MAP.buttons["panic"], PIN_MAP.buttons["keep"]


@pytest.fixture
def gpio():
    return FakeJetsonGPIO()


@pytest.fixture
def events():
    return []


@pytest.fixture
def panel(gpio, events):
    inputs = PanelInputs(gpio, PIN_MAP, events.append, clock=gpio.clock)
    inputs.start()
    yield inputs
    inputs.close()


def settle(gpio, panel, dt=0.02):
    """Let switch levels outlast the debounce time, then poll; returns the events."""
    gpio.advance(dt)
    return panel.poll()


def total_steps(evs, encoder=0):
    return sum(e.steps for e in evs if isinstance(e, Turn) and e.encoder == encoder)


# -- quadrature ----------------------------------------------------------------------------------

@pytest.mark.parametrize("direction", [1, -1])
def test_slow_turn_is_exactly_one_step_per_detent(gpio, panel, events, direction):
    for _ in range(6):
        gpio.turn(BLEND.a, BLEND.b, 1, direction)
        assert panel.poll() == [Turn(0, direction)]
    assert events == [Turn(0, direction)] * 6
    assert panel.stats["missed_edges"] == 0


def test_each_encoder_reports_its_own_index(gpio, panel):
    gpio.turn(DENSITY.a, DENSITY.b, 3, -1)
    gpio.turn(PIN_MAP.encoders[1].a, PIN_MAP.encoders[1].b, 2, 1)
    evs = panel.poll()
    assert total_steps(evs, 3) == -3
    assert total_steps(evs, 1) == 2
    assert total_steps(evs, 0) == 0


def test_several_slow_detents_between_polls_coalesce_exactly(gpio, panel):
    gpio.turn(BLEND.a, BLEND.b, 5, 1)
    assert panel.poll() == [Turn(0, 5)]
    gpio.turn(BLEND.a, BLEND.b, 2, -1)
    assert panel.poll() == [Turn(0, -2)]


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("bounce", [1, 2, 4])
def test_contact_bounce_adds_no_steps(gpio, panel, direction, bounce):
    gpio.turn(BLEND.a, BLEND.b, 6, direction, bounce=bounce)
    assert total_steps(panel.poll()) == 6 * direction


def test_one_contact_chattering_at_rest_nets_zero(gpio, panel):
    for _ in range(7):   # A toggles while B stays open
        gpio.set_level(BLEND.a, 0)
        gpio.advance(0.001)
        gpio.set_level(BLEND.a, 1)
        gpio.advance(0.001)
    assert settle(gpio, panel) == []
    assert panel.stats["bounces_ignored"] >= 1
    # ...and the knob still counts normally afterwards
    gpio.turn(BLEND.a, BLEND.b, 2, 1)
    assert total_steps(panel.poll()) == 2


def test_half_turn_and_back_is_no_step(gpio, panel):
    gpio.set_level(BLEND.a, 0)   # 11 -> 01 -> 00 and back
    gpio.set_level(BLEND.b, 0)
    gpio.advance(0.05)
    gpio.set_level(BLEND.b, 1)
    gpio.set_level(BLEND.a, 1)
    assert settle(gpio, panel) == []


@pytest.mark.parametrize("direction", [1, -1])
def test_one_lost_edge_per_detent_still_counts_exactly(gpio, events, direction):
    # poll() re-reading pins would paper over the lost callbacks; test the decoder's own recovery
    panel = PanelInputs(gpio, PIN_MAP, events.append, clock=gpio.clock, resample=False)
    panel.start()
    gpio.turn(BLEND.a, BLEND.b, 8, direction, drop_edges=range(1, 32, 4))
    assert total_steps(panel.poll()) == 8 * direction
    assert panel.stats["missed_edges"] == 8
    assert gpio.callbacks_dropped == 8
    panel.close()


def test_lost_edge_into_the_detent_is_caught_by_poll(gpio, panel):
    gpio.turn(BLEND.a, BLEND.b, 1, 1, drop_edges=[3])   # the last edge, back to rest, is lost
    assert panel.poll() == [Turn(0, 1)]
    gpio.turn(BLEND.a, BLEND.b, 2, 1)
    assert total_steps(panel.poll()) == 2


def test_lost_edge_into_the_detent_without_poll_resolves_on_the_next_edge(gpio, events):
    panel = PanelInputs(gpio, PIN_MAP, events.append, clock=gpio.clock, resample=False)
    panel.start()
    gpio.turn(BLEND.a, BLEND.b, 1, -1, drop_edges=[3])
    assert panel.poll() == []   # stuck one quarter short of the detent...
    gpio.turn(BLEND.a, BLEND.b, 1, -1)
    assert total_steps(panel.poll()) == -2   # ...and made up, in the right direction
    assert panel.stats["missed_edges"] == 1
    panel.close()


def test_two_consecutive_lost_edges_lose_at_most_that_detent(gpio, events):
    # Documented tolerance: 01 -> (00, 10 lost) -> 11 reads as one step back, so that detent is lost,
    # never counted the wrong way.
    panel = PanelInputs(gpio, PIN_MAP, events.append, clock=gpio.clock, resample=False)
    panel.start()
    gpio.turn(BLEND.a, BLEND.b, 8, 1, drop_edges=[9, 10])
    assert 7 <= total_steps(panel.poll()) <= 8
    panel.close()


def test_fast_turns_accelerate_and_slow_ones_do_not(gpio, panel):
    gpio.turn(BLEND.a, BLEND.b, 10, 1, interval=0.15)
    assert total_steps(panel.poll()) == 10
    gpio.advance(1.0)
    gpio.turn(BLEND.a, BLEND.b, 10, 1, interval=0.06)   # < 100 ms per detent: x2
    assert total_steps(panel.poll()) == 1 + 9 * 2
    gpio.advance(1.0)
    gpio.turn(BLEND.a, BLEND.b, 10, 1, interval=0.02)   # < 40 ms per detent: x4
    assert total_steps(panel.poll()) == 1 + 9 * 4


def test_acceleration_per_detent_and_reset_on_reversal(gpio, panel):
    steps = []
    for _ in range(4):
        gpio.turn(BLEND.a, BLEND.b, 1, 1, interval=0.02)
        steps += [e.steps for e in panel.poll()]
    assert steps == [1, 4, 4, 4]
    gpio.turn(BLEND.a, BLEND.b, 1, -1, interval=0.02)   # reversing starts over, exact
    assert panel.poll() == [Turn(0, -1)]


def test_acceleration_can_be_turned_off(gpio, events):
    panel = PanelInputs(gpio, PIN_MAP, events.append, clock=gpio.clock, accel=())
    panel.start()
    gpio.turn(BLEND.a, BLEND.b, 10, 1, interval=0.01)
    assert total_steps(panel.poll()) == 10
    panel.close()


def test_half_cycle_encoders(gpio, events):
    panel = PanelInputs(gpio, PIN_MAP, events.append, clock=gpio.clock, steps_per_detent=2)
    panel.start()
    gpio.turn(BLEND.a, BLEND.b, 3, 1, interval=0.4)   # 12 edges = 6 detents of 2 edges, slow
    assert total_steps(panel.poll()) == 6
    panel.close()


# -- encoder push --------------------------------------------------------------------------------

@pytest.mark.parametrize("bounce", [0, 3])
def test_push_and_release_is_one_click(gpio, panel, bounce):
    gpio.press(BLEND.push, bounce=bounce)
    assert settle(gpio, panel, 0.2) == []
    gpio.release(BLEND.push, bounce=bounce)
    assert settle(gpio, panel) == [Click(0)]
    assert settle(gpio, panel) == []


def test_turning_while_pushed_is_a_held_turn_and_no_click(gpio, panel):
    gpio.press(BLEND.push)
    settle(gpio, panel)
    gpio.turn(BLEND.a, BLEND.b, 2, -1)
    assert panel.poll() == [Turn(0, -2, held=True)]
    gpio.release(BLEND.push)
    assert settle(gpio, panel) == []
    # the next plain push is a click again, and plain turns are not held
    gpio.press(BLEND.push)
    gpio.advance(0.1)
    gpio.release(BLEND.push)
    assert settle(gpio, panel) == [Click(0)]
    gpio.turn(BLEND.a, BLEND.b, 1, 1)
    assert panel.poll() == [Turn(0, 1, held=False)]


def test_push_then_turn_before_any_poll_is_held(gpio, panel):
    gpio.press(BLEND.push)   # the first detent arrives before the panel loop ran: still held
    gpio.turn(BLEND.a, BLEND.b, 1, 1)
    gpio.release(BLEND.push)
    assert settle(gpio, panel) == [Turn(0, 1, held=True)]


def test_wiggle_while_pushed_is_still_a_click(gpio, panel):
    gpio.press(BLEND.push)
    gpio.advance(0.02)
    gpio.set_level(BLEND.a, 0)   # a quarter step while pressing the shaft, and back
    gpio.advance(0.01)
    gpio.set_level(BLEND.a, 1)
    gpio.advance(0.05)
    gpio.release(BLEND.push)
    assert settle(gpio, panel) == [Click(0)]


# -- buttons -------------------------------------------------------------------------------------

def test_short_press(gpio, panel):
    gpio.press(PANIC)
    assert settle(gpio, panel, 0.3) == []
    gpio.release(PANIC)
    assert settle(gpio, panel) == [Press("panic", long=False)]


def test_long_press_fires_once_while_still_held(gpio, panel):
    gpio.press(PANIC)
    assert settle(gpio, panel, LONG_PRESS_S - 0.1) == []
    assert settle(gpio, panel, 0.11) == [Press("panic", long=True)]   # not waiting for release
    assert settle(gpio, panel, 2.0) == []
    gpio.release(PANIC, bounce=True)
    assert settle(gpio, panel) == []
    assert settle(gpio, panel) == []


def test_press_timing_comes_from_edges_not_from_polls(gpio, panel):
    gpio.press(KEEP)
    gpio.advance(0.3)
    gpio.release(KEEP)
    assert settle(gpio, panel, 2.0) == [Press("keep", long=False)]   # a late poll is no long press
    gpio.press(KEEP)
    gpio.advance(1.0)
    gpio.release(KEEP)
    assert settle(gpio, panel, 0.5) == [Press("keep", long=True)]    # held 1 s, never polled


def test_switch_bounce_is_one_press(gpio, panel):
    gpio.press(KEEP, bounce=4)
    assert settle(gpio, panel, 0.1) == []
    gpio.release(KEEP, bounce=4)
    assert settle(gpio, panel) == [Press("keep")]
    assert panel.stats["bounces_ignored"] >= 8


def test_glitch_shorter_than_debounce_is_ignored(gpio, panel):
    gpio.set_level(PANIC, 0)
    gpio.advance(0.002)
    gpio.set_level(PANIC, 1)
    assert settle(gpio, panel, 0.1) == []
    assert panel.stats["bounces_ignored"] == 1


def test_missed_release_edge_is_caught_by_poll(gpio, panel):
    gpio.press(PANIC)
    gpio.advance(0.2)
    gpio.set_level(PANIC, 1, fire=False)   # the callback thread never saw the release
    assert settle(gpio, panel) == []        # first poll sees it, debounce starts
    assert settle(gpio, panel) == [Press("panic")]


def test_switches_held_at_start_are_not_presses(gpio, events):
    gpio.set_level(PANIC, 0)
    gpio.set_level(BLEND.push, 0)
    panel = PanelInputs(gpio, PIN_MAP, events.append, clock=gpio.clock)
    panel.start()
    assert settle(gpio, panel, 2.0) == []
    gpio.release(PANIC)
    gpio.release(BLEND.push)
    assert settle(gpio, panel) == []
    gpio.press(PANIC)
    gpio.advance(0.1)
    gpio.release(PANIC)
    assert settle(gpio, panel) == [Press("panic")]
    panel.close()


# -- lifecycle, threads, errors ------------------------------------------------------------------

def test_start_sets_up_every_pin_with_both_edges(gpio, panel):
    assert ("setmode", gpio.BOARD) in gpio.calls
    detects = [c for c in gpio.calls if c[0] == "add_event_detect"]
    assert sorted(c[1] for c in detects) == sorted(PIN_MAP.input_pins())
    assert len(PIN_MAP.input_pins()) == 14
    assert all(c[2] == gpio.BOTH and c[3] is None for c in detects)   # no Jetson bouncetime


def test_close_removes_event_detection_and_only_its_own_pins(gpio, panel, events):
    gpio.setup(40, gpio.IN)   # someone else's pin
    panel.close()
    for pin in PIN_MAP.input_pins():
        assert not gpio.has_event_detect(pin)
        assert not gpio.is_setup(pin)
    assert gpio.is_setup(40)
    assert ("cleanup", list(PIN_MAP.input_pins())) in gpio.calls
    # edges after close do nothing, and close is idempotent
    gpio.turn(BLEND.a, BLEND.b, 1, 1)
    assert panel.poll() == []
    panel.close()
    assert events == []


def test_a_pin_watched_elsewhere_fails_start_and_is_left_alone(gpio, events):
    gpio.setmode(gpio.BOARD)
    gpio.setup(PANIC, gpio.IN)
    gpio.add_event_detect(PANIC, gpio.FALLING, callback=lambda ch: None)   # someone else's
    panel = PanelInputs(gpio, PIN_MAP, events.append, clock=gpio.clock)
    with pytest.raises(RuntimeError, match="Conflicting edge"):
        panel.start()
    assert gpio.has_event_detect(PANIC) and gpio.is_setup(PANIC)
    for pin in PIN_MAP.input_pins():
        if pin != PANIC:
            assert not gpio.has_event_detect(pin) and not gpio.is_setup(pin)


def test_a_different_numbering_mode_fails_start_and_touches_nothing(gpio, events):
    gpio.setmode(gpio.BCM)
    gpio.setup(4, gpio.IN)   # BCM 4 is BOARD 7, blend's A: not ours to clean up in this mode
    panel = PanelInputs(gpio, PIN_MAP, events.append, clock=gpio.clock)
    with pytest.raises(ValueError, match="A different mode has already been set"):
        panel.start()
    panel.close()
    assert gpio.is_setup(7)
    assert not any(c[0] == "cleanup" for c in gpio.calls)


def test_a_failing_callback_does_not_kill_the_gpio_thread(gpio, panel):
    real_input = gpio.input

    def flaky(channel):
        if channel == BLEND.a and not flaky.failed:
            flaky.failed = True
            raise OSError("EIO reading the line")
        return real_input(channel)
    flaky.failed = False
    gpio.input = flaky
    gpio.set_level(BLEND.a, 0)   # must not raise into the (fake) edge thread
    assert panel.stats["callback_errors"] == 1
    gpio.set_level(BLEND.a, 1)
    gpio.turn(BLEND.a, BLEND.b, 2, 1)
    assert total_steps(panel.poll()) == 2


def test_callbacks_on_another_thread_while_the_loop_polls(gpio, events):
    panel = PanelInputs(gpio, PIN_MAP, events.append, clock=gpio.clock, accel=())
    panel.start()
    done = threading.Event()

    def spin():
        for _ in range(200):
            gpio.turn(BLEND.a, BLEND.b, 1, 1, interval=0.004)
        done.set()
    t = threading.Thread(target=spin)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)   # interleave the two threads as finely as the GIL allows
    try:
        t.start()
        while not done.is_set():
            panel.poll()
        t.join()
    finally:
        sys.setswitchinterval(switch)
    panel.poll()
    assert total_steps(events) == 200
    panel.close()


def test_open_jetson_gpio_off_a_jetson_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "Jetson", None)
    monkeypatch.delitem(sys.modules, "Jetson.GPIO", raising=False)
    with pytest.raises(GpioUnavailable, match="not installed"):
        open_jetson_gpio()


def test_open_jetson_gpio_when_the_module_refuses_the_board(monkeypatch):
    class Refuse:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.split(".")[0] == "Jetson":
                raise RuntimeError("Could not determine Jetson model")
            return None
    for name in ("Jetson", "Jetson.GPIO"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "meta_path", [Refuse(), *sys.meta_path])
    with pytest.raises(GpioUnavailable, match="Could not determine Jetson model"):
        open_jetson_gpio()


def test_fake_raises_like_jetson_gpio_on_misuse():
    g = FakeJetsonGPIO()
    with pytest.raises(RuntimeError, match="set pin numbering mode"):
        g.setup(7, g.IN)
    g.setmode(g.BOARD)
    with pytest.raises(ValueError, match="A different mode"):
        g.setmode(g.BCM)
    with pytest.raises(RuntimeError, match="You must setup"):
        g.input(7)
    with pytest.raises(ValueError, match="Channel 3 is invalid"):
        g.setup(3, g.IN)   # I2C pin: not a GPIO
    with pytest.raises(RuntimeError, match="as an input first"):
        g.add_event_detect(7, g.BOTH)
    g.setup(7, g.IN)
    with pytest.raises(TypeError, match="bouncetime must be an integer"):
        g.add_event_detect(7, g.BOTH, bouncetime=2.5)
    g.add_event_detect(7, g.BOTH, callback=lambda ch: None)
    with pytest.raises(RuntimeError, match="Conflicting edge already enabled"):
        g.add_event_detect(7, g.BOTH, callback=lambda ch: None)
    with pytest.warns(UserWarning, match="ignores setup"):
        g.setup(11, g.IN, pull_up_down=g.PUD_UP)


def test_fake_fires_rising_falling_and_honours_bouncetime():
    g = FakeJetsonGPIO()
    g.setmode(g.BOARD)
    g.setup([7, 11], g.IN)
    seen = []
    g.add_event_detect(7, g.FALLING, callback=seen.append)
    g.add_event_detect(11, g.BOTH, callback=seen.append, bouncetime=10)
    g.set_level(7, 0)
    g.set_level(7, 1)        # rising: not for a FALLING detector
    g.set_level(11, 0)
    g.advance(0.005)
    g.set_level(11, 1)       # within 10 ms: dropped like the real edge thread does
    g.advance(0.02)
    g.set_level(11, 0)
    assert seen == [7, 11, 11]
    assert g.callbacks_debounced == 1


# -- pin map -------------------------------------------------------------------------------------

GOOD = REPO_PINMAP.read_text()


def write(tmp_path, text):
    path = tmp_path / "pinmap.toml"
    path.write_text(text)
    return path


def test_the_repo_pin_map_loads():
    pm = load_pin_map(REPO_PINMAP)
    assert pm.numbering == "BOARD"
    assert [e.name for e in pm.encoders] == ["blend", "mode", "adventure", "density"]
    assert (pm.encoders[0].a, pm.encoders[0].b, pm.encoders[0].push) == (7, 11, 12)
    assert pm.buttons == {"panic": 29, "keep": 31}
    assert (pm.oled.driver, pm.oled.i2c_bus, pm.oled.address) == ("ssd1306", 7, 0x3C)
    assert (pm.oled.width, pm.oled.height) == (128, 64)
    assert pm.din_uart == "/dev/ttyTHS0"


def test_pin_map_path_resolution(tmp_path, monkeypatch):
    import sideman.panel.pin_map as pin_map_mod
    monkeypatch.delenv("SIDEMAN_PINMAP", raising=False)
    monkeypatch.setattr(pin_map_mod, "SYSTEM_PINMAP", tmp_path / "etc" / "pinmap.toml")
    assert load_pin_map().source == REPO_PINMAP
    system = write(tmp_path, GOOD.replace("panic = 29", "panic = 33"))
    monkeypatch.setattr(pin_map_mod, "SYSTEM_PINMAP", system)
    assert load_pin_map().buttons["panic"] == 33
    env = tmp_path / "env.toml"
    env.write_text(GOOD.replace("panic = 29", "panic = 35"))
    monkeypatch.setenv("SIDEMAN_PINMAP", str(env))
    assert load_pin_map().buttons["panic"] == 35


def test_missing_pin_map_file(tmp_path):
    with pytest.raises(PinMapError, match="pin map not found"):
        load_pin_map(tmp_path / "nope.toml")


def test_bad_toml_names_the_line(tmp_path):
    text = GOOD.replace("b = 11", "b = = 11")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith("b = = 11"))
    path = write(tmp_path, text)
    with pytest.raises(PinMapError, match=rf"not valid TOML.*line {line}\b.*'b = = 11'") as err:
        load_pin_map(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("change, message", [
    (("b = 11", "b = 12"), "duplicate pin 12: encoder 'blend' b and encoder 'blend' push"),
    (("keep = 31", "keep = 7"), "duplicate pin 7: encoder 'blend' a and button 'keep'"),
    (("panic = 29", "panic = 41"), "pin 41 is not on the 40-pin header"),
    (("panic = 29", "panic = 0"), "pin 0 is not on the 40-pin header"),
    (("panic = 29", "panic = 17"), "pin 17 is a 3.3 V power pin"),
    (("panic = 29", "panic = 2"), "pin 2 is a 5 V power pin"),
    (("panic = 29", "panic = 39"), "pin 39 is a ground pin"),
    (("panic = 29", "panic = 8"), "pin 8 is UART TX"),
    (("panic = 29", "panic = 29\nshift = 33"), "unknown button 'shift'"),
    (("keep = 31", ""), "missing key 'buttons.keep'"),
    (("push = 16", ""), "missing key 'encoders[1].push'"),
    (("a = 13", "a = \"13\""), "'encoders[1].a' must be an integer"),
    (('numbering = "BOARD"', 'numbering = "BCM"'), 'numbering must be "BOARD"'),
    (("[din]", "[dinn]"), "missing table [din]"),
])
def test_pin_map_errors_are_clear(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(PinMapError, match=re.escape(message)):
        load_pin_map(write(tmp_path, GOOD.replace(old, new, 1)))


@pytest.mark.parametrize("count", [3, 5])
def test_wrong_number_of_encoders(tmp_path, count):
    head, first, *rest = GOOD.split("[[encoders]]")
    blocks = [first, *rest]
    last = blocks[-1]
    tail = last[last.index("[buttons]"):]
    blocks[-1] = last[:last.index("[buttons]")]
    if count < 4:
        blocks = blocks[:count]
    else:
        blocks.append(blocks[0].replace("blend", "extra").replace("= 7", "= 26")
                      .replace("= 11", "= 32").replace("= 12", "= 33"))
    text = head + "".join("[[encoders]]" + b for b in blocks) + "\n" + tail
    with pytest.raises(PinMapError, match=f"expected 4 \\[\\[encoders\\]\\].*found {count}"):
        load_pin_map(write(tmp_path, text))

"""The panel's OLED screens, drawn through luma's dummy device: sizes, legibility limits (nothing
outside the screen, long text cut), that different views look different, redraw on change only,
the terminal rendering and the front-panel drawing.

Every rendering test saves its picture: to $SIDEMAN_SCREENSHOT_DIR when set (the README shows them),
else to pytest's tmp_path. OLED pictures are scaled x4 (nearest) to be readable."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image, ImageChops, ImageDraw

from sideman.panel.display import Display, DisplayError, make_device, to_terminal
from sideman.panel import screens
from sideman.panel.drawing import PIXEL_ON, SIZE, draw_front_panel
from sideman.panel.screens import ELLIPSIS, draw_view, fit_text, load_font, text_width
from sideman.panel.views import AlertView, HomeView, KnobView, MenuView

W, H = 128, 64

KNOBS = (KnobView("BLEND", "0.30"), KnobView("MODE", "CALL"), KnobView("ADV", "0.80"),
         KnobView("DENS", "0.50"))
HELD_KNOBS = (KnobView("BLEND", "0.30"), KnobView("BARS", "4", held=True), KnobView("ADV", "0.80"),
              KnobView("DENS", "0.50"))
HOME = HomeView(mode="call-response", styles=("mehldau", "tatum"), blend=0.3, tempo_bpm=112.0,
                chord="Dm7", activity="answering", planned_notes=4, voice="markov", knobs=KNOBS)
MENU = MenuView(title="Settings",
                items=("MIDI channel", "MIDI thru", "Velocity curve", "Presets", "MIDI learn",
                       "About"),
                selected=2, values=("1", "on", "soft", "", "", ""), hint="turn: choose  push: ok")
ALERT = AlertView(title="Port lost", lines=("MIDI OUT went away. Playing stops until it is back.",),
                  level="warning")


def replace(view, **changes):
    return type(view)(**{**view.__dict__, **changes})


@pytest.fixture
def save(tmp_path):
    """save(name, image, scale): write a PNG to the test's tmp dir to look at. (The README's
    pictures are the real controller's screens: see test_panel_controller.py.)"""
    folder = tmp_path
    folder.mkdir(parents=True, exist_ok=True)

    def save(name: str, image: Image.Image, scale: int = 4) -> Path:
        if scale != 1:
            image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        path = folder / name
        image.save(path)
        return path
    return save


def render(view) -> Image.Image:
    """The view through a Display on luma's dummy device, as the device received it."""
    device = make_device(kind="dummy")
    display = Display(device)
    assert display.show(view)
    assert device.image.mode == "1" and device.image.size == (W, H)
    assert device.image.tobytes() == display.image().tobytes()
    return display.image()


def lit(image: Image.Image, box=None) -> int:
    """Lit pixels in `box` (x0, y0, x1, y1 exclusive ends), the whole image by default."""
    region = image.crop(box) if box else image
    return sum(region.convert("L").histogram()[1:])


def differs(a: Image.Image, b: Image.Image) -> bool:
    return ImageChops.difference(a.convert("L"), b.convert("L")).getbbox() is not None


def drawn_outside(view) -> int:
    """Lit pixels that land outside the 128x64 screen when the view is drawn on a bigger image
    (the screen at an offset of 32, 32)."""
    big = Image.new("1", (W + 64, H + 64))
    inner = Image.new("1", (W, H))
    draw_view(ImageDraw.Draw(inner), view, W, H)
    # Draw again on the big canvas through an offset draw, to catch anything beyond the edges.
    draw = ImageDraw.Draw(big)
    draw_view(_Offset(draw, 32, 32), view, W, H)
    big_inner = big.crop((32, 32, 32 + W, 32 + H))
    assert not differs(big_inner, inner)
    return lit(big) - lit(big_inner)


class _Offset:
    """An ImageDraw stand-in that shifts every coordinate by (dx, dy)."""

    def __init__(self, draw, dx, dy):
        self._draw, self._dx, self._dy = draw, dx, dy

    def _shift(self, xy):
        if isinstance(xy[0], (tuple, list)):
            return [(x + self._dx, y + self._dy) for x, y in xy]
        return tuple(v + (self._dx if i % 2 == 0 else self._dy) for i, v in enumerate(xy))

    def text(self, xy, *args, **kwargs):
        return self._draw.text(self._shift(xy), *args, **kwargs)

    def __getattr__(self, name):
        method = getattr(self._draw, name)
        return lambda xy, *args, **kwargs: method(self._shift(xy), *args, **kwargs)


# --- the three screens ------------------------------------------------------------------------------

def test_home_screen_renders_on_the_dummy_device(save):
    image = render(HOME)
    assert lit(image) > 400
    assert lit(image, (0, 0, W, 8)) > 0          # header: mode and tempo
    assert lit(image, (0, H - 18, W, H)) > 0     # knob row
    save("oled-home.png", image)


def test_held_knob_is_inverted_and_badge_shows(save):
    plain = render(replace(HOME, knobs=HELD_KNOBS[:1] + KNOBS[1:2] + HELD_KNOBS[2:]))
    held = render(replace(HOME, knobs=HELD_KNOBS))
    assert differs(plain, held)
    cell = (32, H - 18, 64, H)                   # the second encoder's cell
    assert lit(held, cell) > 0.6 * 32 * 18 > lit(plain, cell)

    with_badge = render(replace(HOME, knobs=HELD_KNOBS, badge="MARKOV FALLBACK", chord="F#m7b5",
                                tempo_bpm=None, activity="listening", planned_notes=0))
    row = (0, 33, W, 43)                         # the badge takes the blend row, inverted
    assert lit(with_badge, row) > 0.6 * W * 10 > lit(held, row)
    save("oled-home-held.png", with_badge)


def test_menu_screen(save):
    image = render(MENU)
    assert lit(image, (0, 0, W, 9)) > 0.6 * W * 9          # inverted title bar
    save("oled-menu.png", image)
    # The selected row is inverted; choosing another item moves it; a long list scrolls.
    first, last = render(replace(MENU, selected=0)), render(replace(MENU, selected=5))
    assert differs(first, image) and differs(first, last)
    assert lit(first, (0, 11, W - 4, 21)) > 0.5 * (W - 4) * 10


def test_alert_screen(save):
    image = render(ALERT)
    assert all(image.getpixel(p) for p in ((0, 0), (W - 1, 0), (0, H - 1), (W - 1, H - 1)))
    assert lit(image, (2, 18, W - 2, H - 2)) > 50           # the wrapped message
    save("oled-alert.png", image)
    error = render(replace(ALERT, level="error", title="No output"))
    assert differs(image, error)


# --- legibility: text fits, long text is cut ------------------------------------------------------

LONG = [
    HOME, MENU, ALERT,
    replace(HOME, mode="a-very-long-mode-name-nobody-planned", chord="Cmaj7#11(b13)/G",
            activity="contemplating", planned_notes=12345, tempo_bpm=299.7,
            styles=("mehldau-extended", "tatum-stride"), badge="NO OUTPUT PORT AT ALL, CHECK CABLES",
            knobs=(KnobView("BLENDER", "0.333333"), KnobView("MODE", "VARIATION", True),
                   KnobView("ADVENTURE", "1.234"), KnobView("DENSITY", "0.5000"))),
    replace(HOME, styles=("mehldau",), chord=None, tempo_bpm=None, knobs=()),
    replace(HOME, blend=1.0, knobs=KNOBS + (KnobView("X", "1"),)),
    replace(MENU, items=tuple(f"Item with a rather long name {i}" for i in range(30)),
            values=tuple("a long value" for _ in range(30)), selected=29, hint="a very long hint " * 5),
    replace(MENU, items=("Only",), values=(), selected=7, hint=""),
    replace(MENU, items=(), selected=0),
    replace(ALERT, title="A title much too long for the screen", lines=("word " * 60, "x" * 80, "more")),
    replace(ALERT, level="info", lines=()),
    replace(ALERT, level="error"),
]


@pytest.mark.parametrize("view", LONG, ids=range(len(LONG)))
def test_nothing_is_drawn_outside_the_screen(view):
    assert drawn_outside(view) == 0
    assert lit(render(view)) > 0


def test_without_dejavu_pillows_own_font_stands_in(monkeypatch, tmp_path):
    """The box may lack DejaVu: Pillow's embedded font must draw every view within bounds too."""
    monkeypatch.setattr(screens, "SANS", "no-such-font.ttf")
    monkeypatch.setattr(screens, "SANS_BOLD", "no-such-font-bold.ttf")
    screens.load_font.cache_clear()
    try:
        for view in LONG:
            assert drawn_outside(view) == 0
        render(HOME).resize((W * 4, H * 4), Image.NEAREST).save(tmp_path / "oled-home-fallback.png")
    finally:
        screens.load_font.cache_clear()


def test_long_text_is_cut_with_an_ellipsis():
    font = load_font(9)
    cut = fit_text("CALL-RESPONSE-AND-MORE", font, 60)
    assert cut.endswith(ELLIPSIS) and text_width(font, cut) <= 60
    assert fit_text("Dm7", font, 60) == "Dm7"
    long_chord = render(replace(HOME, chord="Cmaj7#11(b13)/G"))
    assert lit(long_chord, (W - 30, 9, W, 30)) > 0          # the activity column is still there


# --- different views, different pictures --------------------------------------------------------------

def test_different_views_give_different_pixels():
    assert differs(render(HOME), render(replace(HOME, chord="G7")))
    assert differs(render(HOME), render(replace(HOME, tempo_bpm=96.0)))
    assert differs(render(HOME), render(replace(HOME, activity="muted")))
    bar = (30, 33, W - 30, 43)
    empty, half, full = (lit(render(replace(HOME, blend=b)), bar) for b in (0.0, 0.5, 1.0))
    assert empty < half < full


# --- redraw on change only ---------------------------------------------------------------------------

def test_the_same_view_is_not_drawn_twice():
    device = make_device(kind="dummy")
    display = Display(device)
    assert display.show(HOME) is True
    assert display.show(HOME) is False
    assert display.show(replace(HOME)) is False               # equal, not the same object
    assert display.redraws == 1
    assert display.show(replace(HOME, chord="G7")) is True
    assert display.redraws == 2
    display.blank()
    assert lit(device.image) == 0
    assert display.show(replace(HOME, chord="G7")) is True    # blanked: draw it again
    assert display.redraws == 3


def test_close_leaves_a_blank_screen():
    device = make_device(kind="dummy")
    with Display(device) as display:
        display.show(HOME)
        assert lit(device.image) > 0
    assert lit(device.image) == 0
    assert display.show(MENU) is False                      # closed: nothing more is drawn
    display.close()


def test_a_failing_screen_does_not_stop_the_box(caplog):
    class Flaky(type(make_device(kind="dummy"))):
        broken = True

        def display(self, image):
            if self.broken:
                raise OSError(121, "Remote I/O error")
            super().display(image)

    device = Flaky(width=W, height=H, mode="1")
    display = Display(device)
    assert display.show(HOME) is False
    assert display.error and "Remote I/O" in display.error
    device.broken = False
    assert display.show(HOME) is True                       # retried once the screen is back
    assert display.error is None and display.redraws == 1


# --- terminal rendering ------------------------------------------------------------------------------

def test_to_terminal_uses_half_blocks():
    image = Image.new("1", (W, H))
    image.putpixel((0, 0), 1)                # top half of cell (0, 0)
    image.putpixel((1, 1), 1)                # bottom half of cell (1, 0)
    image.putpixel((2, 0), 1)
    image.putpixel((2, 1), 1)                # both halves of cell (2, 0)
    lines = to_terminal(image).split("\n")
    assert len(lines) == 32 + 2
    assert all(len(line) == 128 + 2 for line in lines)
    assert lines[0].startswith("┌") and lines[-1].endswith("┘")
    assert lines[1][1:5] == "▀▄█ "
    bare = to_terminal(image, frame=False).split("\n")
    assert len(bare) == 32 and {len(line) for line in bare} == {128}

    screen = to_terminal(render(HOME), frame=False)
    blocks = sum(screen.count(c) for c in "▀▄") + 2 * screen.count("█")
    assert blocks == lit(render(HOME))


# --- making the device -------------------------------------------------------------------------------

def test_make_device_without_i2c_raises_a_clear_error():
    config = SimpleNamespace(driver="ssd1306", i2c_bus=250, address=0x3C, width=128, height=64)
    with pytest.raises(DisplayError) as caught:
        make_device(config)
    assert not isinstance(caught.value, OSError)
    message = str(caught.value)
    assert "/dev/i2c-250" in message and "0x3c" in message


def test_make_device_kinds():
    config = SimpleNamespace(driver="ssd1306", i2c_bus=7, address=0x3C, width=128, height=32)
    dummy = make_device(config, kind="dummy")
    assert dummy.size == (128, 32) and dummy.mode == "1"
    assert make_device(kind="dummy").size == (W, H)
    with pytest.raises(DisplayError, match="unknown driver"):
        make_device(kind="no-such-oled")


# --- the front panel drawing -------------------------------------------------------------------------

def test_front_panel_drawing(save, tmp_path):
    path = tmp_path / "panel.png"
    image = draw_front_panel(HOME, path)
    assert image.size == SIZE == (1000, 400) and image.mode == "RGB"
    assert Image.open(path).size == SIZE
    assert PIXEL_ON in {colour for _, colour in image.getcolors(1 << 20)}   # the rendered OLED
    save("front-panel.png", image, scale=1)


def test_panel_bench_draws_only_when_the_screen_changes():
    """The bench's code path on a short script: asserts the counting, not speed."""
    from sideman_bench.panel import run_panel_bench

    result = run_panel_bench(seconds=2.0)
    on_change, baseline = result["redraw_on_change"], result["baseline_redraw_every_tick"]
    assert baseline["frames"] == 200
    assert 1 <= on_change["frames"] < 20  # chord every beat pair, answer every other bar
    assert on_change["draw_one_frame"]["n"] == on_change["frames"]
    assert on_change["estimated_i2c_busy_pct"] < baseline["estimated_i2c_busy_pct"]

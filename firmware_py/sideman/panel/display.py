"""The panel's OLED through luma: draw a view only when it changed, and never leave stale info.

    device = make_device(oled_config)            # luma ssd1306 on I2C, or make_device(kind="dummy")
    display = Display(device)
    display.show(view)                           # True: redrawn; False: same picture as shown
    print(to_terminal(display.image()))          # the simulator's screen

The box must keep playing without a screen: `make_device` raises `DisplayError` (with the bus and
address in the message) when the I2C bus or the OLED can't be reached, and `Display.show` turns a
write that fails later (the OLED came loose) into a logged error and `display.error`, not a crash.
"""

from __future__ import annotations

import logging

from PIL import Image
from luma.core.render import canvas

from sideman.panel.screens import draw_view

log = logging.getLogger("sideman.panel.display")

try:  # luma's i2c interface raises its own errors (DeviceNotFoundError…) when the OLED drops off the bus
    from luma.core.error import Error as _LumaError
    SCREEN_ERRORS: tuple[type[BaseException], ...] = (OSError, _LumaError)
except ImportError:  # pragma: no cover - luma is a dependency
    SCREEN_ERRORS = (OSError,)

DEFAULT_OLED = {"driver": "ssd1306", "i2c_bus": 7, "address": 0x3C, "width": 128, "height": 64}


class DisplayError(RuntimeError):
    """The OLED can't be used (no I2C bus, no answer at the address, unknown driver)."""


def make_device(oled_config=None, kind: str | None = None):
    """A luma device for the panel's OLED.

    `oled_config`: any object with driver, i2c_bus, address, width and height attributes (the
    pinmap's [oled] section); None takes the box's defaults (SSD1306, bus 7, 0x3C, 128x64).
    `kind`: "dummy" gives luma's in-memory device (simulator, tests); "ssd1306" (or another
    luma.oled driver name such as "sh1106") the real screen; None uses the config's driver.
    """
    cfg = {key: getattr(oled_config, key, default) for key, default in DEFAULT_OLED.items()}
    kind = kind or cfg["driver"]
    width, height = int(cfg["width"]), int(cfg["height"])
    if kind == "dummy":
        from luma.core.device import dummy
        return dummy(width=width, height=height, mode="1")

    where = f"I2C bus {cfg['i2c_bus']} (/dev/i2c-{cfg['i2c_bus']}), address {int(cfg['address']):#04x}"
    try:
        import luma.core.error
        import luma.oled.device
        from luma.core.interface.serial import i2c
    except ImportError as exc:
        raise DisplayError(f"OLED: luma.oled is not installed ({exc})") from exc
    driver = getattr(luma.oled.device, kind, None)
    if not isinstance(driver, type):
        raise DisplayError(f"OLED: unknown driver {kind!r} (luma.oled has ssd1306, sh1106, ...)")
    try:
        serial = i2c(port=int(cfg["i2c_bus"]), address=int(cfg["address"]))
    except luma.core.error.DevicePermissionError as exc:
        raise DisplayError(f"OLED: no permission to open {where}: {exc} "
                           "(add the user to the i2c group)") from exc
    except (luma.core.error.Error, OSError, ImportError) as exc:
        raise DisplayError(f"OLED: can't open {where}: {exc} "
                           "(is the bus enabled and the screen wired to pins 3/5?)") from exc
    try:
        return driver(serial, width=width, height=height)
    except (luma.core.error.Error, OSError) as exc:
        serial.cleanup()
        raise DisplayError(f"OLED: no {kind} answering on {where}: {exc}") from exc


class Display:
    """Shows views on a luma device, redrawing only when the view differs from the one shown."""

    def __init__(self, device):
        self.device = device
        self.redraws = 0              # how many times a picture was sent to the screen
        self.error: str | None = None  # the last write failure, None while the screen works
        self._view = None
        self._image: Image.Image | None = None
        self._closed = False

    @property
    def size(self) -> tuple[int, int]:
        return self.device.width, self.device.height

    def show(self, view) -> bool:
        """Draw `view` unless it is what the screen already shows. True when it redrew."""
        if self._closed or (self._image is not None and view == self._view):
            return False
        frame = canvas(self.device)
        try:
            with frame as draw:
                draw_view(draw, view, self.device.width, self.device.height)
        except SCREEN_ERRORS as exc:  # the write failed: keep the box going, retry on the next change
            if self.error is None:
                log.error("OLED write failed, the panel runs blind: %s", exc)
            self.error = str(exc)
            self._view, self._image = None, None
            return False
        if self.error is not None:
            log.info("OLED is back")
            self.error = None
        self._view, self._image = view, frame.image
        self.redraws += 1
        return True

    def image(self) -> Image.Image:
        """The last picture drawn (1-bit, the device's size); blank before the first."""
        if self._image is None:
            return Image.new("1", self.size)
        return self._image.copy()

    def invalidate(self) -> None:
        """The next `show` draws even an unchanged view (e.g. after the screen was power-cycled)."""
        self._view = None

    def blank(self) -> None:
        """Clear the screen; the next `show` draws whatever it is given."""
        self._view, self._image = None, None
        if self._closed:
            return
        try:
            self.device.clear()
        except SCREEN_ERRORS as exc:
            self.error = str(exc)

    def close(self) -> None:
        """Clear the screen, switch it off and release the bus. Safe to call twice."""
        if self._closed:
            return
        self.blank()
        self._closed = True
        try:
            self.device.cleanup()
        except OSError as exc:
            log.warning("OLED cleanup failed: %s", exc)

    def __enter__(self) -> "Display":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def to_terminal(image: Image.Image, frame: bool = True) -> str:
    """A 1-bit image as text: each character is two pixel rows (▀ top, ▄ bottom, █ both, space
    neither), so 128x64 becomes 32 lines of 128 characters, framed with box-drawing lines."""
    image = image.convert("1")
    width, height = image.size
    pixels = image.load()

    def lit(x: int, y: int) -> bool:
        return y < height and pixels[x, y] != 0

    blocks = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}
    rows = ["".join(blocks[lit(x, y), lit(x, y + 1)] for x in range(width))
            for y in range(0, height, 2)]
    if not frame:
        return "\n".join(rows)
    return "\n".join(["┌" + "─" * width + "┐", *("│" + row + "│" for row in rows),
                      "└" + "─" * width + "┘"])

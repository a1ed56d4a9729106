"""The front panel's wiring, read from a TOML pin map (hardware/pinmap.toml documents the format).

Which file: an explicit path, else $SIDEMAN_PINMAP, else /etc/sideman/pinmap.toml when it exists (the
box), else hardware/pinmap.toml in this checkout. Everything is validated up front so that a wiring
mistake is a clear message at start-up, not a dead knob on stage."""

from __future__ import annotations

import os
import re
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6's python3)
    import tomli as tomllib
from dataclasses import dataclass
from pathlib import Path

from sideman.panel.events import BUTTONS, ENCODERS

SYSTEM_PINMAP = Path("/etc/sideman/pinmap.toml")
REPO_PINMAP = Path(__file__).resolve().parents[3] / "hardware" / "pinmap.toml"

# The Jetson 40-pin header (BOARD numbers). Power and ground pins can never be inputs; the I2C and
# UART pins are not GPIOs for Jetson.GPIO (it raises "Channel N is not a GPIO"/"is invalid") and
# carry the OLED (3, 5), DIN MIDI (8, 10) and I2C bus 1 (27, 28; the ID EEPROM pins on Raspberry Pi HATs).
HEADER_PINS = range(1, 41)
POWER_PINS = {1: "3.3 V", 17: "3.3 V", 2: "5 V", 4: "5 V"}
GROUND_PINS = frozenset({6, 9, 14, 20, 25, 30, 34, 39})
NOT_GPIO_PINS = {3: "I2C SDA (the OLED)", 5: "I2C SCL (the OLED)", 8: "UART TX (DIN MIDI)",
                 10: "UART RX (DIN MIDI)", 27: "I2C1 SDA (i2c-1)", 28: "I2C1 SCL (i2c-1)"}


class PinMapError(ValueError):
    """The pin map is missing, unreadable or wired impossibly; the message says where and why."""


@dataclass(frozen=True)
class EncoderPins:
    name: str
    a: int
    b: int
    push: int


@dataclass(frozen=True)
class OledConfig:
    driver: str
    i2c_bus: int
    address: int
    width: int
    height: int


@dataclass(frozen=True)
class PinMap:
    numbering: str                       # "BOARD": physical header pin numbers
    encoders: tuple[EncoderPins, ...]    # ENCODERS of them, left to right
    buttons: dict[str, int]              # every name in BUTTONS -> pin
    oled: OledConfig
    din_uart: str
    source: Path | None = None           # the file it came from, for messages

    def input_pins(self) -> tuple[int, ...]:
        """Every GPIO input the panel uses: encoders' a, b, push, then the buttons."""
        pins = [p for e in self.encoders for p in (e.a, e.b, e.push)]
        return tuple(pins + [self.buttons[name] for name in BUTTONS])


def resolve_pin_map_path(path: str | os.PathLike | None = None) -> Path:
    if path is not None:
        return Path(path)
    env = os.environ.get("SIDEMAN_PINMAP")
    if env:
        return Path(env)
    if SYSTEM_PINMAP.exists():
        return SYSTEM_PINMAP
    return REPO_PINMAP


def load_pin_map(path: str | os.PathLike | None = None) -> PinMap:
    """Read and validate the pin map; raises PinMapError with the file name and the problem."""
    source = resolve_pin_map_path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PinMapError(f"{source}: pin map not found (set SIDEMAN_PINMAP or install "
                          f"{SYSTEM_PINMAP})") from None
    except OSError as e:
        raise PinMapError(f"{source}: cannot read the pin map: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message ends with "(at line N, column M)"; quote that line too
        msg = f"{source}: not valid TOML: {e}"
        m = re.search(r"at line (\d+)", str(e))
        lines = text.splitlines()
        if m and 1 <= int(m.group(1)) <= len(lines):
            msg += f": {lines[int(m.group(1)) - 1].strip()!r}"
        raise PinMapError(msg) from None
    return parse_pin_map(data, source)


def parse_pin_map(data: dict, source: Path | None = None) -> PinMap:
    where = f"{source}: " if source is not None else "pin map: "

    def fail(msg: str):
        raise PinMapError(where + msg)

    def need(table: dict, key: str, kind: type, ctx: str):
        if key not in table:
            fail(f"missing key '{ctx}{key}'")
        value = table[key]
        # bool is an int subclass in Python; `a = true` is a typo, not pin 1
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            fail(f"'{ctx}{key}' must be {'an integer' if kind is int else 'a string'}, "
                 f"got {value!r}")
        return value

    def need_table(key: str) -> dict:
        if key not in data:
            fail(f"missing table [{key}]")
        if not isinstance(data[key], dict):
            fail(f"'{key}' must be a table ([{key}])")
        return data[key]

    numbering = need(data, "numbering", str, "")
    if numbering != "BOARD":
        fail(f"numbering must be \"BOARD\" (physical header pin numbers), got {numbering!r}")

    # -- encoders
    if "encoders" not in data:
        fail("missing [[encoders]] entries")
    raw_encoders = data["encoders"]
    if not isinstance(raw_encoders, list) or not all(isinstance(e, dict) for e in raw_encoders):
        fail("'encoders' must be an array of tables ([[encoders]])")
    if len(raw_encoders) != ENCODERS:
        fail(f"expected {ENCODERS} [[encoders]] (the panel has {ENCODERS} knobs), "
             f"found {len(raw_encoders)}")
    encoders = []
    for i, e in enumerate(raw_encoders):
        ctx = f"encoders[{i}]."
        encoders.append(EncoderPins(name=need(e, "name", str, ctx), a=need(e, "a", int, ctx),
                                    b=need(e, "b", int, ctx), push=need(e, "push", int, ctx)))
    names = [e.name for e in encoders]
    for name in names:
        if names.count(name) > 1:
            fail(f"encoder name {name!r} is used twice")

    # -- buttons
    raw_buttons = need_table("buttons")
    unknown = [k for k in raw_buttons if k not in BUTTONS]
    if unknown:
        fail(f"unknown button {unknown[0]!r} in [buttons] (known: {', '.join(BUTTONS)})")
    buttons = {name: need(raw_buttons, name, int, "buttons.") for name in BUTTONS}

    # -- pins: on the header, a GPIO, used once
    users: dict[int, str] = {}
    labelled = [x for e in encoders for x in ((e.a, f"encoder '{e.name}' a"),
                                              (e.b, f"encoder '{e.name}' b"),
                                              (e.push, f"encoder '{e.name}' push"))]
    labelled += [(pin, f"button '{name}'") for name, pin in buttons.items()]
    for pin, who in labelled:
        if pin not in HEADER_PINS:
            fail(f"{who}: pin {pin} is not on the 40-pin header (1..40, BOARD numbering)")
        if pin in POWER_PINS:
            fail(f"{who}: pin {pin} is a {POWER_PINS[pin]} power pin, not a GPIO")
        if pin in GROUND_PINS:
            fail(f"{who}: pin {pin} is a ground pin, not a GPIO")
        if pin in NOT_GPIO_PINS:
            fail(f"{who}: pin {pin} is {NOT_GPIO_PINS[pin]}, not a GPIO")
        if pin in users:
            fail(f"duplicate pin {pin}: {users[pin]} and {who}")
        users[pin] = who

    # -- OLED and DIN
    o = need_table("oled")
    oled = OledConfig(driver=need(o, "driver", str, "oled."), i2c_bus=need(o, "i2c_bus", int, "oled."),
                      address=need(o, "address", int, "oled."), width=need(o, "width", int, "oled."),
                      height=need(o, "height", int, "oled."))
    if not 0x03 <= oled.address <= 0x77:
        fail(f"oled.address {oled.address:#x} is not a 7-bit I2C address")
    if oled.width <= 0 or oled.height <= 0:
        fail(f"oled size {oled.width}x{oled.height} is not a display")
    din_uart = need(need_table("din"), "uart", str, "din.")

    return PinMap(numbering=numbering, encoders=tuple(encoders), buttons=buttons, oled=oled,
                  din_uart=din_uart, source=source)

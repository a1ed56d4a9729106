"""What the box remembers between gigs: every control's value, the mode, the styles and the MIDI CC
map. Saved atomically (a crash leaves the old file or the new, never half of one) to the data dir:
/var/lib/sideman on the box, ~/.local/share/sideman on a desktop. A file that cannot be read or
holds a bad value is refused as a whole, with a message naming the problem; the caller keeps what
it had."""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6's python3)
    import tomli as tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from sideman.controls import BY_NAME, defaults
from sideman.model.markov import DEFAULT_STYLE
from sideman.paths import data_dir, write_atomically
from sideman.play.modes import MODES
from sideman.play.steering import parse_style
from sideman.sound.builtin import SYNTH_CHOICES

# Pseudo-controls a CC can move besides the registry's: the mode (value ranges pick a mode).
CC_TARGETS_EXTRA = ("mode",)
# CCs that are the player's own and never taken for the box: bank select (0/32), data entry and
# (N)RPN (6/38/98-101), the pedals (64/66/67) and the channel mode messages (120-127).
RESERVED_CCS = frozenset({0, 32, 6, 38, 98, 99, 100, 101, 64, 66, 67, *range(120, 128)})


class SettingsError(ValueError):
    """A settings or preset file that is refused; the message says which file and what is wrong."""


@dataclass
class Settings:
    controls: dict[str, float] = field(default_factory=defaults)
    mode: str = "call-response"
    styles: str = DEFAULT_STYLE            # "mehldau" or "mehldau,tatum" (the blend knob's ends)
    cc_map: dict[int, str] = field(default_factory=dict)   # CC number -> control name (or "mode")
    synth: str = "auto"                    # the built-in piano: auto, builtin or none

    def copy(self) -> "Settings":
        return Settings(dict(self.controls), self.mode, self.styles, dict(self.cc_map), self.synth)

    def to_toml(self) -> dict:
        return {"mode": self.mode, "styles": self.styles, "synth": self.synth,
                "controls": {k: self.controls[k] for k in sorted(self.controls)},
                "cc_map": {str(cc): name for cc, name in sorted(self.cc_map.items())}}


def settings_path() -> Path:
    return data_dir() / "settings.toml"


def parse_controls(table, where: str, base: dict[str, float]) -> dict[str, float]:
    """Control values from a TOML table, checked against the registry (name, number, range)."""
    if not isinstance(table, dict):
        raise SettingsError(f"{where}: [controls] must be a table of name = value")
    values = dict(base)
    for name, value in table.items():
        control = BY_NAME.get(name)
        if control is None:
            raise SettingsError(f"{where}: unknown control {name!r} (known: {', '.join(sorted(BY_NAME))})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{where}: {name} = {value!r} is not a number")
        if not control.low <= value <= control.high:
            raise SettingsError(f"{where}: {name} = {value:g} is outside {control.low:g}..{control.high:g}")
        values[name] = control.clamp(value)
    return values


def check_mode(mode, where: str) -> str:
    if mode not in MODES:
        raise SettingsError(f"{where}: unknown mode {mode!r} (choose from {', '.join(MODES)})")
    return mode


def check_styles(styles, where: str) -> str:
    if not isinstance(styles, str):
        raise SettingsError(f"{where}: styles must be text like \"mehldau,tatum\"")
    try:
        parse_style(styles)
    except ValueError as exc:
        raise SettingsError(f"{where}: {exc}") from None
    return styles


def check_synth(synth, where: str) -> str:
    if synth not in SYNTH_CHOICES:
        raise SettingsError(f"{where}: synth = {synth!r} is not one of {', '.join(SYNTH_CHOICES)}")
    return synth


def parse_cc_map(table, where: str) -> dict[int, str]:
    if not isinstance(table, dict):
        raise SettingsError(f"{where}: [cc_map] must be a table of \"CC\" = \"control\"")
    cc_map = {}
    for key, name in table.items():
        try:
            cc = int(key)
        except ValueError:
            raise SettingsError(f"{where}: CC {key!r} is not a number") from None
        if not 0 <= cc <= 127 or cc in RESERVED_CCS:
            raise SettingsError(f"{where}: CC {cc} cannot be mapped (1..119, not bank select, data entry, "
                                f"(N)RPN or the pedals 64/66/67)")
        if name not in BY_NAME and name not in CC_TARGETS_EXTRA:
            raise SettingsError(f"{where}: CC {cc} maps to unknown control {name!r}")
        cc_map[cc] = name
    return cc_map


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:  # a corrupted card or a bad copy: not text at all
        raise SettingsError(f"{path}: not a text file (not UTF-8)") from None


def load_settings(path: Path | None = None) -> Settings:
    """The saved settings, or defaults when there is no file yet. Raises SettingsError for a file
    that is there but wrong (nothing of it is used)."""
    path = path or settings_path()
    if not path.exists():
        return Settings()
    data = read_toml(path)
    where = str(path)
    unknown = set(data) - {"mode", "styles", "controls", "cc_map", "synth"}
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    return Settings(controls=parse_controls(data.get("controls", {}), where, defaults()),
                    mode=check_mode(data.get("mode", "call-response"), where),
                    styles=check_styles(data.get("styles", DEFAULT_STYLE), where),
                    cc_map=parse_cc_map(data.get("cc_map", {}), where),
                    synth=check_synth(data.get("synth", "auto"), where))


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    path = path or settings_path()
    write_atomically(path, tomli_w.dumps(settings.to_toml()).encode())
    return path

"""Presets: how the AI plays (mode, styles and the musical controls), saved from the panel and
recalled from the panel or by MIDI Program Change. One TOML file per preset in <data dir>/presets/,
named by its program number so the folder reads in order:

    presets/005-ballad.toml      name = "ballad", program = 5, mode = "call-response", ...

A preset that cannot be read is refused with a message and the current settings stay."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from sideman.controls import MUSICAL
from sideman.panel.settings import (Settings, SettingsError, check_mode, check_styles, parse_controls,
                                    read_toml)
from sideman.paths import data_dir, write_atomically

PROGRAMS = range(128)


@dataclass(frozen=True)
class Preset:
    name: str
    program: int          # the Program Change number that recalls it (0..127)
    mode: str
    styles: str
    controls: dict        # musical controls only

    def apply_to(self, settings: Settings) -> Settings:
        """The settings with this preset's sound; the rig (channel, latency, CC map) stays."""
        new = settings.copy()
        new.mode, new.styles = self.mode, self.styles
        new.controls.update(self.controls)
        return new

    @classmethod
    def from_settings(cls, name: str, program: int, settings: Settings) -> "Preset":
        return cls(name, program, settings.mode, settings.styles, {k: settings.controls[k] for k in MUSICAL})


def presets_dir() -> Path:
    return data_dir() / "presets"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "preset"


class PresetBank:
    def __init__(self, folder: Path | None = None):
        self.folder = folder or presets_dir()

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("[0-9][0-9][0-9]-*.toml")) if self.folder.is_dir() else []

    def load_file(self, path: Path) -> Preset:
        data = read_toml(path)
        where = str(path)
        unknown = set(data) - {"name", "program", "mode", "styles", "controls"}
        if unknown:
            raise SettingsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        program = data.get("program")
        if isinstance(program, bool) or not isinstance(program, int) or program not in PROGRAMS:
            raise SettingsError(f"{where}: program must be a whole number 0..127")
        controls = parse_controls(data.get("controls", {}), where, {})
        rig = sorted(set(controls) - set(MUSICAL))
        if rig:
            raise SettingsError(f"{where}: {', '.join(rig)} belong to the rig, not a preset")
        return Preset(name=str(data.get("name", path.stem[4:])), program=program,
                      mode=check_mode(data.get("mode", "call-response"), where),
                      styles=check_styles(data.get("styles", "mehldau"), where), controls=controls)

    def list(self) -> tuple[list[Preset], list[str]]:
        """Every readable preset by program number, and a message for each one that is not."""
        presets, problems = [], []
        for path in self.files():
            try:
                presets.append(self.load_file(path))
            except SettingsError as exc:
                problems.append(str(exc))
        return sorted(presets, key=lambda p: p.program), problems

    def by_program(self, program: int) -> Preset | None:
        """The preset Program Change `program` recalls; SettingsError when its file is bad."""
        for path in self.files():
            if path.name.startswith(f"{program:03d}-"):
                return self.load_file(path)
        return None

    def next_free_program(self) -> int:
        used = {int(p.name[:3]) for p in self.files()}
        free = [n for n in PROGRAMS if n not in used]
        if not free:
            raise SettingsError(f"{self.folder}: all 128 preset slots are used")
        return free[0]

    def save(self, preset: Preset) -> Path:
        """Write atomically; a preset saved on a program number replaces the one there."""
        path = self.folder / f"{preset.program:03d}-{_slug(preset.name)}.toml"
        data = {"name": preset.name, "program": preset.program, "mode": preset.mode,
                "styles": preset.styles, "controls": dict(sorted(preset.controls.items()))}
        write_atomically(path, tomli_w.dumps(data).encode())
        # Only once the new file is in place does a differently named one on that number go.
        for old in self.folder.glob(f"{preset.program:03d}-*.toml"):
            if old != path:
                old.unlink()
        return path

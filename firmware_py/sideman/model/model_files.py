"""The torch-free half of a model folder: the manifest, its styles and checksums, and the error a
broken folder raises. The onnxruntime path of the box reads a model with these alone (no torch in
the process: ~190 MB less memory, a faster start); `bundle.py` adds the torch weights."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from sideman.paths import write_atomically

FORMAT = "sideman-transformer"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
# The graphs `sideman-train export` writes (the live voice, the box's engine build).
GRAPH_NAMES = ("init", "step", "pitch_head", "duration_head", "velocity_head")


class ModelFileError(Exception):
    """A model folder that cannot be used (the message says which file and why)."""


@dataclass
class Style:
    name: str            # short knob name: "mehldau"
    artist: str          # "Brad Mehldau" ("" for the shared row of all other pianists)
    row: int             # row of the style table
    source: str = "base"  # "base" (trained with the model) or "finetune"
    file: str | None = None
    sha256: str | None = None
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"name": self.name, "artist": self.artist, "row": self.row, "source": self.source}
        if self.file:
            out.update(file=self.file, sha256=self.sha256)
        if self.info:
            out["info"] = self.info
        return out


class StyleLookup:
    """What every model folder answers about its styles (needs `styles` and `manifest`)."""
    styles: list[Style]
    manifest: dict

    @property
    def default_style(self) -> str:
        return self.manifest.get("default_style") or self.styles[0].name

    def style(self, name: str) -> Style:
        for style in self.styles:
            if style.name == name:
                return style
        raise KeyError(f"no style {name!r}; this model has: {', '.join(s.name for s in self.styles)}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Model files are read by the box's service user, whatever the umask of the process writing them.
MODEL_FILE_MODE = 0o644


def write_json_atomically(path: Path, data: dict) -> None:
    write_atomically(Path(path), (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8"),
                     mode=MODEL_FILE_MODE)


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no model manifest here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: manifest version {manifest.get('version')} (this build reads {FORMAT_VERSION})")
    return manifest



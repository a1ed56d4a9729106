"""Where the box keeps its files (sessions, settings)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """SIDEMAN_DATA_DIR, else systemd's StateDirectory (/var/lib/sideman on the box),
    else $XDG_DATA_HOME/sideman (~/.local/share/sideman on a desktop)."""
    if os.environ.get("SIDEMAN_DATA_DIR"):
        return Path(os.environ["SIDEMAN_DATA_DIR"])
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(xdg) / "sideman"


def models_dir() -> Path:
    """Shipped weights and tables: SIDEMAN_MODELS_DIR, else the repository's models/ (a checkout or
    an editable install), else /usr/share/sideman/models (the box's .deb)."""
    if os.environ.get("SIDEMAN_MODELS_DIR"):
        return Path(os.environ["SIDEMAN_MODELS_DIR"])
    in_repo = Path(__file__).resolve().parents[2] / "models"
    if in_repo.is_dir():
        return in_repo
    return Path("/usr/share/sideman/models")


def sessions_dir() -> Path:
    return data_dir() / "sessions"


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename: a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)

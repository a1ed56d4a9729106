"""Where the box keeps its files (sessions, settings, models), and how every file is written
(atomically: the old file or the whole new one, never a part)."""

from __future__ import annotations

import errno
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


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


# ---------------------------------------------------------------------------------------------
# Atomic writes: the one way every file of the box and of sideman-train is written.

@contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside `path` (hidden: .NAME.tmp-PID-RANDOM) for the caller to write the new
    file at. When the block ends without an error the file is fsynced, given `mode` (if set; else
    the umask's), renamed over `path`, and the folder fsynced: after a crash or a power cut `path`
    is the old file or the whole new one, never a part. On an error the temporary file is removed.
    For writers that need a file name (FluidSynth's file renderer); the others use
    write_atomically or write_atomically_with."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)


def write_atomically_with(path: Path, write: Callable[[BinaryIO], object], mode: int | None = None) -> None:
    """write(file) writes the new contents to a binary file object (torch.save, np.save, np.savez,
    soundfile, ...); the file replaces `path` atomically (see atomic_path)."""
    with atomic_path(path, mode) as tmp:
        with open(tmp, "xb") as fh:
            write(fh)


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """`data` becomes the contents of `path` atomically (see atomic_path)."""
    write_atomically_with(path, lambda fh: fh.write(data), mode)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable. Some filesystems cannot fsync a folder; they say so."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)

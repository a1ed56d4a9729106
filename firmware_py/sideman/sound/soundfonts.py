"""Which piano soundfont the built-in piano plays: the user's (--soundfont), else the best one a
Debian package installed."""

from __future__ import annotations

from pathlib import Path

# Best first. musescore-general-soundfont has a sampled grand (better, 84 MB installed);
# timgm6mb-soundfont is small (6 MB) and loads at once; fluid-soundfont-gm sits between.
INSTALLED_SOUNDFONTS = (
    Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf3/default-GM.sf3"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
)
INSTALL_HINT = "sudo apt install libfluidsynth3 musescore-general-soundfont (or timgm6mb-soundfont)"


class SoundError(RuntimeError):
    """The built-in piano cannot play; the text is one line for the musician. The box plays on,
    MIDI only."""


def find_soundfont(explicit: str | Path | None = None) -> Path:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise SoundError(f"soundfont {path} not found")
        return path
    for path in INSTALLED_SOUNDFONTS:
        if path.is_file():
            return path
    raise SoundError(f"no piano soundfont installed ({INSTALL_HINT}, or --soundfont PATH)")

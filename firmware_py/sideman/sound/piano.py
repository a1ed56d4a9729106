"""Two pianos in one FluidSynth: the player's on the left of the stereo field, the AI's on the
right, so a listener hears who is who. Used live (sound/builtin.py) and offline (sound/render.py),
so a rendered duet sounds like the box."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Sequence

from sideman import messages as mm
from sideman.sound.soundfonts import INSTALL_HINT, SoundError

SAMPLE_RATE = 48000
# Two pianists at once stay below clipping at this gain (FluidSynth's default, 0.2, is quiet).
GAIN = 0.5
# MIDI pan (0 left, 64 centre, 127 right): apart enough to place each pianist, not hard-panned.
HUMAN_PAN = 16
AI_PAN = 112
CC_PAN = 10
GRAND_PIANO = 0  # General MIDI program 1


def load_fluidsynth():
    """pyfluidsynth over the system's libfluidsynth, or a SoundError saying what to install."""
    try:
        # pyfluidsynth prints where it found the library when $CI is set; stdout is ours (JSON).
        with contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth
    except ImportError as exc:
        raise SoundError(f"no built-in piano: FluidSynth is not installed ({exc}; {INSTALL_HINT})") from None
    return fluidsynth


class DuetPiano:
    """A FluidSynth synth with a grand piano on every channel, the AI's channel panned right and
    the others left. `play` takes raw MIDI messages (the box's tuples of ints)."""

    def __init__(self, soundfont: Path, ai_channel: int, settings: dict | None = None):
        self.fl = load_fluidsynth()
        self.ai_channel = ai_channel
        options = {"synth.dynamic-sample-loading": 1, **(settings or {})}
        self.synth = self.fl.Synth(gain=GAIN, samplerate=SAMPLE_RATE, **options)
        self.soundfont = Path(soundfont)
        self._sfid = self.synth.sfload(str(soundfont))
        if self._sfid < 0:
            self.synth.delete()
            raise SoundError(f"{soundfont}: not a soundfont FluidSynth can read")
        for channel in range(16):
            # Channel 10 too: the built-in instrument is a piano, whatever channel the keyboard uses.
            self.synth.program_select(channel, self._sfid, 0, GRAND_PIANO)
            self.synth.cc(channel, CC_PAN, AI_PAN if channel == ai_channel else HUMAN_PAN)

    def play(self, message: Sequence[int]) -> None:
        if not message or message[0] >= 0xF0:
            return  # SysEx, clock and other system messages mean nothing to this piano
        status, channel = message[0] & 0xF0, message[0] & 0x0F
        if status == mm.NOTE_ON and len(message) == 3:
            if message[2] > 0:
                self.synth.noteon(channel, message[1], message[2])
            else:
                self.synth.noteoff(channel, message[1])
        elif status == mm.NOTE_OFF and len(message) == 3:
            self.synth.noteoff(channel, message[1])
        elif status == mm.CONTROL_CHANGE and len(message) == 3:
            self.synth.cc(channel, message[1], message[2])
        elif status == mm.PROGRAM_CHANGE and len(message) == 2:
            self.synth.program_change(channel, message[1])
        elif status == 0xE0 and len(message) == 3:
            self.synth.pitch_bend(channel, (message[1] | message[2] << 7) - 8192)

    def silence(self) -> None:
        """Every note released (damper up) on every channel."""
        for channel in range(16):
            self.synth.cc(channel, mm.CC_SUSTAIN, 0)
            self.synth.all_notes_off(channel)

    def delete(self) -> None:
        self.synth.delete()

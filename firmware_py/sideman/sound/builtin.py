"""The built-in piano as one of the box's MIDI outputs: FluidSynth into whichever audio system
the machine has (PipeWire or PulseAudio, a JACK server, ALSA), or into a file.

It fills the same small contract as a MIDI port (name, send, close), so the box's output fan-out,
its sounding-note ledger and its panic cover it like any synth."""

from __future__ import annotations

import glob
import os
import threading
from pathlib import Path
from typing import Sequence

from sideman.sound.piano import SAMPLE_RATE, DuetPiano
from sideman.sound.render import file_type
from sideman.sound.soundfonts import SoundError, find_soundfont

SYNTH_CHOICES = ("auto", "builtin", "none")
AUDIO_DRIVERS = ("auto", "pipewire", "pulseaudio", "jack", "alsa", "file")
# Low latency by default: 2 periods of 128 frames at 48 kHz is a 5.3 ms output buffer
# (FluidSynth's own default, 16 x 64 at 44.1 kHz, is 23 ms). Raise it if the sound crackles.
DEFAULT_PERIOD_FRAMES = 128
DEFAULT_PERIODS = 2
JACK_CLIENT_NAME = "sideman-piano"


def buffer_ms(period_frames: int, periods: int, rate: int = SAMPLE_RATE) -> float:
    return 1000.0 * period_frames * periods / rate


def detect_audio_driver(private_jack: bool = False) -> tuple[str | None, str]:
    """(FluidSynth driver, what was found) for the machine's sound, or (None, why there is none).
    A JACK server we started ourselves for MIDI is a dummy: nobody would hear it."""
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}")
    if os.environ.get("PULSE_SERVER") or (runtime / "pulse" / "native").exists():
        if (runtime / "pipewire-0").exists():
            return "pulseaudio", "PipeWire (through its PulseAudio server)"
        return "pulseaudio", "PulseAudio"
    if not private_jack:
        from sideman.ports.jack_server import jack_server_running

        if jack_server_running():
            return "jack", "the running JACK server"
    if glob.glob("/dev/snd/pcmC*D*p"):
        return "alsa", "an ALSA playback device"
    jack = "only the box's own silent JACK server" if private_jack else "no JACK server"
    return None, f"no audio output here (no PipeWire or PulseAudio server, {jack}, no ALSA playback device)"


class BuiltinPiano:
    """FluidSynth playing live. Raises SoundError (one line) when the library, the soundfont or
    the audio output is missing; the caller plays on, MIDI only."""

    def __init__(self, ai_channel: int, driver: str, soundfont: str | Path | None = None,
                 audio_file: str | Path | None = None, period_frames: int = DEFAULT_PERIOD_FRAMES,
                 periods: int = DEFAULT_PERIODS):
        if driver == "file" and not audio_file:
            raise SoundError("the file audio driver needs --audio-file PATH (.wav, .flac or .ogg)")
        settings = {"audio.period-size": period_frames, "audio.periods": periods,
                    "audio.jack.id": JACK_CLIENT_NAME, "audio.jack.autoconnect": 1}
        if audio_file:
            settings["audio.file.name"] = str(audio_file)
            settings["audio.file.type"] = file_type(Path(audio_file))
        self.piano = DuetPiano(find_soundfont(soundfont), ai_channel, settings)
        self.name = "built-in piano"
        self.period_frames, self.periods = period_frames, periods
        self.audio_file = Path(audio_file) if audio_file else None
        self._lock = threading.Lock()
        self._driver = None
        # Debian's FluidSynth has no native PipeWire driver: PipeWire is reached through its
        # PulseAudio server (or pipewire-jack / pipewire-alsa).
        for name in (("pipewire", "pulseaudio") if driver == "pipewire" else (driver,)):
            self.piano.synth.setting("audio.driver", name)
            self._driver = self.piano.fl.new_fluid_audio_driver(self.piano.synth.settings, self.piano.synth.synth)
            if self._driver:
                self.driver = name
                break
        if not self._driver:
            self.piano.delete()
            raise SoundError(f"the {driver} audio output would not open (FluidSynth's message is above)")

    @property
    def buffer_ms(self) -> float | None:
        """The output buffer this side of the audio system (None: JACK's own, or a file)."""
        if self.driver in ("jack", "file"):
            return None
        return buffer_ms(self.period_frames, self.periods)

    def describe(self) -> str:
        where = f"{self.driver} -> {self.audio_file}" if self.audio_file else self.driver
        buffer = f", {self.buffer_ms:.1f} ms buffer" if self.buffer_ms is not None else ""
        return f"built-in piano ({self.piano.soundfont.name}, {where}{buffer}; you left, the AI right)"

    def send(self, message: Sequence[int]) -> None:
        with self._lock:
            if self._driver is not None:
                self.piano.play(message)

    def silence(self) -> None:
        with self._lock:
            if self._driver is not None:
                self.piano.silence()

    def close(self) -> None:
        """Idempotent: the audio driver stops (a file is finished) before the synth goes."""
        with self._lock:
            if self._driver is None:
                return
            self.piano.fl.delete_fluid_audio_driver(self._driver)
            self._driver = None
            self.piano.delete()

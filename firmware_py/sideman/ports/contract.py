"""The one small contract every MIDI transport fills (rtmidi ALSA/JACK, DIN serial, ...).

A message is a tuple of ints: the raw MIDI bytes of one complete message (status first;
a SysEx message includes its 0xF0 ... 0xF7). Arrival times are `sideman.clock.now_ns()`.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

Message = tuple[int, ...]
# Called on the transport's own thread for every complete incoming message.
Receiver = Callable[[Message, int], None]


class MidiInput(Protocol):
    name: str

    def set_receiver(self, receiver: Receiver | None) -> None: ...

    def close(self) -> None: ...


class MidiOutput(Protocol):
    name: str

    def send(self, message: Sequence[int]) -> None: ...

    def close(self) -> None: ...


class PortError(RuntimeError):
    """A port could not be opened or used; the text is a one-line message for the musician."""

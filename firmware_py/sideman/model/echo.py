"""Echo: a plumbing check, not a musician. Repeats what the player plays a bar later, an octave up,
on the AI channel. It proves the timed AI path end to end until the Markov voice (next issue)
becomes the default."""

from __future__ import annotations

from sideman import messages as mm
from sideman.clock import NS_PER_S


class EchoVoice:
    name = "echo"

    def __init__(self, delay_s: float = 2.0, transpose: int = 12):
        self.delay_ns = int(delay_s * NS_PER_S)
        self.transpose = transpose

    def hear(self, message, t_ns):
        if mm.is_note_on(message) or mm.is_note_off(message):
            pitch = min(127, max(0, message[1] + self.transpose))
            return [(t_ns + self.delay_ns, (message[0], pitch, message[2]))]
        return ()

    def tick(self, t_ns):
        return ()


class SilentVoice:
    """Thru only: the AI listens and never plays."""

    name = "none"

    def hear(self, message, t_ns):
        return ()

    def tick(self, t_ns):
        return ()


VOICES = {"echo": EchoVoice, "none": SilentVoice}

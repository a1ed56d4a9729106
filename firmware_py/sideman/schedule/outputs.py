"""Output slots: every destination the box plays into, with what is sounding on it.

Each slot serialises its sends (rtmidi outputs are not safe to write from two threads: the input
thread sends thru, the sender thread sends the AI) and keeps a ledger of the notes it has left
sounding, so a panic, an output change or a shutdown can always turn every one of them off.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable, Sequence

from sideman import messages as mm
from sideman.ports.contract import MidiOutput

log = logging.getLogger("sideman.outputs")


class OutputSlot:
    def __init__(self, port: MidiOutput, latency_ms: float = 0.0, patchable: bool = False):
        self.port = port
        self.name = port.name
        # A JACK port: the player's notes can reach its synth by a patched connection instead.
        self.patchable = patchable
        # Per-synth latency compensation: AI events go to this slot this much earlier.
        self.latency_ns = int(latency_ms * 1_000_000)
        self._lock = threading.Lock()
        self._sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> note-ons not yet ended
        self._sustain_down: set[int] = set()
        self.send_errors = 0

    def send(self, message: Sequence[int]) -> bool:
        with self._lock:
            try:
                self.port.send(message)
            except Exception as exc:  # an unplugged device must not take the box down
                self.send_errors += 1
                if self.send_errors == 1:
                    log.warning("output %s: send failed (%s)", self.name, exc)
                return False
            self._track(message)
            return True

    def passed(self, message: Sequence[int]) -> None:
        """A message of the player's reached this slot's synth by patched thru: keep the ledger."""
        with self._lock:
            self._track(message)

    def _track(self, message: Sequence[int]) -> None:
        if len(message) != 3 or message[0] >= 0xF0:
            return
        ch = message[0] & 0x0F
        if mm.is_note_on(message):
            key = (ch, message[1])
            self._sounding[key] = self._sounding.get(key, 0) + 1
        elif mm.is_note_off(message):
            key = (ch, message[1])
            count = self._sounding.get(key, 0)
            if count <= 1:
                self._sounding.pop(key, None)
            else:
                self._sounding[key] = count - 1
        elif message[0] & 0xF0 == mm.CONTROL_CHANGE and message[1] == mm.CC_SUSTAIN:
            (self._sustain_down.add if message[2] >= 64 else self._sustain_down.discard)(ch)
        elif message[0] & 0xF0 == mm.CONTROL_CHANGE and message[1] in (mm.CC_ALL_NOTES_OFF, mm.CC_ALL_SOUND_OFF):
            for key in [k for k in self._sounding if k[0] == ch]:
                del self._sounding[key]

    def sounding_notes(self, channels: Iterable[int] | None = None) -> list[tuple[int, int]]:
        with self._lock:
            keys = list(self._sounding)
        wanted = None if channels is None else set(channels)
        return sorted(k for k in keys if wanted is None or k[0] in wanted)

    def release(self, channels: Iterable[int] | None = None, all_notes_off: Iterable[int] = ()) -> int:
        """Turn off every note this slot left sounding (on `channels`, or all), lift sustain,
        then send CC123 (All Notes Off) on `all_notes_off` channels. Returns note-offs sent."""
        wanted = None if channels is None else set(channels)
        with self._lock:
            keys = [k for k in self._sounding if wanted is None or k[0] in wanted]
            pedals = [ch for ch in self._sustain_down if wanted is None or ch in wanted]
        sent = 0
        for ch, pitch in keys:
            with self._lock:
                count = self._sounding.get((ch, pitch), 0)
            # One note-off per outstanding note-on: synths that stack voices need each one.
            for _ in range(max(count, 1)):
                self.send(mm.note_off(ch, pitch))
                sent += 1
        for ch in pedals:
            self.send(mm.control_change(ch, mm.CC_SUSTAIN, 0))
        for ch in all_notes_off:
            self.send(mm.control_change(ch, mm.CC_ALL_NOTES_OFF, 0))
        return sent

    def close(self) -> None:
        try:
            self.port.close()
        except Exception as exc:
            log.debug("closing %s: %s", self.name, exc)


class OutputFanout:
    """All current output slots. The slot list is replaced whole (copy on write), so the input and
    sender threads can iterate it without a lock while the hot-plug watcher changes it."""

    def __init__(self):
        self.slots: tuple[OutputSlot, ...] = ()
        self._change_lock = threading.Lock()

    def send(self, message: Sequence[int]) -> None:
        for slot in self.slots:
            slot.send(message)

    def send_thru(self, message: Sequence[int], patched: bool) -> None:
        """The player's message: sent to every slot, or, while thru is patched, only to the slots
        that are not JACK ports (the others get it from the patch, and note it in their ledger)."""
        for slot in self.slots:
            if patched and slot.patchable:
                slot.passed(message)
            else:
                slot.send(message)

    def add(self, slot: OutputSlot) -> None:
        with self._change_lock:
            self.slots = self.slots + (slot,)

    def remove(self, slot: OutputSlot) -> None:
        with self._change_lock:
            self.slots = tuple(s for s in self.slots if s is not slot)

    def names(self) -> list[str]:
        return [s.name for s in self.slots]

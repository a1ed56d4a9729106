"""5-pin DIN MIDI on the byte level: a stream parser and a running-status encoder.

Pure code, no I/O: `din_port.DinPort` feeds it the bytes a UART delivers. The parser
follows the MIDI 1.0 wire rules a real cable needs (running status, realtime bytes that
may land anywhere, SysEx of any length) and recovers from line noise instead of raising.

Messages are tuples of ints, as in `sideman.ports.contract`.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from .contract import Message

DEFAULT_MAX_SYSEX = 1 << 20  # bytes, F0 and F7 included

SYSEX_START = 0xF0
SYSEX_END = 0xF7

# Realtime bytes F8..FF as ready-made 1-byte messages (no allocation per clock tick);
# None for the undefined F9 and FD, which are dropped.
_REALTIME: tuple[Message | None, ...] = tuple(
    None if b in (0xF9, 0xFD) else (b,) for b in range(0xF8, 0x100)
)

# Data bytes that follow each status byte (channel voice by high nibble, system common
# by full byte). SysEx (F0) is open-ended and not listed.
_CHANNEL_DATA_LEN = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}
_COMMON_DATA_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}


def data_length(status: int) -> int | None:
    """Data bytes after `status`; None for SysEx, undefined or non-status bytes."""
    if 0x80 <= status < 0xF0:
        return _CHANNEL_DATA_LEN[status >> 4]
    if status in _COMMON_DATA_LEN:
        return _COMMON_DATA_LEN[status]
    if status >= 0xF8 and _REALTIME[status - 0xF8] is not None:
        return 0
    return None


class MidiByteParser:
    """Splits a raw MIDI byte stream (as it comes off a DIN cable) into messages.

    Rules, in the order a byte meets them:
      * F8..FF realtime: emitted at once as a 1-byte message, even in the middle of
        another message or a SysEx, which carries on undisturbed. F9/FD (undefined)
        are dropped with no state change.
      * F4/F5 (undefined system common): dropped as line noise, no state change (as in
        mido's tokenizer).
      * Any other status byte ends whatever was in progress; an incomplete message or
        SysEx is dropped and counted in `dropped_messages`.
      * 80..EF set the running status: after a complete channel message, further data
        bytes start another message with the same status.
      * F1/F2/F3/F6 (system common), F0..F7 (SysEx) and a stray F7 cancel running status.
      * Data bytes with nowhere to go are skipped and counted in `dropped_bytes`.
      * A SysEx longer than `max_sysex` bytes (F0 and F7 included) is dropped and counted
        (`dropped_messages`, `sysex_overflows`); its buffer is freed at once, so memory
        stays bounded whatever arrives.

    `feed` never raises on bytes 0..255 (an iterable holding other values raises
    ValueError before any state changes).
    """

    __slots__ = (
        "max_sysex",
        "_sysex_cap",
        "_status",
        "_need",
        "_first",
        "_pending",
        "_sysex",
        "_skipping_sysex",
        "dropped_bytes",
        "dropped_messages",
        "sysex_overflows",
    )

    def __init__(self, max_sysex: int = DEFAULT_MAX_SYSEX) -> None:
        if max_sysex < 2:
            raise ValueError("max_sysex must allow at least F0 F7")
        self.max_sysex = max_sysex
        # A SysEx buffer may hold at most max_sysex - 1 bytes before its F7 arrives.
        self._sysex_cap = max_sysex - 1
        self.dropped_bytes = 0  # stray data bytes, undefined status bytes, stray F7
        self.dropped_messages = 0  # incomplete messages and SysEx cut short or too long
        self.sysex_overflows = 0  # the SysEx among dropped_messages that hit max_sysex
        self.reset()

    def reset(self) -> None:
        """Forget any message in progress and the running status (counters are kept)."""
        self._status = 0  # status of the message in progress, or the running status; 0 none
        self._need = 0  # data bytes that status takes (1 or 2)
        self._first = -1  # first data byte of a 2-data-byte message, -1 while none
        self._pending = False  # a message has begun and is not complete yet
        self._sysex: bytearray | None = None  # SysEx being collected, F0 included
        self._skipping_sysex = False  # inside a SysEx that overflowed: eat data to its end

    def feed(self, data: bytes | bytearray | memoryview | Iterable[int]) -> list[Message]:
        """Parse more bytes; return the messages they completed, in wire order."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)  # validates 0..255 up front
        out: list[Message] = []
        emit = out.append
        realtime = _REALTIME
        cap = self._sysex_cap
        # State lives in locals for the loop (attribute access per byte is slow).
        status = self._status
        need = self._need
        first = self._first
        pending = self._pending
        sysex = self._sysex
        skipping = self._skipping_sysex
        dropped_bytes = dropped_messages = overflows = 0

        for b in data:
            if b < 0x80:  # data byte
                if sysex is not None:
                    if len(sysex) < cap:
                        sysex.append(b)
                    else:
                        sysex = None  # free it now; eat the rest up to F7
                        skipping = True
                        dropped_messages += 1
                        overflows += 1
                elif skipping:
                    pass
                elif status:
                    if need == 1:
                        emit((status, b))
                        pending = False
                        if status >= 0xF0:  # system common leaves no running status
                            status = 0
                    elif first < 0:
                        first = b
                        pending = True  # may be a running-status message beginning
                    else:
                        emit((status, first, b))
                        first = -1
                        pending = False
                        if status >= 0xF0:
                            status = 0
                else:
                    dropped_bytes += 1
            elif b >= 0xF8:  # realtime: never touches the message in progress
                rt = realtime[b - 0xF8]
                if rt is None:
                    dropped_bytes += 1
                else:
                    emit(rt)
            elif b == 0xF4 or b == 0xF5:
                dropped_bytes += 1
            else:
                # A status byte 80..F7: whatever was in progress is over.
                if sysex is not None:
                    if b == SYSEX_END:
                        sysex.append(SYSEX_END)
                        emit(tuple(sysex))
                        sysex = None
                        continue  # status is already 0: SysEx cancelled running status
                    dropped_messages += 1
                    sysex = None
                elif skipping:
                    skipping = False
                    if b == SYSEX_END:
                        continue  # the end of the SysEx dropped for size
                elif pending:
                    dropped_messages += 1
                pending = False
                first = -1
                if b < 0xF0:
                    status = b
                    need = 1 if 0xC0 <= b < 0xE0 else 2
                    pending = True
                elif b == SYSEX_START:
                    sysex = bytearray(b"\xf0")
                    status = 0
                elif b == SYSEX_END:
                    dropped_bytes += 1  # stray EOX
                    status = 0
                elif b == 0xF6:
                    emit((0xF6,))
                    status = 0
                else:  # F1, F2, F3
                    status = b
                    need = 2 if b == 0xF2 else 1
                    pending = True

        self._status = status
        self._need = need
        self._first = first
        self._pending = pending
        self._sysex = sysex
        self._skipping_sysex = skipping
        if dropped_bytes:
            self.dropped_bytes += dropped_bytes
        if dropped_messages:
            self.dropped_messages += dropped_messages
            self.sysex_overflows += overflows
        return out


def check_message(message: Sequence[int]) -> None:
    """Raise ValueError unless `message` is one complete, well-formed MIDI message."""
    if not message:
        raise ValueError("empty MIDI message")
    status = message[0]
    if status == SYSEX_START:
        if len(message) < 2 or message[-1] != SYSEX_END:
            raise ValueError("SysEx must end with F7")
        body = message[1:-1]
    else:
        n = data_length(status)
        if n is None:
            raise ValueError(f"not a MIDI status byte: {status!r}")
        if len(message) != n + 1:
            raise ValueError(f"status {status:#04x} takes {n} data bytes, got {len(message) - 1}")
        body = message[1:]
    for b in body:
        if not 0 <= b < 0x80:
            raise ValueError(f"bad MIDI data byte {b!r} in message starting {status:#04x}")


class RunningStatusEncoder:
    """Turns messages into wire bytes, leaving out a status byte that repeats.

    Running status only spans channel-voice messages: system common and SysEx clear it
    (the receiver forgets it too); realtime bytes neither use nor clear it.
    Three note-ons on one channel: 7 bytes instead of 9.
    """

    __slots__ = ("_running",)

    def __init__(self) -> None:
        self._running = 0

    def reset(self) -> None:
        """Send the next status byte in full (after a stall, a reconnect, a partial write)."""
        self._running = 0

    def encode(self, message: Sequence[int]) -> bytes:
        check_message(message)
        status = message[0]
        if status < 0xF0:
            if status == self._running:
                return bytes(message[1:])
            self._running = status
        elif status < 0xF8:
            self._running = 0
        return bytes(message)

    def encode_all(self, messages: Iterable[Sequence[int]]) -> bytes:
        return b"".join([self.encode(m) for m in messages])


def encode_messages(messages: Iterable[Sequence[int]], running_status: bool = True) -> bytes:
    """Wire bytes for a list of messages, with running status unless told otherwise."""
    if running_status:
        return RunningStatusEncoder().encode_all(messages)
    out = bytearray()
    for m in messages:
        check_message(m)
        out += bytes(m)
    return bytes(out)

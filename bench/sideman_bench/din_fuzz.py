"""Fuzzing and differential checks of the DIN byte parser against mido.

    sideman-bench fuzz-din --streams 1000000 --seed 1 [--json]

Prints a JSON summary (streams, bytes, messages, failures, seconds) and exits non-zero
on any failure. tests/test_din.py runs the same checks with fewer, shorter streams.

Three checks:
  * random streams (fully random bytes, MIDI-like biased bytes, valid encodings with
    bytes flipped, lost or added): the parser never raises, every message it emits is a
    valid MIDI message for mido, and mido.Parser's messages on the same bytes are an
    ordered subsequence of ours (mido has no running status and drops a message when a
    realtime byte lands inside it, so ours is a superset);
  * structured: a random valid message list, sent messily (running status, realtime
    bytes inside messages, garbage between messages) comes back exactly; mido, fed a
    clean encoding of the same list, agrees.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

import mido

from sideman.ports.contract import Message
from sideman.ports.din import MidiByteParser, encode_messages

# ---------------------------------------------------------------- random messages

_REALTIME_STATUSES = (0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF)
# Channel statuses a jazz rig actually sends, weighted up so running status is common.
_COMMON_CHANNEL_STATUSES = (0x90, 0x80, 0xB0, 0x90, 0x91, 0xE0, 0xC0)


def random_message(rng: random.Random, max_sysex_data: int = 24) -> Message:
    """One valid MIDI message, any kind (realtime included)."""
    r = rng.random()
    if r < 0.55:
        if rng.random() < 0.6:
            status = rng.choice(_COMMON_CHANNEL_STATUSES)
        else:
            status = rng.randrange(0x80, 0xF0)
        if 0xC0 <= status < 0xE0:
            return (status, rng.randrange(128))
        return (status, rng.randrange(128), rng.randrange(128))
    if r < 0.75:
        return (rng.choice(_REALTIME_STATUSES),)
    if r < 0.85:
        n = rng.randrange(max_sysex_data + 1)
        return (0xF0, *rng.randbytes(n).translate(_TO_DATA), 0xF7)
    status = rng.choice((0xF1, 0xF2, 0xF3, 0xF6))
    if status == 0xF2:
        return (status, rng.randrange(128), rng.randrange(128))
    if status == 0xF6:
        return (status,)
    return (status, rng.randrange(128))


_TO_DATA = bytes(b & 0x7F for b in range(256))  # bytes.translate table: clear bit 7


def random_messages(rng: random.Random, n: int, max_sysex_data: int = 24) -> list[Message]:
    return [random_message(rng, max_sysex_data) for _ in range(n)]


# ---------------------------------------------------------------- random streams

# MIDI-like byte pool: mostly data bytes and a few channel statuses, plus every kind of
# status (undefined ones too) often enough to hit every rule of the parser.
_POOL: list[int] = []
_WEIGHTS: list[float] = []


def _pool(values, weight_each):
    for v in values:
        _POOL.append(v)
        _WEIGHTS.append(weight_each)


_pool(range(0x80), 55 / 128)
_pool((0x90, 0x80, 0xB0, 0xC0, 0xE0), 12 / 5)
_pool(range(0x80, 0xF0), 8 / 112)
_pool((0xF0, 0xF7), 5 / 2)
_pool((0xF1, 0xF2, 0xF3, 0xF6), 4 / 4)
_pool((0xF4, 0xF5), 2 / 2)
_pool(range(0xF8, 0x100), 10 / 8)
_CUM_WEIGHTS: list[float] = []
_acc = 0.0
for _w in _WEIGHTS:
    _acc += _w
    _CUM_WEIGHTS.append(_acc)
del _acc, _w


def random_stream(rng: random.Random, max_len: int) -> bytes:
    """A stream of 1..max_len bytes: fully random, MIDI-like, or a mangled valid encoding."""
    n = rng.randint(1, max_len)
    kind = rng.random()
    if kind < 0.3:
        return rng.randbytes(n)
    if kind < 0.7:
        return bytes(rng.choices(_POOL, cum_weights=_CUM_WEIGHTS, k=n))
    # A valid encoding (running status included) with a few bytes mangled.
    data = bytearray()
    while len(data) < n:
        data += encode_messages(random_messages(rng, 4), running_status=rng.random() < 0.7)
    del data[n:]
    for _ in range(rng.randrange(4)):
        op = rng.randrange(3)
        i = rng.randrange(len(data) + 1)
        if op == 0 and i < len(data):
            data[i] = rng.randrange(256)
        elif op == 1 and i < len(data):
            del data[i]
        else:
            data.insert(i, rng.choice(_POOL))
    return bytes(data)


# ---------------------------------------------------------------- the checks


def is_ordered_subsequence(small: Sequence, big: Sequence) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def check_stream(data: bytes, max_sysex: int | None = None) -> tuple[int, str | None]:
    """Parse `data` with ours and with mido; return (messages we emitted, problem or None)."""
    try:
        parser = MidiByteParser() if max_sysex is None else MidiByteParser(max_sysex)
        ours = parser.feed(data)
    except Exception as exc:  # the property under test is exactly "never raises"
        return 0, f"parser raised {exc!r}"
    for msg in ours:
        if max_sysex is not None and msg[0] == 0xF0 and len(msg) > max_sysex:
            return len(ours), f"emitted a {len(msg)}-byte SysEx over max_sysex={max_sysex}"
        try:
            mido.Message.from_bytes(list(msg))
        except Exception as exc:
            return len(ours), f"emitted invalid message {bytes(msg).hex(' ')}: {exc}"
    theirs = [tuple(m.bytes()) for m in mido.Parser(data)]
    if max_sysex is not None:  # mido has no limit: leave out what ours drops for size
        theirs = [m for m in theirs if len(m) <= max_sysex or m[0] != 0xF0]
    if not is_ordered_subsequence(theirs, ours):
        return len(ours), (
            "mido's messages are not an ordered subsequence of ours: "
            f"ours={[bytes(m).hex() for m in ours]} mido={[bytes(m).hex() for m in theirs]}"
        )
    return len(ours), None


# Garbage that leaves the parser with no running status and nothing in progress once
# the next explicit status byte arrives.
def _garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:  # a channel message cut short
        status = rng.randrange(0x80, 0xF0)
        n = 1 if 0xC0 <= status < 0xE0 else 2
        return bytes((status, *rng.randbytes(rng.randrange(n)).translate(_TO_DATA)))
    if kind == 1:  # a SysEx cut short
        return b"\xf0" + rng.randbytes(rng.randrange(12)).translate(_TO_DATA)
    if kind == 2:  # system common cut short
        status = rng.choice((0xF1, 0xF2, 0xF3))
        n = 2 if status == 0xF2 else 1
        return bytes((status, *rng.randbytes(rng.randrange(n)).translate(_TO_DATA)))
    if kind == 3:  # stray EOX, then data bytes nobody can own
        return b"\xf7" + rng.randbytes(rng.randrange(4)).translate(_TO_DATA)
    if kind == 4:  # undefined status bytes (no state change)
        return bytes(rng.choice((0xF4, 0xF5, 0xF9, 0xFD)) for _ in range(rng.randint(1, 3)))
    return b""  # no garbage, only the forced explicit status


def messy_encode(rng: random.Random, messages: Sequence[Message]) -> bytes:
    """Wire bytes for `messages` the way a real, messy cable carries them.

    Running status where allowed; a realtime message may be delayed into the middle of
    the next non-realtime message (so it still arrives in list order, because realtime
    is emitted at once while the enclosing message completes later); undefined bytes
    sprinkled inside messages; garbage between messages, after which the next message
    goes out with an explicit status byte; orphan data bytes where no status is held.
    """
    out = bytearray()
    running = 0
    no_status = True  # the receiver holds no status (stream start, after system common/SysEx)
    held_realtime: list[int] = []
    for msg in messages:
        status = msg[0]
        if status >= 0xF8:
            if rng.random() < 0.5:
                held_realtime.append(status)  # will ride inside the next message
            else:
                out += bytes(held_realtime)
                held_realtime.clear()
                out.append(status)
            continue
        if no_status and rng.random() < 0.1:
            out += rng.randbytes(rng.randint(1, 3)).translate(_TO_DATA)  # orphan data bytes
        if rng.random() < 0.15:
            out += _garbage(rng)
            running = 0
        body = list(msg)
        if status < 0xF0:
            if status == running and rng.random() < 0.9:
                body = body[1:]
            running = status
        else:
            running = 0
        no_status = running == 0
        # Sprinkle held realtime and undefined bytes before any byte but the last.
        if held_realtime:
            # Before which body byte each one goes; sorted so they keep their order.
            slots = sorted(rng.randrange(len(body)) for _ in held_realtime)
            mixed: list[int] = []
            k = 0
            for i, b in enumerate(body):
                while k < len(slots) and slots[k] == i:
                    mixed.append(held_realtime[k])
                    k += 1
                mixed.append(b)
            body = mixed
            held_realtime.clear()
        if rng.random() < 0.1:
            body.insert(rng.randrange(len(body)), rng.choice((0xF4, 0xF5, 0xF9, 0xFD)))
        out += bytes(body)
    out += bytes(held_realtime)
    return bytes(out)


def check_structured(rng: random.Random, n_messages: int, max_sysex_data: int = 24) -> tuple[int, int, str | None]:
    """One structured differential case: (bytes fed, messages, problem or None)."""
    messages = random_messages(rng, n_messages, max_sysex_data)
    wire = messy_encode(rng, messages)
    try:
        ours = MidiByteParser().feed(wire)
    except Exception as exc:
        return len(wire), 0, f"parser raised {exc!r} on {wire.hex(' ')}"
    if ours != messages:
        return len(wire), len(ours), (
            f"messy wire {wire.hex(' ')} gave {[bytes(m).hex() for m in ours]}, "
            f"sent {[bytes(m).hex() for m in messages]}"
        )
    clean = encode_messages(messages, running_status=False)
    theirs = [tuple(m.bytes()) for m in mido.Parser(clean)]
    if theirs != messages:
        return len(wire), len(ours), (
            f"mido on the clean wire {clean.hex(' ')} gave {[bytes(m).hex() for m in theirs]}"
        )
    return len(wire), len(ours), None


# ---------------------------------------------------------------- runs


@dataclass
class FuzzSummary:
    streams: int = 0
    bytes: int = 0
    messages: int = 0
    failures: int = 0
    seconds: float = 0.0
    seed: int = 0
    examples: list[str] = field(default_factory=list)  # the first few failures, for a repro

    def tally(self, nbytes: int, messages: int, problem: str | None, where: str) -> None:
        self.streams += 1
        self.bytes += nbytes
        self.messages += messages
        if problem:
            self.fail(f"{where}: {problem}")

    def fail(self, problem: str) -> None:
        self.failures += 1
        if len(self.examples) < 5:
            self.examples.append(problem)


def run_random_streams(count: int, seed: int, max_len: int = 64, summary: FuzzSummary | None = None,
                       progress=None) -> FuzzSummary:
    summary = summary or FuzzSummary(seed=seed)
    rng = random.Random(seed)
    for i in range(count):
        data = random_stream(rng, max_len)
        # Every 8th stream with a tiny SysEx limit, to exercise the overflow path.
        max_sysex = rng.randint(2, 24) if i % 8 == 7 else None
        n, problem = check_stream(data, max_sysex)
        summary.tally(len(data), n, problem, f"stream {i} (seed {seed}, max_sysex {max_sysex}) {data.hex(' ')}")
        if progress is not None and i % 10_000 == 0:
            progress(summary)
    return summary


def run_structured(count: int, seed: int, max_messages: int = 24, summary: FuzzSummary | None = None,
                   progress=None) -> FuzzSummary:
    summary = summary or FuzzSummary(seed=seed)
    rng = random.Random(seed)
    for i in range(count):
        nbytes, n, problem = check_structured(rng, rng.randint(1, max_messages))
        summary.tally(nbytes, n, problem, f"structured case {i} (seed {seed})")
        if progress is not None and i % 10_000 == 0:
            progress(summary)
    return summary


def fuzz(streams: int, seed: int, max_len: int = 256) -> FuzzSummary:
    """The long run: 3/4 of the streams random, 1/4 structured."""
    start = time.monotonic()
    summary = FuzzSummary(seed=seed)
    last = [0.0]

    def progress(s: FuzzSummary) -> None:
        now = time.monotonic()
        if now - last[0] >= 2.0:
            last[0] = now
            print(f"\rdin_fuzz: {s.streams}/{streams} streams, {s.bytes} bytes, "
                  f"{s.failures} failures, {now - start:.0f} s", end="", file=sys.stderr, flush=True)

    n_structured = streams // 4
    run_random_streams(streams - n_structured, seed, max_len, summary, progress)
    run_structured(n_structured, seed + 1, summary=summary, progress=progress)
    summary.seconds = round(time.monotonic() - start, 2)
    print(file=sys.stderr)
    return summary


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=256, help="longest random stream in bytes")
    ap.add_argument("--json", action="store_true", help="print only the JSON summary (no examples on stderr)")


def run(args: argparse.Namespace) -> int:
    """The fuzz run `sideman-bench fuzz-din` asked for: the JSON summary; non-zero on any failure."""
    summary = fuzz(args.streams, args.seed, args.max_len)
    result = {k: getattr(summary, k) for k in ("streams", "bytes", "messages", "failures", "seconds", "seed")}
    if not args.json:
        for ex in summary.examples:
            print(f"FAIL {ex}", file=sys.stderr)
    else:
        result["examples"] = summary.examples
    print(json.dumps(result))
    return 1 if summary.failures else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sideman_bench.din_fuzz", description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

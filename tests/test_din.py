"""5-pin DIN MIDI: the byte parser, the running-status encoder, mido differentials, and
DinPort over a real pseudo-terminal (real bytes, no mocks)."""

from __future__ import annotations

import errno
import logging
import os
import queue
import random
import select
import sys
import time
import tracemalloc

import pytest
import serial

from sideman.clock import now_ns
from sideman_bench import din_fuzz
from sideman.ports.contract import PortError
from sideman.ports.din import MidiByteParser, RunningStatusEncoder, encode_messages
from sideman.ports.din_port import DinPort, open_error_text, _baud_rejected_text

CLOCK = (0xF8,)


def parse(data, **kw):
    p = MidiByteParser(**kw)
    return p.feed(bytes(data)), p


# ==================================================================== parser rules


def test_running_status_note_ons():
    msgs, p = parse([0x90, 0x3C, 0x40, 0x40, 0x41, 0x43, 0x00])
    assert msgs == [(0x90, 0x3C, 0x40), (0x90, 0x40, 0x41), (0x90, 0x43, 0x00)]
    assert p.dropped_bytes == p.dropped_messages == 0


def test_running_status_one_data_byte_messages():
    msgs, _ = parse([0xC0, 0x05, 0x06, 0xD1, 0x10, 0x20])
    assert msgs == [(0xC0, 0x05), (0xC0, 0x06), (0xD1, 0x10), (0xD1, 0x20)]


def test_running_status_survives_chunk_boundaries():
    p = MidiByteParser()
    got = p.feed(b"\x90\x3c") + p.feed(b"\x40\x3e") + p.feed(b"\x40")
    assert got == [(0x90, 0x3C, 0x40), (0x90, 0x3E, 0x40)]


def test_clock_inside_note_on_is_emitted_first_and_note_survives():
    msgs, p = parse([0x90, 0xF8, 0x3C, 0xF8, 0x40])
    assert msgs == [CLOCK, CLOCK, (0x90, 0x3C, 0x40)]
    assert p.dropped_messages == 0


def test_clock_inside_running_status_message():
    msgs, _ = parse([0x90, 0x3C, 0x40, 0x3E, 0xF8, 0x40, 0xFA, 0x40, 0xFC, 0x41, 0x00])
    assert msgs == [(0x90, 0x3C, 0x40), CLOCK, (0x90, 0x3E, 0x40), (0xFA,), (0xFC,), (0x90, 0x40, 0x41)]
    # the trailing 00 is the first data byte of a fourth note-on, still waiting


def test_realtime_inside_sysex():
    msgs, _ = parse([0xF0, 0x7E, 0xF8, 0x01, 0xFE, 0x02, 0xFF, 0xF7])
    assert msgs == [CLOCK, (0xFE,), (0xFF,), (0xF0, 0x7E, 0x01, 0x02, 0xF7)]


def test_undefined_realtime_dropped_without_state_change():
    msgs, p = parse([0x90, 0x3C, 0xF9, 0x40, 0xFD, 0x3E, 0x40, 0xF0, 0x01, 0xF9, 0xF7])
    assert msgs == [(0x90, 0x3C, 0x40), (0x90, 0x3E, 0x40), (0xF0, 0x01, 0xF7)]
    assert p.dropped_bytes == 3 and p.dropped_messages == 0


def test_sysex_100k_in_odd_chunks():
    rng = random.Random(5)
    payload = rng.randbytes(100_000).translate(bytes(b & 0x7F for b in range(256)))
    wire = b"\xf0" + payload + b"\xf7" + b"\x90\x3c\x40"
    p = MidiByteParser()
    got, i = [], 0
    while i < len(wire):
        n = rng.randint(1, 5000)
        got += p.feed(wire[i:i + n])
        i += n
    assert got == [(0xF0, *payload, 0xF7), (0x90, 0x3C, 0x40)]


def test_sysex_at_limit_kept_over_limit_dropped_and_counted():
    limit = 16
    at_limit = [0xF0, *range(14), 0xF7]  # 16 bytes
    over = [0xF0, *range(15), 0xF7]  # 17 bytes
    msgs, p = parse(at_limit + over + [0x90, 0x3C, 0x40], max_sysex=limit)
    assert msgs == [tuple(at_limit), (0x90, 0x3C, 0x40)]
    assert p.dropped_messages == 1 and p.sysex_overflows == 1
    # data after the dropped SysEx's F7 is stray: running status was cancelled by F0
    msgs, p = parse(over + [0x3C, 0x40], max_sysex=limit)
    assert msgs == [] and p.dropped_bytes == 2


def test_sysex_overflow_memory_stays_bounded():
    p = MidiByteParser(max_sysex=4096)
    chunk = bytes(1024)
    tracemalloc.start()
    try:
        p.feed(b"\xf0")
        for _ in range(2048):  # 2 MiB of SysEx data
            p.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert p.feed(b"\xf7\x90\x3c\x40") == [(0x90, 0x3C, 0x40)]
    assert p.sysex_overflows == 1


def test_status_interrupting_incomplete_message_wins():
    msgs, p = parse([0x90, 0x3C, 0x80, 0x3C, 0x00])
    assert msgs == [(0x80, 0x3C, 0x00)] and p.dropped_messages == 1
    msgs, p = parse([0xF0, 0x01, 0x02, 0x90, 0x3C, 0x40])  # SysEx cut short by a note
    assert msgs == [(0x90, 0x3C, 0x40)] and p.dropped_messages == 1
    msgs, p = parse([0xF2, 0x01, 0xB0, 0x40, 0x7F])  # song position cut short
    assert msgs == [(0xB0, 0x40, 0x7F)] and p.dropped_messages == 1


def test_garbage_then_valid_message_is_recovered():
    msgs, p = parse([0x3C, 0x40, 0x7F, 0x12, 0xF4, 0xF7, 0x00, 0x90, 0x3C, 0x40, 0x3E, 0x41])
    assert msgs == [(0x90, 0x3C, 0x40), (0x90, 0x3E, 0x41)]
    assert p.dropped_bytes == 7


def test_undefined_f4_f5_change_nothing():
    msgs, p = parse([0x90, 0x3C, 0xF4, 0x40, 0xF5, 0x3E, 0x40])  # inside and between
    assert msgs == [(0x90, 0x3C, 0x40), (0x90, 0x3E, 0x40)]
    msgs, _ = parse([0xF0, 0x01, 0xF5, 0x02, 0xF7])
    assert msgs == [(0xF0, 0x01, 0x02, 0xF7)]
    assert p.dropped_bytes == 2 and p.dropped_messages == 0


def test_stray_f7_cancels_running_status():
    msgs, p = parse([0x90, 0x3C, 0x40, 0xF7, 0x3E, 0x40, 0x90, 0x3E, 0x40])
    assert msgs == [(0x90, 0x3C, 0x40), (0x90, 0x3E, 0x40)]
    assert p.dropped_bytes == 3  # F7 and the two orphans


@pytest.mark.parametrize(
    "common",
    [(0xF1, 0x23), (0xF2, 0x10, 0x20), (0xF3, 0x05), (0xF6,)],
    ids=["quarter-frame", "song-position", "song-select", "tune-request"],
)
def test_system_common_cancels_running_status(common):
    msgs, p = parse([0x90, 0x3C, 0x40, *common, 0x3E, 0x40])
    assert msgs == [(0x90, 0x3C, 0x40), common]
    assert p.dropped_bytes == 2


def test_every_byte_pair_from_every_state_never_raises():
    # Put the parser in each interesting state, then feed every pair of bytes.
    preludes = [b"", b"\x90", b"\x90\x3c", b"\x90\x3c\x40", b"\xf0\x01", b"\xf2\x01", b"\xf7"]
    for prelude in preludes:
        for a in range(256):
            for b in range(0, 256, 3):
                p = MidiByteParser(max_sysex=3)
                p.feed(prelude)
                p.feed(bytes((a, b)))


def test_iterables_accepted_and_bad_values_rejected_before_any_change():
    p = MidiByteParser()
    assert p.feed([0x90, 0x3C]) == []
    with pytest.raises(ValueError):
        p.feed([0x40, 300])
    assert p.feed(iter([0x40])) == [(0x90, 0x3C, 0x40)]


def test_chunking_does_not_change_the_result():
    rng = random.Random(11)
    for _ in range(2000):
        data = din_fuzz.random_stream(rng, 96)
        whole = MidiByteParser().feed(data)
        p = MidiByteParser()
        bytewise = [m for b in data for m in p.feed(bytes((b,)))]
        assert bytewise == whole, data.hex(" ")


# ==================================================================== encoder


def test_encoder_three_note_ons_take_7_bytes():
    notes = [(0x90, 0x3C, 0x40), (0x90, 0x40, 0x40), (0x90, 0x43, 0x40)]
    wire = encode_messages(notes)
    assert wire == bytes([0x90, 0x3C, 0x40, 0x40, 0x40, 0x43, 0x40])
    assert len(wire) == 7 < len(encode_messages(notes, running_status=False)) == 9
    assert MidiByteParser().feed(wire) == notes


def test_encoder_running_status_rules():
    enc = RunningStatusEncoder()
    assert enc.encode((0x90, 0x3C, 0x40)) == b"\x90\x3c\x40"
    assert enc.encode((0xF8,)) == b"\xf8"  # realtime keeps running status
    assert enc.encode((0x90, 0x3E, 0x40)) == b"\x3e\x40"
    assert enc.encode((0xB0, 0x40, 0x7F)) == b"\xb0\x40\x7f"  # new status
    assert enc.encode((0xF0, 0x01, 0xF7)) == b"\xf0\x01\xf7"  # SysEx clears it
    assert enc.encode((0xB0, 0x40, 0x00)) == b"\xb0\x40\x00"
    assert enc.encode((0xF1, 0x10)) == b"\xf1\x10"  # system common clears it
    assert enc.encode((0xB0, 0x40, 0x00)) == b"\xb0\x40\x00"
    enc.reset()
    assert enc.encode((0xB0, 0x40, 0x7F)) == b"\xb0\x40\x7f"


@pytest.mark.parametrize(
    "bad",
    [(), (0x3C, 0x40), (0x90, 0x3C), (0x90, 0x3C, 0x80), (0xF0, 0x01), (0xF0, 0x90, 0xF7), (0xF4,), (0xF9,)],
)
def test_encoder_rejects_malformed_messages(bad):
    with pytest.raises(ValueError):
        RunningStatusEncoder().encode(bad)


def test_encoder_round_trip_random_lists():
    rng = random.Random(3)
    for _ in range(2000):
        msgs = din_fuzz.random_messages(rng, rng.randint(1, 30))
        wire = encode_messages(msgs)
        assert len(wire) <= len(encode_messages(msgs, running_status=False))
        assert MidiByteParser().feed(wire) == msgs


# ==================================================================== differential with mido


def _assert_clean(summary: din_fuzz.FuzzSummary) -> None:
    assert summary.failures == 0, "\n".join(summary.examples)


def test_differential_random_streams_vs_mido():
    # 10^5 streams of 1..64 bytes: random, MIDI-like and mangled valid encodings.
    summary = din_fuzz.run_random_streams(100_000, seed=20240601, max_len=64)
    assert summary.streams == 100_000 and summary.messages > 100_000
    _assert_clean(summary)


def test_differential_structured_messy_wire_vs_mido():
    summary = din_fuzz.run_structured(10_000, seed=7)
    _assert_clean(summary)


def test_subsequence_helper():
    assert din_fuzz.is_ordered_subsequence([1, 3], [1, 2, 3])
    assert not din_fuzz.is_ordered_subsequence([3, 1], [1, 2, 3])
    assert not din_fuzz.is_ordered_subsequence([1, 1], [1, 2])


def test_checks_catch_a_wrong_parse():
    # The checker itself must be able to fail: mido sees this note, a parser that
    # dropped it would not be a superset.
    assert din_fuzz.check_stream(b"\x90\x3c\x40")[1] is None
    assert not din_fuzz.is_ordered_subsequence([(0x90, 0x3C, 0x40)], [])


def test_fuzz_cli_prints_json_summary(capsys):
    assert din_fuzz.main(["--streams", "400", "--seed", "3", "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["streams"] == 400 and out["failures"] == 0 and out["bytes"] > 0


@pytest.mark.slow
def test_long_fuzz():
    summary = din_fuzz.fuzz(1_000_000, seed=1)
    _assert_clean(summary)


# ==================================================================== DinPort over a pty


@pytest.fixture
def pty():
    """(master fd, slave path). The test writes/reads the master like the far end of a cable."""
    master, slave = os.openpty()
    fds = {"master": master}
    yield fds, os.ttyname(slave)
    for fd in (fds.get("master"), slave):
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def _read_master(fd: int, n: int, timeout: float = 2.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        buf += os.read(fd, n - len(buf))
    return buf


def _collect(q: queue.Queue, n: int, timeout: float = 2.0) -> list:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        try:
            out.append(q.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
    return out


def test_pty_receive_running_status_clock_and_timestamps(pty):
    fds, path = pty
    q: queue.Queue = queue.Queue()
    with DinPort(path) as port:
        if sys.platform.startswith("linux"):
            assert port.baudrate == 31250  # Linux ptys take the custom MIDI rate
        port.set_receiver(lambda msg, t: q.put((msg, t)))
        t0 = now_ns()
        # Note-on, running status with a clock byte inside, then 0x0A/0x0D/0x11/0x13 as data
        # (a tty not in raw mode would translate or swallow them).
        os.write(fds["master"], bytes([0x90, 0x3C, 0x40, 0x3E, 0xF8, 0x40, 0xB0, 0x11, 0x13, 0x0A, 0x0D]))
        first = _collect(q, 5)
        time.sleep(0.02)
        os.write(fds["master"], bytes([0x80, 0x3C, 0x00, 0x3E, 0x00]))
        second = _collect(q, 2)
        t1 = now_ns()
    assert [m for m, _ in first] == [
        (0x90, 0x3C, 0x40), CLOCK, (0x90, 0x3E, 0x40), (0xB0, 0x11, 0x13), (0xB0, 0x0A, 0x0D)]
    assert [m for m, _ in second] == [(0x80, 0x3C, 0x00), (0x80, 0x3E, 0x00)]
    stamps = [t for _, t in first + second]
    assert stamps == sorted(stamps) and t0 <= stamps[0] and stamps[-1] <= t1
    assert min(t for _, t in second) - max(t for _, t in first) >= 10_000_000  # the 20 ms gap
    assert port.counters() == {"dropped_bytes": 0, "dropped_messages": 0, "sysex_overflows": 0,
                               "receiver_errors": 0}


def test_pty_send_uses_running_status(pty):
    fds, path = pty
    with DinPort(path) as port:
        for msg in [(0x90, 0x3C, 0x40), (0x90, 0x40, 0x40), (0x90, 0x43, 0x40), (0xF8,),
                    (0x90, 0x0A, 0x0D), (0xB0, 0x40, 0x7F), (0x90, 0x3C, 0x00)]:
            port.send(msg)
        expected = bytes([0x90, 0x3C, 0x40, 0x40, 0x40, 0x43, 0x40, 0xF8, 0x0A, 0x0D,
                          0xB0, 0x40, 0x7F, 0x90, 0x3C, 0x00])
        assert _read_master(fds["master"], len(expected)) == expected
        assert not select.select([fds["master"]], [], [], 0.05)[0]  # nothing more


def test_pty_loopback_sysex_and_all_data_values(pty):
    fds, path = pty
    q: queue.Queue = queue.Queue()
    sysex = (0xF0, *range(128), 0xF7)
    with DinPort(path) as port:
        port.set_receiver(lambda msg, t: q.put(msg))
        port.send(sysex)
        wire = _read_master(fds["master"], len(sysex))
        os.write(fds["master"], wire)  # the far end echoes it back
        assert _collect(q, 1) == [sysex]


def test_missing_device_is_a_clear_port_error():
    with pytest.raises(PortError, match=r"DIN device /dev/ttyNOPE-sideman not found"):
        DinPort("/dev/ttyNOPE-sideman")


def test_not_a_serial_device_is_a_clear_port_error():
    with pytest.raises(PortError, match="not a serial port"):
        DinPort("/dev/null")


def test_second_open_of_same_device_says_busy(pty):
    _, path = pty
    with DinPort(path):
        with pytest.raises(PortError, match="busy"):
            DinPort(path)


def test_error_texts_tell_the_musician_what_to_do():
    denied = serial.SerialException(errno.EACCES, "could not open port /dev/ttyTHS1: [Errno 13] Permission denied")
    assert "dialout" in open_error_text("/dev/ttyTHS1", denied)
    baud = _baud_rejected_text("/dev/ttyTHS1", 31250)
    assert "31250" in baud and "USB-MIDI" in baud and "Jetson" in baud
    for text in (open_error_text("/dev/ttyTHS1", denied), baud):
        assert "\n" not in text


def test_close_stops_reader_promptly(pty):
    _, path = pty
    port = DinPort(path)
    assert port.reader_alive and port.is_open
    t = time.monotonic()
    port.close()
    assert time.monotonic() - t < 0.5
    assert not port.reader_alive and not port.is_open
    port.close()  # twice is fine
    with pytest.raises(PortError):
        port.send((0x90, 0x3C, 0x40))
    with DinPort(path):  # and the device is free again
        pass


def test_device_vanishing_marks_port_lost_without_crashing(pty, caplog):
    fds, path = pty
    caplog.set_level(logging.WARNING, logger="sideman.din")
    port = DinPort(path)
    try:
        os.close(fds.pop("master"))  # the far end goes away: reads on the slave fail
        deadline = time.monotonic() + 2.0
        while not port.lost and time.monotonic() < deadline:
            time.sleep(0.01)
        assert port.lost and not port.is_open
        port._reader.join(1.0)
        assert not port.reader_alive
        lines = [r for r in caplog.records if r.name == "sideman.din"]
        assert len(lines) == 1 and "lost" in lines[0].getMessage()
        with pytest.raises(PortError, match="disconnected"):
            port.send((0x90, 0x3C, 0x40))
    finally:
        port.close()


def test_receiver_exception_does_not_stop_input(pty, caplog):
    fds, path = pty
    got = []

    def receiver(msg, t):
        if not got:
            got.append(None)
            raise RuntimeError("bug downstream")
        got.append(msg)

    with caplog.at_level(logging.ERROR, logger="sideman.din"), DinPort(path) as port:
        port.set_receiver(receiver)
        os.write(fds["master"], bytes([0x90, 0x3C, 0x40]))
        time.sleep(0.05)
        os.write(fds["master"], bytes([0x3E, 0x40]))
        deadline = time.monotonic() + 2.0
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [None, (0x90, 0x3E, 0x40)]
        assert port.counters()["receiver_errors"] == 1


def test_set_receiver_none_keeps_parsing(pty):
    fds, path = pty
    q: queue.Queue = queue.Queue()
    with DinPort(path) as port:
        os.write(fds["master"], bytes([0x90, 0x3C, 0x40]))  # nobody listening
        time.sleep(0.1)
        port.set_receiver(lambda msg, t: q.put(msg))
        os.write(fds["master"], bytes([0x3E, 0x40]))  # running status still known
        assert _collect(q, 1) == [(0x90, 0x3E, 0x40)]

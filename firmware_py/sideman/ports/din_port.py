"""A 5-pin DIN MIDI port on a serial device (Jetson/Pi UART, USB-serial, or a pty in tests).

One `DinPort` is both a MidiInput and a MidiOutput (see `sideman.ports.contract`): a
daemon reader thread parses what arrives and hands each message to the receiver; `send`
writes with running status. Errors are `PortError`s with one line for the musician.
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import sys
import termios
import threading
from typing import Sequence

import serial

from ..clock import now_ns
from .contract import PortError, Receiver
from .din import MidiByteParser, RunningStatusEncoder

log = logging.getLogger("sideman.din")

MIDI_BAUD = 31250
# The reader blocks at most this long, so close() is prompt even if cancel_read fails.
_READ_TIMEOUT_S = 0.05
# A healthy DIN output drains 3125 bytes/s; a write stuck this long means a stalled device.
_WRITE_TIMEOUT_S = 1.0
# MIDI 1.0 allows +/-1% on the line rate; a driver that rounds further has not set 31250.
_BAUD_TOLERANCE = 0.02
# Baud used on a pseudo-terminal when the kernel refuses the custom one (see _open_serial).
_PTY_FALLBACK_BAUD = 38400

_TCGETS2 = 0x802C542A  # Linux asm-generic ioctl numbers, as pyserial uses them
_NOT_FOUND_ERRNOS = {errno.ENOENT, errno.ENODEV, errno.ENXIO}
_NO_PERMISSION_ERRNOS = {errno.EACCES, errno.EPERM}
_BUSY_ERRNOS = {errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK}


class DinPort:
    """MIDI in and out over one serial device at 31250 baud, 8N1."""

    def __init__(self, device: str, baudrate: int = MIDI_BAUD, name: str | None = None) -> None:
        self.device = device
        self.name = name or f"DIN {device}"
        self.lost = False  # the device went away while open (unplugged USB bridge)
        self._closed = False
        self._receiver: Receiver | None = None
        self._receiver_errors = 0
        self.parser = MidiByteParser()  # its counters tell how much garbage came in
        self._encoder = RunningStatusEncoder()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._serial = _open_serial(device, baudrate)
        self.baudrate = self._serial.baudrate  # differs from the request only on a pty fallback
        self._reader = threading.Thread(
            target=self._read_loop, name=f"sideman-din-in {device}", daemon=True
        )
        self._reader.start()

    # ---------------------------------------------------------------- contract

    def set_receiver(self, receiver: Receiver | None) -> None:
        self._receiver = receiver  # one attribute write: atomic, the reader picks it up

    def send(self, message: Sequence[int]) -> None:
        with self._write_lock:
            if self._closed:
                raise PortError(f"{self.name} is closed")
            if self.lost:
                raise PortError(f"DIN device {self.device} was disconnected: reconnect it and restart")
            data = self._encoder.encode(message)  # ValueError for a malformed message: a bug
            try:
                self._serial.write(data)
            except serial.SerialTimeoutException as exc:
                # Part of the message may be on the wire: send the next status in full.
                self._encoder.reset()
                raise PortError(f"DIN output {self.device} is stalled: check the cable and the device") from exc
            except (serial.SerialException, OSError) as exc:
                self._encoder.reset()
                self._mark_lost(exc)
                raise PortError(f"DIN device {self.device} was disconnected: reconnect it and restart") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        try:
            self._serial.cancel_read()  # wakes the reader's select() at once
        except Exception:
            pass  # already closed after a loss; the read timeout covers the rest
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=1.0)
        with self._write_lock:
            self._serial.close()

    # ---------------------------------------------------------------- extras

    @property
    def is_open(self) -> bool:
        return not self._closed and not self.lost

    @property
    def reader_alive(self) -> bool:
        return self._reader.is_alive()

    def counters(self) -> dict[str, int]:
        """Garbage seen on the input so far, for a status page or a log line."""
        p = self.parser
        return {
            "dropped_bytes": p.dropped_bytes,
            "dropped_messages": p.dropped_messages,
            "sysex_overflows": p.sysex_overflows,
            "receiver_errors": self._receiver_errors,
        }

    def __enter__(self) -> "DinPort":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "lost" if self.lost else "open"
        return f"DinPort({self.device!r}, baudrate={self.baudrate}, {state})"

    # ---------------------------------------------------------------- reader thread

    def _read_loop(self) -> None:
        ser = self._serial
        stop = self._stop
        feed = self.parser.feed
        while not stop.is_set():
            try:
                # read(1) waits for the first byte (or the timeout), then take whatever
                # else is already buffered: read(n) would wait for all n bytes.
                chunk = ser.read(1)
                if chunk:
                    waiting = ser.in_waiting
                    if waiting:
                        chunk += ser.read(waiting)
            except Exception as exc:  # pyserial raises SerialException, OSError, or
                # TypeError when the fd vanished under it; any of them ends the reader
                if not stop.is_set():
                    self._mark_lost(exc)
                break
            if not chunk:
                continue
            for message in feed(chunk):
                receiver = self._receiver
                if receiver is None:
                    continue
                try:
                    receiver(message, now_ns())
                except Exception:
                    # A bug downstream must not silence MIDI input: log the first, count the rest.
                    self._receiver_errors += 1
                    if self._receiver_errors == 1:
                        log.exception("receiver of %s raised (further errors only counted)", self.name)
        if self.lost:
            # Let go of the device node at once, so a replugged USB bridge comes back
            # under the same name instead of the next free one.
            with self._write_lock:
                ser.close()

    def _mark_lost(self, exc: BaseException) -> None:
        if self.lost:
            return
        self.lost = True
        log.warning("DIN device %s lost (unplugged?): %s", self.device, _one_line(exc))
        self._stop.set()
        try:
            self._serial.cancel_read()
        except Exception:
            pass


# -------------------------------------------------------------------- opening


def _open_serial(device: str, baudrate: int) -> serial.Serial:
    if not os.path.exists(device):
        raise PortError(f"DIN device {device} not found: check the cable/adapter and the device name")
    ser = serial.Serial()  # not opened yet, so open() errors can be told apart
    try:
        ser.port = device
        ser.baudrate = baudrate
    except (ValueError, serial.SerialException) as exc:
        raise PortError(f"DIN baud rate {baudrate!r} is not valid (MIDI uses {MIDI_BAUD})") from exc
    ser.bytesize = serial.EIGHTBITS
    ser.parity = serial.PARITY_NONE
    ser.stopbits = serial.STOPBITS_ONE
    ser.xonxoff = False  # 0x11/0x13 are ordinary MIDI data bytes
    ser.rtscts = False
    ser.timeout = _READ_TIMEOUT_S
    ser.write_timeout = _WRITE_TIMEOUT_S
    if os.name == "posix":
        ser.exclusive = True  # flock: a second program on the same cable gets "busy"
    try:
        _open(ser, device, baudrate)
    except ValueError as exc:
        # pyserial raises ValueError when the driver rejects the custom-baud ioctl
        # (TCSETS2 with BOTHER on Linux, IOSSIOSPEED on macOS).
        if not _is_pseudo_terminal(device):
            raise PortError(_baud_rejected_text(device, baudrate)) from exc
        # A pty has no wire, so its line speed changes nothing about the bytes. Linux
        # ptys accept 31250 (checked on 6.x: TCGETS2 reads back 31250), but some
        # kernels/OSes refuse non-standard rates there; rather than fail a test rig,
        # open at a standard rate and say so. Real UARTs never take this path.
        log.info("pty %s refused %d baud (%s); using %d, which makes no difference on a pty",
                 device, baudrate, _one_line(exc), _PTY_FALLBACK_BAUD)
        ser.baudrate = _PTY_FALLBACK_BAUD
        try:
            _open(ser, device, _PTY_FALLBACK_BAUD)
        except ValueError as exc2:
            raise PortError(f"pseudo-terminal {device} refused every baud rate: {_one_line(exc2)}") from exc2
        return ser
    actual = _line_speed(ser)
    if actual and abs(actual - baudrate) > baudrate * _BAUD_TOLERANCE:
        ser.close()
        raise PortError(_baud_rejected_text(device, baudrate, actual))
    return ser


def _open(ser: serial.Serial, device: str, baudrate: int) -> None:
    """ser.open(), with every error but a rejected baud turned into a PortError."""
    try:
        ser.open()
    except ValueError:
        raise
    except serial.SerialException as exc:
        raise PortError(open_error_text(device, exc)) from exc
    except (OSError, termios.error) as exc:
        raise PortError(open_error_text(device, exc)) from exc


def open_error_text(device: str, exc: BaseException) -> str:
    """The musician's line for an exception from opening `device`."""
    code = getattr(exc, "errno", None)
    if code is None and isinstance(exc, termios.error) and exc.args:
        code = exc.args[0]
    text = str(exc)
    if code in _NOT_FOUND_ERRNOS:
        return f"DIN device {device} not found: check the cable/adapter and the device name"
    if code in _NO_PERMISSION_ERRNOS:
        return (f"no permission to open DIN device {device}: add your user to the dialout group "
                f"(sudo usermod -aG dialout $USER), then log out and back in")
    if code in _BUSY_ERRNOS or "exclusively lock" in text:
        return (f"DIN device {device} is busy: another program has it open "
                f"(another sideman, a serial console, ModemManager); close it and try again")
    if code == errno.ENOTTY or "Could not configure port" in text:
        return f"{device} is not a serial port: pick the UART or USB-MIDI device instead"
    return f"cannot open DIN device {device}: {_one_line(exc)}"


def _baud_rejected_text(device: str, baudrate: int, actual: int | None = None) -> str:
    got = f" (driver set {actual})" if actual else ""
    return (f"DIN device {device} cannot run at {baudrate} baud{got}: some Jetson L4T UART "
            f"drivers refuse MIDI speed; use a class-compliant USB-MIDI (DIN) interface instead")


def _line_speed(ser: serial.Serial) -> int | None:
    """The output speed the driver reports (Linux termios2), or None if unknown.

    Catches drivers that accept the custom-baud ioctl but round to another rate.
    """
    if not sys.platform.startswith("linux"):
        return None
    buf = array.array("i", [0] * 64)
    try:
        fcntl.ioctl(ser.fd, _TCGETS2, buf)
    except OSError:
        return None
    # struct termios2: 4 flag words, c_line + 19 c_cc (5 words), c_ispeed, c_ospeed.
    return buf[10] or None


def _is_pseudo_terminal(device: str) -> bool:
    path = os.path.realpath(device)
    if path.startswith("/dev/pts/") or path.startswith("/dev/ttys"):
        return True
    try:
        major = os.major(os.stat(path).st_rdev)
    except OSError:
        return False
    return sys.platform.startswith("linux") and 136 <= major <= 143  # UNIX98 pty slaves


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

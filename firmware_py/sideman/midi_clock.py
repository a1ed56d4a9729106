"""MIDI clock: follow an incoming clock (tempo, start/stop) and optionally send our own."""

from __future__ import annotations

import logging
import statistics
import threading
from collections import deque

from sideman import messages as mm
from sideman.clock import NS_PER_S, now_ns

log = logging.getLogger("sideman.clock")

TICKS_PER_BEAT = 24


class ClockFollower:
    """Tempo and transport from incoming 0xF8 ticks and Start/Continue/Stop."""

    def __init__(self, window_ticks: int = TICKS_PER_BEAT * 2):
        self._tick_times: deque[int] = deque(maxlen=window_ticks + 1)
        self.playing = False
        self.ticks_since_start = 0
        self.last_tick_ns: int | None = None

    def feed(self, message, t_ns: int) -> bool:
        """Returns True when the message was clock/transport (consumed here)."""
        status = message[0]
        if status == mm.CLOCK:
            self._tick_times.append(t_ns)
            self.last_tick_ns = t_ns
            if self.playing:
                self.ticks_since_start += 1
            return True
        if status in (mm.START, mm.CONTINUE):
            self.playing = True
            if status == mm.START:
                self.ticks_since_start = 0
            return True
        if status == mm.STOP:
            self.playing = False
            return True
        return False

    def tempo_bpm(self, now: int | None = None) -> float | None:
        """Median tick interval over the last two beats; None without a live clock (2 s silence)."""
        if len(self._tick_times) < 3 or self.last_tick_ns is None:
            return None
        if (now if now is not None else now_ns()) - self.last_tick_ns > 2 * NS_PER_S:
            return None
        times = list(self._tick_times)
        interval = statistics.median(b - a for a, b in zip(times, times[1:]))
        return 60.0 * NS_PER_S / (interval * TICKS_PER_BEAT) if interval > 0 else None


    def last_beat_ns(self, now: int | None = None) -> int | None:
        """When the last beat (quarter note) fell, counted from Start; None when not playing."""
        bpm = self.tempo_bpm(now)
        if not self.playing or bpm is None or self.last_tick_ns is None:
            return None
        tick_ns = 60 * NS_PER_S / (bpm * TICKS_PER_BEAT)
        return int(self.last_tick_ns - (self.ticks_since_start % TICKS_PER_BEAT) * tick_ns)


class ClockGenerator:
    """Sends 24 ticks per beat at a set tempo, from absolute deadlines (no drift)."""

    def __init__(self, send, bpm: float = 120.0):
        self._send = send
        self.bpm = bpm
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._send((mm.START,))
        self._thread = threading.Thread(target=self._run, name="sideman-clock-out", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_tick = now_ns()
        while not self._stop.is_set():
            self._send((mm.CLOCK,))
            next_tick += int(60 * NS_PER_S / (self.bpm * TICKS_PER_BEAT))
            delay = (next_tick - now_ns()) / NS_PER_S
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_tick = now_ns()  # fell behind (suspend, overload): restart the grid, don't burst

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
            self._send((mm.STOP,))

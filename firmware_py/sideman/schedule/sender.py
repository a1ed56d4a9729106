"""The AI's timed path to the synth: a high-priority sender thread with a queue of timed sends.

Voices hand over events with the time they should sound; the sender plays them on the AI channel,
earlier by each output's latency compensation, and panics (every AI note off + CC123) on demand.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

from sideman import messages as mm
from sideman.clock import now_ns
from sideman.schedule.outputs import OutputFanout, OutputSlot
from sideman.schedule.shaping import SwingGrid, VelocityShape

log = logging.getLogger("sideman.schedule")

# The thread sleeps on a condition until this close to the next send, then polls: condition
# wake-ups on Linux land 50-100 µs late, the poll keeps the timing error in the microseconds.
SPIN_WINDOW_NS = 400_000


@dataclass(order=True)
class _TimedSend:
    due_ns: int
    seq: int
    message: tuple = field(compare=False)
    slot: OutputSlot | None = field(compare=False)  # None: the capture copy (what was played, when)
    scheduled_ns: int = field(compare=False, default=0)
    ahead: bool = field(compare=False, default=True)   # handed over before it was due


class Scheduler:
    def __init__(self, outputs: OutputFanout, ai_channel: int = 1,
                 velocity: VelocityShape = VelocityShape(), swing: SwingGrid | None = None,
                 on_played: Callable[[tuple, int], None] | None = None,
                 realtime_priority: int = 50):
        self.outputs = outputs
        self.ai_channel = ai_channel  # 0-based on the wire (channel 2 to a musician is 1)
        self.velocity = velocity
        self.swing = swing
        self.on_played = on_played
        self.realtime_priority = realtime_priority
        self.realtime = False  # whether the OS granted SCHED_FIFO
        # actual − scheduled send time, for messages handed over before they were due (the
        # scheduler's own precision), and for those due at once or already late when handed over
        # (an answer's first note decided this instant: the voice's reaction, not timing).
        self.timing_errors_ns: deque[int] = deque(maxlen=10_000)
        self.immediate_delays_ns: deque[int] = deque(maxlen=10_000)
        self.panics = 0
        self._queue: list[_TimedSend] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        # Held while a batch of due events is sent, so a panic can never slip in between a
        # note-on leaving the queue and reaching the output (it would be left sounding).
        self._send_lock = threading.Lock()
        self._running = False
        self._thread: threading.Thread | None = None

    # --- what voices call -------------------------------------------------------------------
    def play(self, t_ns: int, message: Sequence[int]) -> None:
        """Schedule one channel message for time t_ns on the AI channel."""
        message = mm.with_channel(message, self.ai_channel)
        if mm.is_note_on(message):
            message = (message[0], message[1], self.velocity(message[2]))
        now = now_ns()
        with self._cond:
            for slot in self.outputs.slots:
                due = t_ns - slot.latency_ns
                heapq.heappush(self._queue, _TimedSend(due, next(self._seq), message, slot, t_ns, due > now))
            heapq.heappush(self._queue, _TimedSend(t_ns, next(self._seq), message, None, t_ns))
            self._cond.notify()

    def play_note(self, t_ns: int, pitch: int, velocity: int, duration_ns: int) -> None:
        if self.swing is not None:
            t_ns = self.swing.quantise(t_ns)
        self.play(t_ns, mm.note_on(0, pitch, velocity))
        self.play(t_ns + duration_ns, mm.note_off(0, pitch))

    def pending(self) -> int:
        with self._cond:
            return sum(1 for item in self._queue if item.slot is None)

    def panic(self, reason: str = "panic") -> int:
        """Drop everything not yet played and turn off every AI note on every output (+ CC123)."""
        sent = self._drop_and_release(all_notes_off=True)
        self.panics += 1
        log.info("panic (%s): %d AI note(s) turned off", reason, sent)
        return sent

    def hush(self) -> int:
        """The musical stop (the player barged in, the mode changed): drop what is planned and end
        the AI notes now sounding with their own note-offs. No CC123, no panic count."""
        sent = self._drop_and_release(all_notes_off=False)
        log.debug("hush: %d AI note(s) ended", sent)
        return sent

    def _drop_and_release(self, all_notes_off: bool) -> int:
        locked = self._send_lock.acquire(timeout=1.0)  # a wedged sender must not block a panic
        try:
            with self._cond:
                self._queue.clear()
                self._cond.notify()
            sent = 0
            for slot in self.outputs.slots:
                sent += slot.release(channels=[self.ai_channel],
                                     all_notes_off=[self.ai_channel] if all_notes_off else ())
        finally:
            if locked:
                self._send_lock.release()
        return sent

    # --- the thread ---------------------------------------------------------------------------
    @property
    def died(self) -> bool:
        """Started, and its thread is no longer running (the service's health check)."""
        return self._thread is not None and not self._thread.is_alive()

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name="sideman-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then panic: nothing scheduled will sound and nothing is left on."""
        with self._cond:
            self._running = False
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.panic("stop")

    def _take_realtime_priority(self) -> None:
        try:
            # pid 0 = the calling thread on Linux.
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.realtime_priority))
            self.realtime = True
        except (PermissionError, AttributeError, OSError):
            log.info("sender thread runs without real-time priority (grant LimitRTPRIO to get it)")

    def _run(self) -> None:
        self._take_realtime_priority()
        while True:
            with self._cond:
                while self._running and (not self._queue or self._queue[0].due_ns - now_ns() > SPIN_WINDOW_NS):
                    timeout = None if not self._queue else (self._queue[0].due_ns - now_ns() - SPIN_WINDOW_NS) / 1e9
                    self._cond.wait(timeout)
                if not self._running:
                    return
                due = self._queue[0].due_ns
            while now_ns() < due:  # the last few hundred microseconds
                time.sleep(0)
            now = now_ns()
            with self._send_lock:
                with self._cond:
                    ready = []
                    while self._queue and self._queue[0].due_ns <= now:
                        ready.append(heapq.heappop(self._queue))
                for item in ready:
                    self._send(item)

    def _send(self, item: _TimedSend) -> None:
        if item.slot is None:
            if self.on_played is not None:
                self.on_played(item.message, item.scheduled_ns)
            return
        item.slot.send(item.message)
        (self.timing_errors_ns if item.ahead else self.immediate_delays_ns).append(now_ns() - item.due_ns)

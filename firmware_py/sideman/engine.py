"""The engine thread: takes the human's events off the input thread's hands and asks the voice
what to play. It never sits on the thru path; when it falls behind, it sheds the player's notes it
is too late for (and counts them) rather than holding up the music, and any exception in a voice
ends in a panic."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from sideman import messages as mm
from sideman.clock import NS_PER_S, now_ns
from sideman.model.voice import HUSH, Voice
from sideman.schedule.sender import Scheduler

log = logging.getLogger("sideman.engine")

TICK_S = 0.005
# A note heard this late is shed: the voice answers what is being played now, not a backlog (a
# flood of 2,000 note-ons/s would otherwise keep a transformer, ~2 ms a note, busy for seconds after).
MAX_LAG_S = 0.25
_COMMAND = object()  # marks a call_soon command in the inbox (it takes the timestamp's place)


class Engine:
    def __init__(self, voice: Voice, scheduler: Scheduler, queue_size: int = 4096):
        self.voice = voice
        self.scheduler = scheduler
        self._inbox: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0      # the inbox was full: events the voice never got
        self.shed = 0         # note-ons (and their note-offs) skipped because they came too late
        self._shed_keys: set[tuple[int, int]] = set()   # (channel, pitch) whose note-on was shed
        self.voice_errors = 0
        self.last_error: str | None = None
        # Called with now_ns() on every pass of the loop: the systemd watchdog is fed from here, so
        # an engine that stalls stops feeding it.
        self.on_loop: Callable[[int], None] | None = None
        self.loops = 0
        # Muted (the panel's long panic press): the voice still hears everything and keeps its
        # place, but nothing it plays is scheduled.
        self.muted = False

    def hear(self, message, t_ns: int) -> None:
        """Called on the input thread: never blocks."""
        try:
            self._inbox.put_nowait((message, t_ns))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("engine behind: %d input events not heard by the voice (thru unaffected)", self.dropped)

    def call_soon(self, command: Callable[[], object]) -> None:
        """Run `command` on the engine thread (any thread may call this), after the player's events
        already waiting: "keep that phrase" pressed right after a phrase keeps all of it. If it
        returns timed messages (or HUSH) they are scheduled like a voice's."""
        try:
            self._inbox.put((_COMMAND, command), timeout=0.5)
        except queue.Full:
            log.error("engine stalled: a panel command was dropped")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sideman-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.loops += 1
            if self.on_loop is not None:
                self.on_loop(now_ns())
            try:
                message, t_ns = self._inbox.get(timeout=TICK_S)
                if message is _COMMAND:
                    self._ask(lambda command=t_ns: command() or ())
                elif self._too_late(message, t_ns):
                    continue
                else:
                    self._ask(self.voice.hear, message, t_ns)
            except queue.Empty:
                self._ask(self.voice.tick, now_ns())

    def _too_late(self, message, t_ns: int) -> bool:
        """Shed a note-on heard more than MAX_LAG_S ago, and later the note-off of every note shed,
        so the voice's idea of which keys are down stays true. Everything else is heard."""
        if message[0] >= 0xF0 or len(message) < 3:
            return False
        key = (message[0] & 0x0F, message[1])
        if mm.is_note_on(message):
            if now_ns() - t_ns <= MAX_LAG_S * NS_PER_S:
                self._shed_keys.discard(key)   # this key's next note-off is this note's
                return False
            self._shed_keys.add(key)
            self.shed += 1
            if self.shed == 1 or self.shed % 1000 == 0:
                log.warning("engine behind: %d notes too late for the voice (thru unaffected)", self.shed)
            return True
        if mm.is_note_off(message) and key in self._shed_keys:
            self._shed_keys.discard(key)
            return True
        return False

    def _ask(self, method, *args) -> None:
        try:
            for item in method(*args):
                if item is HUSH:
                    self.scheduler.hush()
                elif not self.muted:
                    self.scheduler.play(*item)
        except Exception as exc:
            # Whatever the voice had started must not hang: turn every AI note off, keep listening.
            self.voice_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("voice %s failed; AI notes silenced", self.voice.name)
            self.scheduler.panic("voice error")

"""`sideman panel --sim`: the OLED drawn in the terminal (luma's dummy device, the same screens as
the box) and the keyboard as the four knobs and two buttons.

    knob:        BLEND  MODE  ADV  DENS
    turn up:       q      w     e    r      (Shift: turn with the knob pushed = second function)
    turn down:     a      s     d    f
    push:          z      x     c    v
    buttons:     p panic (P: hold = mute)   k keep phrase (K: hold = save preset)     Ctrl-C quits
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty

from sideman.panel.events import Click, Press, Turn

KEYS = {}
for _encoder, (_up, _down, _push) in enumerate(("qaz", "wsx", "edc", "rfv")):
    KEYS[_up] = Turn(_encoder, 1)
    KEYS[_down] = Turn(_encoder, -1)
    KEYS[_up.upper()] = Turn(_encoder, 1, held=True)
    KEYS[_down.upper()] = Turn(_encoder, -1, held=True)
    KEYS[_push] = Click(_encoder)
KEYS.update({"p": Press("panic"), "P": Press("panic", long=True),
             "k": Press("keep"), "K": Press("keep", long=True)})

HELP = ("keys  q/a w/s e/r d/f: turn BLEND MODE ADV DENS (Shift: 2nd function)  z x c v: push\n"
        "      p: panic  P: mute  k: keep phrase  K: save preset  Ctrl-C: quit")


class TerminalKeys:
    """Reads single keys from a terminal (cbreak mode, so Ctrl-C still stops the box) and posts
    the panel event each one stands for."""

    def __init__(self, post, stream=None):
        self.post = post
        self.stream = stream or sys.stdin
        self._saved = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        fd = self.stream.fileno()
        if os.isatty(fd):
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        self._thread = threading.Thread(target=self._run, args=(fd,), name="sideman-keys", daemon=True)
        self._thread.start()

    def poll(self, now: float) -> None:
        """The panel loop calls this like the GPIO driver's; keys arrive on their own thread."""

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        if self._saved is not None:
            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)

    def _run(self, fd: int) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(fd, 64)
            if not data:
                return
            for char in data.decode(errors="ignore"):
                event = KEYS.get(char)
                if event is not None:
                    self.post(event)


class TerminalScreen:
    """A Display whose every redraw is also printed: the OLED as half-block characters, then one
    line of the values in words (readable, and what tests look for)."""

    def __init__(self, display, out=None, describe=None):
        self.display = display
        self.out = out or sys.stdout
        self.describe = describe or (lambda view: "")

    def show(self, view) -> bool:
        from sideman.panel.display import to_terminal

        if not self.display.show(view):
            return False
        text = to_terminal(self.display.image())
        self.out.write("\x1b[H\x1b[J" + text + "\n" + self.describe(view) + "\n" + HELP + "\n")
        self.out.flush()
        return True

    def close(self) -> None:
        self.display.close()

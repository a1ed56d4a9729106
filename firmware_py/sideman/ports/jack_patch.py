"""Patched thru on JACK: the player's keyboard is connected straight to the synth by JACK itself,
and the box listens beside it.

Why: on the box's own thru path each note waits for its input thread to get the interpreter and a
CPU. While the transformer answers, about 1-2 % of notes missed their JACK cycle and reached the
synth one period (1.3 ms) late (`sideman-bench thru --answering`); a voice that held the
interpreter for seconds would hold the player's notes for seconds. A JACK connection passes every
note in the cycle it was played, whatever Python is doing.

How: a thread looks at the box's ports every POLL_S. Every port connected *to* one of the box's
MIDI inputs (a keyboard) gets connected to every port the box's MIDI outputs are connected to (a
synth). The connections it made are its own and it removes them when they are no longer wanted or
the box stops; it never touches anyone else's. While every such pair is connected the thru is
`patched`: the box's own thru skips its JACK outputs (it still keeps their ledger of sounding
notes, so panic and stop still end the player's held notes) and still plays into the outputs that
are not JACK ports (the built-in piano, DIN).

Connect, then say patched; say unpatched, then disconnect: a change can double a note for a moment,
never drop one. The one gap: a keyboard (or synth) connected by hand to the box's virtual ports is
heard (fed) by the box at once, but the player's notes reach that synth only once the next look
patches it (within POLL_S). Ports the box connects itself (hot-plug) call `invalidate()` first,
so they have no gap.

No Python runs on JACK's threads here: the client has no callbacks (see rtmidi_ports.InputPoller
for the deadlock that avoids), and JACK-Client releases the interpreter in every JACK call.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Callable

log = logging.getLogger("sideman.patch")

POLL_S = 0.02
# The box's own MIDI ports, as rtmidi names its JACK clients (JACK appends -01, -02 to a taken name).
BOX_INPUT = re.compile(r"^sideman(-in)?(-\d+)?:")
BOX_OUTPUT = re.compile(r"^sideman-out(-\d+)?:")
OWN_PREFIX = "sideman"


class JackPatchThru:
    def __init__(self, may_patch: Callable[[], bool] = lambda: True, poll_s: float = POLL_S,
                 client_name: str = "sideman-patch"):
        import jack   # JACK-Client; only the JACK backend needs it

        self._jack = jack
        self.client = jack.Client(client_name, no_start_server=True)
        # False while the box must filter the player's messages (a MIDI-learned CC map, MIDI learn):
        # then nothing is patched and every message goes through the box.
        self.may_patch = may_patch
        self.poll_s = poll_s
        self.patched = False
        self.pairs: set[tuple[str, str]] = set()    # (keyboard, synth) pairs wanted at the last look
        self._made: set[tuple[str, str]] = set()    # the connections this patch made
        self.errors = 0
        self._changes = 0   # invalidate() calls: a look that began before one must not say patched
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "JackPatchThru":
        self.reconcile()
        self._thread = threading.Thread(target=self._run, name="sideman-patch", daemon=True)
        self._thread.start()
        return self

    def invalidate(self) -> None:
        """The box's ports are about to change: its own thru plays everything until the next look."""
        self._changes += 1
        self.patched = False

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.reconcile()

    def wanted_pairs(self) -> set[tuple[str, str]]:
        ports = self.client.get_ports(is_midi=True)
        inputs = [p for p in ports if p.is_input and BOX_INPUT.match(p.name)]
        outputs = [p for p in ports if p.is_output and BOX_OUTPUT.match(p.name)]
        keyboards = {q.name for p in inputs for q in self.client.get_all_connections(p)
                     if not q.name.startswith(OWN_PREFIX)}
        synths = {q.name for p in outputs for q in self.client.get_all_connections(p)
                  if not q.name.startswith(OWN_PREFIX)}
        return {(k, s) for k in keyboards for s in synths}

    def reconcile(self) -> None:
        changes = self._changes
        try:
            if not self.may_patch():
                self.patched = False
                for pair in sorted(self._made):
                    self._disconnect(pair)
                self.pairs = set()
                return
            wanted = self.wanted_pairs()
            connected = {(k, s) for k in {k for k, _ in wanted}
                         for s in (q.name for q in self.client.get_all_connections(k)) if (k, s) in wanted}
            missing = wanted - connected
            if missing:
                self.patched = False   # the box's thru covers them while they are connected
                for keyboard, synth in sorted(missing):
                    self.client.connect(keyboard, synth)
                    self._made.add((keyboard, synth))
                    log.info("thru patched: %s -> %s", keyboard, synth)
            for pair in sorted(self._made - wanted):
                self._disconnect(pair)
            self.pairs = wanted
            self.patched = changes == self._changes
        except self._jack.JackError as exc:
            self.patched = False
            if self._stop.is_set():
                return   # the box is stopping and its ports are going
            self.errors += 1
            if self.errors == 1:
                log.warning("patched thru: %s; the box passes your notes itself", exc)

    def _disconnect(self, pair: tuple[str, str]) -> None:
        self._made.discard(pair)
        try:
            self.client.disconnect(*pair)
        except self._jack.JackError:
            pass   # one end has gone, and the connection with it

    def stop(self) -> None:
        """Unpatch (the box's own thru takes over for whatever it still plays), disconnect what
        this patch made, close the client. Idempotent."""
        self.patched = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self.patched = False   # a last look may have said patched while the thread was stopping
        for pair in sorted(self._made):
            self._disconnect(pair)
        if self.client is not None:
            try:
                self.client.close()
            except self._jack.JackError:
                pass
            self.client = None

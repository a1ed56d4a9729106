"""Controls by MIDI: a CC map (any control, or the mode, on a CC number), MIDI learn (the next CC
moved takes the control being learned) and Program Change to recall presets.

It runs on the input thread, right where messages arrive, so it only looks things up and hands
work on; mapped CCs are the box's and are not passed to the synth, Program Changes are (the
player may be changing the synth's sound too)."""

from __future__ import annotations

import threading
from typing import Callable

from sideman import messages as mm
from sideman.controls import BY_NAME
from sideman.panel.settings import CC_TARGETS_EXTRA, RESERVED_CCS
from sideman.play.modes import MODE_NAMES


def cc_to_value(target: str, value: int):
    """A CC value 0..127 to the target's range (a mode: 128 values shared among the modes)."""
    if target == "mode":
        return MODE_NAMES[min(len(MODE_NAMES) - 1, value * len(MODE_NAMES) // 128)]
    control = BY_NAME[target]
    return control.clamp(control.low + (control.high - control.low) * value / 127)


class MidiControlMap:
    def __init__(self, cc_map: dict[int, str] | None = None,
                 on_change: Callable[[str, object], None] = lambda target, value: None,
                 on_program: Callable[[int, int], None] = lambda channel, program: None,
                 on_learned: Callable[[int, str], None] = lambda cc, target: None,
                 also_reserved: Callable[[int], bool] = lambda cc: False):
        self.cc_map: dict[int, str] = dict(cc_map or {})
        self.on_change = on_change      # (control name or "mode", new value)
        self.on_program = on_program
        self.on_learned = on_learned
        self.also_reserved = also_reserved  # cc -> True for the keep CC, which the session reads itself
        self.learning: str | None = None
        self._lock = threading.Lock()   # learn() comes from the panel thread

    def learn(self, target: str) -> None:
        if target not in BY_NAME and target not in CC_TARGETS_EXTRA:
            raise ValueError(f"cannot learn unknown control {target!r}")
        with self._lock:
            self.learning = target

    def cancel_learn(self) -> None:
        with self._lock:
            self.learning = None

    def mapping(self) -> dict[int, str]:
        """A copy of the CC map, safe to read from another thread."""
        with self._lock:
            return dict(self.cc_map)

    def passes_everything(self) -> bool:
        """No CC is the box's (none mapped, none being learned): every message is the synth's."""
        return not self.cc_map and self.learning is None

    def forget(self, cc: int | None = None) -> None:
        """Forget one CC's mapping, or all of them."""
        with self._lock:
            if cc is None:
                self.cc_map.clear()
            else:
                self.cc_map.pop(cc, None)

    def handle(self, message: tuple) -> bool:
        """Look at one incoming message; True when it was the box's (do not pass it on)."""
        kind = message[0] & 0xF0
        if kind == mm.PROGRAM_CHANGE and len(message) >= 2:
            self.on_program(message[0] & 0x0F, message[1])
            return False
        if kind != mm.CONTROL_CHANGE or len(message) < 3:
            return False
        cc, value = message[1], message[2]
        if cc in RESERVED_CCS or self.also_reserved(cc):
            return False
        with self._lock:
            if self.learning is not None:
                target, self.learning = self.learning, None
                # One CC, one control: a control learned again leaves its old CC.
                for old_cc in [c for c, t in self.cc_map.items() if t == target]:
                    del self.cc_map[old_cc]
                self.cc_map[cc] = target
                learned = True
            else:
                target = self.cc_map.get(cc)
                learned = False
        if learned:
            self.on_learned(cc, target)
            return True
        if target is None:
            return False
        self.on_change(target, cc_to_value(target, value))
        return True

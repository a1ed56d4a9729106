"""What the session asks a voice for: which kind of playing, when, where on the keyboard."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sideman.model.events import Note
from sideman.play.motifs import interval_cells

ANSWER, COMP, DUET, VARIATION = "answer", "comp", "duet", "variation"
# The network's mode input for each kind of request (model.conditioning.MODEL_MODES): a variation
# is conditioned as an answer.
MODEL_MODE_OF_KIND = {ANSWER: "answer", COMP: "comp", DUET: "duet", VARIATION: "answer"}


@dataclass(frozen=True)
class PlayRequest:
    kind: str                      # ANSWER | COMP | DUET | VARIATION
    start_s: float                 # first note at (or just after) this time
    end_s: float                   # no onsets at or after this time
    register: tuple[int, int]      # lowest, highest MIDI pitch the AI may use
    material: tuple[Note, ...] = ()  # the call to answer, or the kept phrase to vary
    density: float = 0.5           # 0 sparse .. 1 busy (already mode-adjusted)
    opening: tuple[Note, ...] = ()   # answers: the call's motif developed (play/motifs.py), onsets from 0

    @cached_property
    def cells(self) -> frozenset[tuple[int, int]]:
        """The material's interval cells (motifs.interval_cells): the figures an answer keeps working."""
        return interval_cells(self.material)

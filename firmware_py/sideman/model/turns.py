"""The model's guess of when the player plays again, as turn-taking numbers.

The transformer's time head, asked for the human's voice, gives a distribution over the gap from
the newest event to the player's next one (TIME_BINS_S, each bin the gaps nearest its value). While
the player is silent, what matters is the conditional: given that `elapsed_s` has passed without a
note, how likely is one within the next `within_s`? A breath inside a phrase keeps that high; the
end of a phrase lets it fall. `sideman.listen.phrases` reads it as one cue of the phrase-end rule.
"""

from __future__ import annotations

import numpy as np

from sideman.model.events import TIME_BINS_S

_VALUES = np.asarray(TIME_BINS_S, dtype=np.float64)
# Bin i holds the gaps nearest its value: [midpoint below, midpoint above); the last is open-ended.
_LOW = np.concatenate([[0.0], (_VALUES[:-1] + _VALUES[1:]) / 2])
_HIGH = np.concatenate([(_VALUES[:-1] + _VALUES[1:]) / 2, [np.inf]])


def _probabilities(time_logits: np.ndarray) -> np.ndarray:
    z = np.asarray(time_logits, dtype=np.float64)
    p = np.exp(z - z.max())
    return p / p.sum()


def survival(time_logits: np.ndarray, gap_s: float) -> float:
    """P(next gap > gap_s), each bin's mass spread evenly over its range (the open last bin counts
    as wholly beyond any gap inside its start)."""
    p = _probabilities(time_logits)
    width = np.where(np.isfinite(_HIGH), _HIGH - _LOW, 1.0)
    above = np.where(np.isfinite(_HIGH), np.clip((_HIGH - gap_s) / width, 0.0, 1.0), 1.0)
    return float(np.sum(p * above))


def return_chance(time_logits: np.ndarray, elapsed_s: float, within_s: float) -> float:
    """P(the next event comes within `within_s` | none in the first `elapsed_s`). 0 when the model
    gives no mass beyond elapsed_s at all (it expected the player long ago)."""
    later = survival(time_logits, elapsed_s)
    if later <= 1e-9:
        return 0.0
    return float(max(0.0, later - survival(time_logits, elapsed_s + within_s)) / later)

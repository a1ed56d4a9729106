"""The style contrast: a training term that makes the pianist input matter.

Trained on likelihood alone, the network learns to tell the pianist from the window itself (after a
hundred events the material gives him away), so its style row barely changes what it predicts:
Mehldau's row scored his val files only ~0.03 bits/event better than the next pianist's, and the
style knob hardly changed the answers. This term asks, window by window, that the window's own
pianist explain it by at least `margin_bits` per event better than a rival pianist:

    hinge = max(0, margin_bits - (bits(window | rival's row) - bits(window | own row)))

The hinge stops pushing once the margin is met, so it cannot make the other rows arbitrarily bad;
the likelihood term keeps each row good on its own pianist's windows. Rivals are drawn mostly
among the rows that come closest to each pianist (`Rivals`): drawn uniformly, the pianists near
Mehldau (the pooled "others", Hyman, Jarrett) came up one window in forty and stayed within
0.05-0.2 bits of him while the median rival was 0.58 away."""

from __future__ import annotations

import math

import numpy as np
import torch

LN2 = math.log(2.0)


class Rivals:
    """Which other row each window is contrasted with. Keeps the latest margin seen for each
    (own row, rival row) pair (a running mean) and draws rival r for own row o with probability
    proportional to exp(-margin[o, r] / temperature_bits): the rows that come closest get the
    push. Pairs never seen count as margin 0, so every rival is tried early on."""

    def __init__(self, rows: np.ndarray, n_rows: int, temperature_bits: float = 0.1, keep: float = 0.7):
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.rows.size < 2:
            raise ValueError("the style contrast needs at least two trained style rows")
        if not temperature_bits > 0:
            raise ValueError(f"the rivals' temperature must be positive, not {temperature_bits}")
        self.temperature, self.keep = temperature_bits, keep
        self.margin = np.zeros((n_rows, n_rows))
        self.seen = np.zeros((n_rows, n_rows), dtype=bool)

    def draw(self, own: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.empty(len(own), dtype=np.int64)
        for i, row in enumerate(np.asarray(own)):
            choices = self.rows[self.rows != row]
            weight = np.exp(-(self.margin[row, choices] - self.margin[row, choices].min()) / self.temperature)
            out[i] = rng.choice(choices, p=weight / weight.sum())
        return out

    def update(self, own: np.ndarray, rivals: np.ndarray, margins: np.ndarray) -> None:
        for row, rival, margin in zip(np.asarray(own), np.asarray(rivals), np.asarray(margins)):
            if not np.isfinite(margin):
                continue
            old = self.margin[row, rival] if self.seen[row, rival] else margin
            self.margin[row, rival] = self.keep * old + (1.0 - self.keep) * margin
            self.seen[row, rival] = True

    def state(self) -> dict:
        return {"margin": self.margin.copy(), "seen": self.seen.copy()}

    def load(self, state: dict | None) -> None:
        if state is not None and state["margin"].shape == self.margin.shape:
            self.margin, self.seen = state["margin"].copy(), state["seen"].copy()


def window_bits(nats: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean bits per scored event of each window, and whether the window scores any event."""
    weight = mask.float()
    counted = weight.sum(dim=1)
    return (nats * weight).sum(dim=1) / counted.clamp(min=1.0) / LN2, counted > 0


def style_contrast(scorer, batch: dict, own_nats: torch.Tensor, rivals: torch.Tensor,
                   margin_bits: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The hinge averaged over the windows that score AI events, and each window's margin
    (bits/event, detached; NaN where the window was not counted). scorer(batch) gives per-event
    nats; own_nats are those of `batch` under its own style rows; rivals holds one other style row
    per window. Windows that style dropout relabelled "others" (batch["style_dropped"]) are left
    out: their own row is not their pianist's."""
    n_styles = batch["style_weights"].shape[-1]
    swapped = dict(batch)
    swapped["style_weights"] = torch.nn.functional.one_hot(rivals, n_styles).to(batch["style_weights"].dtype)
    rival_nats = scorer(swapped)
    own_bits, counted = window_bits(own_nats, batch["loss_mask"])
    rival_bits, _ = window_bits(rival_nats, batch["loss_mask"])
    if "style_dropped" in batch:
        counted = counted & ~batch["style_dropped"]
    margin = rival_bits - own_bits
    margins = torch.where(counted, margin.detach(), torch.full_like(margin, float("nan")))
    if not bool(counted.any()):
        return own_nats.sum() * 0.0, margins
    return torch.relu(margin_bits - margin[counted]).mean(), margins

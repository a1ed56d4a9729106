"""From numpy examples to model batches, and the windows that score whole performances.

Scoring (validation, `eval`) reads every event of a performance once, in sliding windows of the
model's context with half-window strides, so each scored event has at least half a context of real
history (all events in the "solo" mode: every event is the AI's and counts)."""

from __future__ import annotations

import numpy as np
import torch

from sideman.model.conditioning import MODEL_MODES
from sideman_train.duets import cut_window, make_example, scoring_windows

INT_KEYS = ("time", "pitch", "duration", "velocity", "voice", "mode", "style")
SOLO = MODEL_MODES.index("solo")


def to_torch(batch: dict, device, n_styles: int) -> dict[str, torch.Tensor]:
    """numpy batch → tensors on device; `style` rows become one-hot `style_weights` unless given."""
    out = {}
    for key, value in batch.items():
        if key == "style_weights":
            out[key] = torch.as_tensor(value, dtype=torch.float32, device=device)
        elif key in INT_KEYS:
            out[key] = torch.as_tensor(value, dtype=torch.long, device=device)
        elif key in ("loss_mask", "human_mask", "score_mask", "style_dropped"):
            out[key] = torch.as_tensor(value, dtype=torch.bool, device=device)
        else:
            out[key] = torch.as_tensor(value, dtype=torch.float32, device=device)
    if "style_weights" not in out and "style" in out:
        out["style_weights"] = torch.nn.functional.one_hot(out["style"], n_styles).float()
    return out



def performance_windows(arrays: dict, length: int, stride: int | None = None) -> list[dict]:
    """Solo-mode examples covering a performance; `loss_mask` marks the events this window scores."""
    n = int(np.asarray(arrays["pitch"]).size)
    stride = stride or length // 2
    examples = []
    for start, score_from in scoring_windows(n, length, stride):
        end = min(start + length, n)
        example = make_example(cut_window(arrays, start, end, first_in_performance=start == 0), SOLO)
        mask = np.zeros(end - start, dtype=bool)
        mask[score_from - start:] = True
        example["loss_mask"] = mask & example["loss_mask"]
        examples.append(example)
    return examples


def stack(examples: list[dict], length: int) -> dict[str, np.ndarray]:
    """Pad examples to `length` (padding is never scored) and stack them."""
    out: dict[str, list] = {}
    for example in examples:
        t = example["time"].shape[0]
        for key, value in example.items():
            value = np.asarray(value)
            if value.ndim >= 1 and value.shape[0] == t and t < length:
                pad = [(0, length - t)] + [(0, 0)] * (value.ndim - 1)
                value = np.pad(value, pad)
            out.setdefault(key, []).append(value)
    return {key: np.stack(values) for key, values in out.items()}


def validation_batches(split_entry, data, config: dict, batch_size: int = 16) -> list[dict]:
    """Fixed validation windows (same every time): data.val_windows windows spread over the chosen
    performances, solo mode, no augmentation, each performance's own style row."""
    split, chosen, rows = split_entry
    length = config["data"]["context"]
    rng = np.random.default_rng(1234)
    n_events = split.n_events[chosen]
    usable = chosen[n_events > length]
    if usable.size == 0:
        return []
    picks = rng.choice(usable, size=config["data"]["val_windows"], p=split.n_events[usable] / split.n_events[usable].sum())
    examples = []
    for perf in picks:
        arrays = split.performance(int(perf))
        start = int(rng.integers(0, arrays["pitch"].size - length))
        example = make_example(cut_window(arrays, start, start + length, first_in_performance=start == 0), SOLO)
        example["style"] = np.int64(rows[perf])
        examples.append(example)
    return [stack(examples[i:i + batch_size], length) for i in range(0, len(examples), batch_size)]

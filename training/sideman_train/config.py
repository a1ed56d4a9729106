"""Training configs: a TOML file over these defaults. Unknown keys are refused (a typo would
otherwise silently train something else)."""

from __future__ import annotations

import copy
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6)
    import tomli as tomllib

DEFAULTS: dict = {
    "data": {
        "cache": "cache/pijama",          # from `sideman-train prepare` (built by fit when missing)
        "context": 256,                   # events per training window = the model's KV cache length
        "batch_size": 16,
        "min_files_per_style": 20,        # pianists with fewer train files share the "others" row
        "spare_styles": 8,                # empty rows kept for `finetune`
        "exclude_artists": [],            # left out of training entirely (e.g. to test finetune)
        "artist_weight": {},              # oversampling, e.g. {"Brad Mehldau" = 4.0}
        "style_dropout": 0.1,             # share of windows trained as "others" (unconditioned)
        "default_style": "mehldau",
        "mode_probs": {"solo": 0.4, "answer": 0.3, "comp": 0.15, "duet": 0.15},
        "listening": 0.1,                 # share of windows that are all the human's (duets.make_example)
        "augment": {"transpose": [-5, 6], "stretch": [0.9, 1.1], "velocity_jitter": 4.0},
        "val_windows": 96,                # fixed windows per validation set (solo mode, no augmentation)
        "val_focus_artist": "Brad Mehldau",
    },
    "model": {"d_model": 256, "n_layers": 6, "n_heads": 4, "d_ff": 1024, "head_hidden": 256, "dropout": 0.1,
              "pulse_dim": 4},                # 4: tempo and beat phase (conditioning.pulse_features)
    "train": {"steps": 4000, "lr": 1e-3, "warmup_steps": 200, "weight_decay": 0.05, "grad_clip": 1.0,
              "eval_every": 250, "seed": 0, "amp": "auto", "threads": 0,   # threads 0: torch's default
              "human_weight": 0.25,           # loss weight of the human's events (the AI's weigh 1)
              "style_contrast": 0.0,          # weight of the style contrast (style_contrast.py); 0: off
              "style_margin_bits": 0.3,       # the margin it asks of each window's own pianist row
              "rival_temperature_bits": 0.1,  # how strongly it picks the rows that come closest (Rivals)
              "select": "val"},               # the bundle --out writes: lowest val bits, or "last"
}


class ConfigError(ValueError):
    pass


def merge(base: dict, override: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise ConfigError(f"unknown config key {where}{key!r} (known: {', '.join(base)})")
        if isinstance(base[key], dict) and base[key] and isinstance(value, dict) and key not in ("artist_weight", "mode_probs"):
            out[key] = merge(base[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def load_config(path: Path | None) -> dict:
    if path is None:
        return copy.deepcopy(DEFAULTS)
    try:
        text = Path(path).read_text()
        values = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    config = merge(DEFAULTS, values)
    probs = config["data"]["mode_probs"]
    from sideman.model.conditioning import MODEL_MODES
    unknown = set(probs) - set(MODEL_MODES)
    if unknown or not probs or min(probs.values()) < 0 or sum(probs.values()) <= 0:
        raise ConfigError(f"{path}: data.mode_probs must weigh the modes {MODEL_MODES}")
    return config

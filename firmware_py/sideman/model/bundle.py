"""A trained transformer on disk: a folder with `manifest.json` (config, style table, checksums,
training facts, exported graphs) and the weights it names. What the image flashes and the box loads.

    models/transformer/
        manifest.json        format, config, styles [{name, artist, row, source}], weights {file, sha256}
        weights.pt           the network's state_dict (torch.save; loaded with weights_only=True)
        styles/<name>.pt     styles added later by `sideman-train finetune` (one embedding row each)
        onnx/…               exported graphs, when `sideman-train export` has run (listed under "graphs")

Every file is checked against its sha256 before use; anything missing, corrupt or of another
format raises ModelFileError with a message a person can act on (the box then falls back to the
Markov voice and says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sideman.model.transformer import JazzTransformer, ModelConfig

from sideman.model.model_files import (FORMAT, FORMAT_VERSION, MANIFEST, MODEL_FILE_MODE,  # noqa: F401 (re-exported)
                                       WEIGHTS, ModelFileError, Style, StyleLookup, read_manifest, sha256_of,
                                       write_json_atomically)
from sideman.paths import write_atomically_with


@dataclass
class Bundle(StyleLookup):
    model: JazzTransformer
    styles: list[Style]
    manifest: dict
    path: Path | None = None

    def style_weights(self, blend: dict[str, float]) -> torch.Tensor:
        """{'mehldau': 0.7, 'tatum': 0.3} → (1, n_styles) weights summing to 1."""
        weights = torch.zeros(1, self.model.config.n_styles)
        total = sum(max(0.0, w) for w in blend.values())
        if total <= 0:
            raise ValueError("a style blend needs at least one positive weight")
        for name, w in blend.items():
            weights[0, self.style(name).row] += max(0.0, w) / total
        return weights

    def style_vector(self, blend: dict[str, float]):
        """The blended style embedding (D,) as numpy: what every step of the live voice is given."""
        with torch.no_grad():
            return self.model.style_vector(self.style_weights(blend))[0].numpy().astype("float32")

    @property
    def context(self) -> int:
        return self.model.config.context

    @property
    def d_model(self) -> int:
        return self.model.config.d_model


def save_torch_atomically(obj, path: Path) -> None:
    write_atomically_with(Path(path), lambda fh: torch.save(obj, fh), mode=MODEL_FILE_MODE)


def save_bundle(folder: Path, model: JazzTransformer, styles: list[Style], default_style: str,
                training: dict | None = None, extra: dict | None = None) -> Path:
    """Write weights then manifest (the manifest last, so a half-written folder never loads)."""
    folder = Path(folder)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch_atomically(state, folder / WEIGHTS)
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "parameters": model.parameter_count(),
        "default_style": default_style,
        "styles": [s.to_dict() for s in styles],
        "weights": {"file": WEIGHTS, "sha256": sha256_of(folder / WEIGHTS)},
        "training": training or {},
    }
    manifest.update(extra or {})
    write_json_atomically(folder / MANIFEST, manifest)
    return folder / MANIFEST


def _checked_load(folder: Path, entry: dict, what: str):
    name = entry.get("file")
    if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ModelFileError(f"{folder / MANIFEST}: bad {what} file entry {name!r}")
    path = folder / name
    if not path.is_file():
        raise ModelFileError(f"{path}: {what} file missing")
    if entry.get("sha256") and sha256_of(path) != entry["sha256"]:
        raise ModelFileError(f"{path}: {what} file is corrupt (sha256 does not match the manifest)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        raise ModelFileError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc})") from None


def load_bundle(folder: Path | str) -> Bundle:
    """The model (eval mode, CPU) with its styles, fine-tuned ones placed in their rows."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    try:
        config = ModelConfig.from_dict(manifest["config"])
        styles = [Style(**s) for s in manifest["styles"]]
        weights_entry = dict(manifest["weights"])
        model = JazzTransformer(config)
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError, RuntimeError) as exc:
        raise ModelFileError(f"{folder / MANIFEST}: bad manifest ({type(exc).__name__}: {exc})") from None
    if not styles:
        raise ModelFileError(f"{folder / MANIFEST}: no styles")
    names = {s.name for s in styles}
    if manifest.get("default_style", styles[0].name) not in names:
        raise ModelFileError(f"{folder / MANIFEST}: default style {manifest.get('default_style')!r} is not one of its styles")
    for style in styles:
        if not isinstance(style.row, int) or not 0 <= style.row < config.n_styles:
            raise ModelFileError(f"{folder / MANIFEST}: style {style.name!r} has row {style.row!r} "
                                 f"outside the style table (0..{config.n_styles - 1})")
    state = _checked_load(folder, weights_entry, "weights")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{folder / WEIGHTS}: weights do not fit the manifest's config ({exc})") from None
    with torch.no_grad():
        for style in styles:
            if style.file:
                added = _checked_load(folder, {"file": style.file, "sha256": style.sha256}, f"style {style.name}")
                embedding = added.get("embedding") if isinstance(added, dict) else None
                if not isinstance(embedding, torch.Tensor) or tuple(embedding.shape) != (config.d_model,):
                    raise ModelFileError(f"{folder / style.file}: not a style embedding of size {config.d_model}")
                model.style_table[style.row] = embedding
    model.eval()
    return Bundle(model=model, styles=styles, manifest=manifest, path=folder)

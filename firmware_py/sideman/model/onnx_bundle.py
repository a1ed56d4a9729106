"""A model folder read for onnxruntime alone: the manifest, the exported graphs and the style
table `sideman-train export` writes beside them (onnx/style_table.npy), all checked against their
sha256, without torch. The live box runs this way when it can (see backends.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sideman.model.model_files import (GRAPH_NAMES, MANIFEST, ModelFileError, Style, StyleLookup, read_manifest,
                                       sha256_of)


@dataclass
class OnnxBundle(StyleLookup):
    styles: list[Style]
    manifest: dict
    path: Path
    style_table: np.ndarray      # (n_styles, D) float32, fine-tuned rows in place
    graphs: dict[str, str]       # graph name -> file under path

    @property
    def context(self) -> int:
        return int(self.manifest["config"]["context"])

    @property
    def d_model(self) -> int:
        return int(self.manifest["config"]["d_model"])

    def style_vector(self, blend: dict[str, float]) -> np.ndarray:
        """The blended style embedding (D,): the weighted sum of the pianists' rows."""
        total = sum(max(0.0, w) for w in blend.values())
        if total <= 0:
            raise ValueError("a style blend needs at least one positive weight")
        vector = np.zeros(self.style_table.shape[1], np.float32)
        for name, w in blend.items():
            vector += (max(0.0, w) / total) * self.style_table[self.style(name).row]
        return vector


def load_onnx_bundle(folder: Path | str) -> OnnxBundle:
    """Raises ModelFileError when anything the onnxruntime path needs is missing, corrupt, or
    older than the manifest's styles (a style fine-tuned after the export: re-export)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    try:
        styles = [Style(**s) for s in manifest["styles"]]
        config = manifest["config"]
        int(config["context"]), int(config["d_model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{folder / MANIFEST}: bad manifest ({type(exc).__name__}: {exc})") from None
    export = manifest.get("onnx_export") or {}
    table = export.get("style_table")
    if not isinstance(table, dict):
        raise ModelFileError(f"{folder / MANIFEST}: no exported style table (run `sideman-train export --model {folder}`)")
    missing = sorted({s.name for s in styles} - set(table.get("styles", [])))
    if missing:
        raise ModelFileError(f"{folder / MANIFEST}: styles {', '.join(missing)} came after the export "
                             f"(run `sideman-train export --model {folder}`)")
    entries = {g.get("name"): g for g in manifest.get("graphs", []) if isinstance(g, dict)}
    graphs = {}
    for name in GRAPH_NAMES:
        entry = entries.get(name)
        if entry is None or not isinstance(entry.get("onnx"), str):
            raise ModelFileError(f"{folder / MANIFEST}: no exported {name} graph (run `sideman-train export`)")
        _check(folder, entry["onnx"], entry.get("sha256"), f"{name} graph")
        graphs[name] = entry["onnx"]
    path = _check(folder, table.get("file"), table.get("sha256"), "style table")
    try:
        style_table = np.load(path, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: unreadable style table ({exc})") from None
    if style_table.ndim != 2 or style_table.shape[1] != int(config["d_model"]) or \
            any(not 0 <= s.row < style_table.shape[0] for s in styles):
        raise ModelFileError(f"{path}: style table of shape {style_table.shape} does not fit the manifest")
    return OnnxBundle(styles, manifest, folder, style_table, graphs)


def _check(folder: Path, name, sha256, what: str) -> Path:
    if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ModelFileError(f"{folder / MANIFEST}: bad {what} file entry {name!r}")
    path = folder / name
    if not path.is_file():
        raise ModelFileError(f"{path}: {what} file missing")
    if not sha256 or sha256_of(path) != sha256:
        raise ModelFileError(f"{path}: {what} file is corrupt (sha256 does not match the manifest)")
    return path

"""`sideman-train export`: static-shape ONNX graphs of the transformer, their parity with PyTorch under
onnxruntime, and the manifest entries the box's first-boot TensorRT build reads.

A tiny random model (d_model 32, 2 layers, context 16) keeps this cheap; its weights are drawn
larger than the training init so every output (logits included) is of order one and a wrong wire in
a graph shows as a large difference. TensorRT itself cannot run here (no GPU): the engine build is
run with a stand-in trtexec, as in test_image.py."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from sideman.model.bundle import Style, load_bundle, save_bundle, sha256_of
from sideman.model.events import AI, HUMAN
from sideman.model.transformer import N_DURATION, N_PITCH, N_TIME, N_VELOCITY, JazzTransformer, ModelConfig
from sideman_train import export

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
ENGINE_BUILD = ROOT / "image" / "sideman-engine-build"
CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context=16, n_styles=4, n_modes=4,
                     head_hidden=32, dropout=0.1)
STYLES = [Style("others", "", 0), Style("mehldau", "Brad Mehldau", 1)]
TIGHT = 1e-4


def tiny_model(seed: int = 0) -> JazzTransformer:
    torch.manual_seed(seed)
    model = JazzTransformer(CONFIG)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.3)
    return model.eval()


def cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="sideman-train")
    export.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = args.run(args)
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A saved tiny model, exported once through the command (--json)."""
    folder = tmp_path_factory.mktemp("export") / "transformer"
    save_bundle(folder, tiny_model(), STYLES, default_style="mehldau")
    rc, out = cli("export", "--model", str(folder), "--json")
    assert rc == 0, out
    bundle = load_bundle(folder)
    graphs = export.OrtGraphs(folder / "onnx")
    return {"folder": folder, "summary": json.loads(out), "model": bundle.model, "bundle": bundle,
            "graphs": graphs}


def copy_of(exported, tmp_path) -> Path:
    dst = tmp_path / "transformer"
    shutil.copytree(exported["folder"], dst)
    return dst


def style_vector(exported) -> torch.Tensor:
    bundle = exported["bundle"]
    with torch.no_grad():
        return bundle.model.style_vector(bundle.style_weights({"mehldau": 0.7, "others": 0.3}))


def duet_batch(n: int) -> dict:
    duet = export.demo_duet(CONFIG.context)
    assert len(duet["events"]) >= n
    e = torch.from_numpy(duet["events"][:n])
    return {"time": e[None, :, 0], "pitch": e[None, :, 1], "duration": e[None, :, 2], "velocity": e[None, :, 3],
            "voice": e[None, :, 4], "chord": torch.from_numpy(duet["chord"][None, :n]),
            "pulse": torch.from_numpy(duet["pulse"][None, :n])}


def maxdiff(a, b) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


# ---------------------------------------------------------------------------------------------

def test_every_graph_passes_the_checker_with_static_shapes(exported):
    folder = exported["folder"]
    L, H, N, D, hd = CONFIG.n_layers, CONFIG.n_heads, CONFIG.context, CONFIG.d_model, CONFIG.d_model // CONFIG.n_heads
    P = CONFIG.pulse_dim
    cache = [L, 1, H, N, hd]
    expected = {
        "init": ({"time": [1, N], "pitch": [1, N], "duration": [1, N], "velocity": [1, N], "voice": [1, N],
                  "chord": [1, N, 12], "pulse": [1, N, P], "mode": [1], "style_vector": [1, D]},
                 {"h": [1, N, D], "k_out": cache, "v_out": cache}),
        "step": ({"previous": [1, 5], "begin": [1], "style_vector": [1, D], "mode": [1], "chord": [1, 12],
                  "pulse": [1, P], "position": [1], "k_cache": cache, "v_cache": cache},
                 {"h": [1, D], "time_logits": [1, N_TIME], "human_time_logits": [1, N_TIME], "k_out": cache,
                  "v_out": cache}),
        "pitch_head": ({"h": [1, D], "voice": [1], "time": [1]}, {"logits": [1, N_PITCH]}),
        "duration_head": ({"h": [1, D], "voice": [1], "time": [1], "pitch": [1]}, {"logits": [1, N_DURATION]}),
        "velocity_head": ({"h": [1, D], "voice": [1], "time": [1], "pitch": [1], "duration": [1]},
                          {"logits": [1, N_VELOCITY]}),
    }
    ints = {"time", "pitch", "duration", "velocity", "voice", "mode", "previous", "position"}
    for name, (inputs, outputs) in expected.items():
        path = folder / "onnx" / f"{name}.onnx"
        onnx.checker.check_model(str(path), full_check=True)
        proto = onnx.load(str(path))
        assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {17}
        assert not [n.op_type for n in proto.graph.node if n.op_type in ("Trilu", "Identity")], "folded"
        io_ = export.graph_io(path)
        assert {v["name"]: v["shape"] for v in io_["inputs"]} == inputs, name
        assert [v["name"] for v in io_["inputs"]] == list(inputs), "input order is the documented one"
        assert {v["name"]: v["shape"] for v in io_["outputs"]} == outputs, name
        for v in io_["inputs"]:
            assert v["dtype"] == ("int64" if v["name"] in ints else "float32"), (name, v)
        assert not export.external_files(path), "weights stay inside the graph"


def test_step_graph_equals_model_step_over_six_steps(exported):
    model, graphs = exported["model"], exported["graphs"]
    style = style_vector(exported)
    batch = duet_batch(6)
    mode = torch.tensor([2])
    k_t, v_t = model.empty_cache()
    k_o, v_o = k_t.numpy(), v_t.numpy()
    previous = torch.zeros(1, 5, dtype=torch.long)
    for position in range(6):
        begin = torch.tensor([1.0 if position == 0 else 0.0])
        if position:
            previous = torch.stack([batch[f][:, position - 1] for f in
                                    ("time", "pitch", "duration", "velocity", "voice")], dim=1)
        chord, pulse = batch["chord"][:, position], batch["pulse"][:, position]
        with torch.no_grad():
            h_t, k_t, v_t = model.step(previous, begin, style, mode, chord, pulse, torch.tensor(position), k_t, v_t)
            time_t = model.time_head(h_t + model.voice_out(torch.tensor([AI])))
            human_t = model.time_head(h_t + model.voice_out(torch.tensor([HUMAN])))
        h_o, time_o, human_o, k_o, v_o = graphs("step", previous=previous, begin=begin, style_vector=style,
                                                mode=mode, chord=chord, pulse=pulse, position=np.array([position]),
                                                k_cache=k_o, v_cache=v_o)
        assert maxdiff(h_o, h_t) < TIGHT, position
        assert maxdiff(time_o, time_t) < TIGHT, position
        assert maxdiff(human_o, human_t) < TIGHT, position
        assert maxdiff(human_t, time_t) > 1e-3, "the two voices' time logits differ (the check means something)"
        assert maxdiff(k_o, k_t) < TIGHT and maxdiff(v_o, v_t) < TIGHT, position
        assert float(np.abs(h_t.numpy()).max()) > 0.5, "outputs of order one (the check means something)"
        assert float(np.abs(time_t.numpy()).max()) > 0.3
    # and the same numbers as the whole-sequence forward
    with torch.no_grad():
        h_ref = model({**batch, "mode": mode, "style_weights": exported["bundle"].style_weights(
            {"mehldau": 0.7, "others": 0.3})})
    assert maxdiff(h_o, h_ref[:, 5]) < TIGHT


def test_head_graphs_equal_the_pytorch_heads(exported):
    model, graphs = exported["model"], exported["graphs"]
    g = torch.Generator().manual_seed(1)
    for trial in range(8):
        h = torch.randn(1, CONFIG.d_model, generator=g)
        voice = torch.tensor([trial % 2])
        time_ = torch.randint(0, N_TIME, (1,), generator=g)
        pitch = torch.randint(0, N_PITCH, (1,), generator=g)
        duration = torch.randint(0, N_DURATION, (1,), generator=g)
        with torch.no_grad():
            state = h + model.voice_out(voice)
            want = {"pitch": model.pitch_head(state, time_), "duration": model.duration_head(state, time_, pitch),
                    "velocity": model.velocity_head(state, time_, pitch, duration)}
        got = {"pitch": graphs("pitch_head", h=h, voice=voice, time=time_)[0],
               "duration": graphs("duration_head", h=h, voice=voice, time=time_, pitch=pitch)[0],
               "velocity": graphs("velocity_head", h=h, voice=voice, time=time_, pitch=pitch, duration=duration)[0]}
        for field in want:
            assert maxdiff(got[field], want[field]) < TIGHT, (trial, field)
            assert float(want[field].abs().max()) > 0.3


def test_init_graph_equals_forward_caches_for_the_real_prefix(exported):
    model, graphs = exported["model"], exported["graphs"]
    n, p = CONFIG.context, 5
    batch = duet_batch(p)
    mode = torch.tensor([1])
    weights = exported["bundle"].style_weights({"mehldau": 1.0})
    with torch.no_grad():
        h_ref, k_ref, v_ref = model({**batch, "mode": mode, "style_weights": weights}, return_cache=True)
        style = model.style_vector(weights)

    def pad(x: torch.Tensor, fill=0) -> np.ndarray:
        out = np.full((1, n) + tuple(x.shape[2:]), fill, dtype=x.numpy().dtype)
        out[:, :p] = x.numpy()
        return out

    # padding after the real length does not reach the prefix: try two different paddings
    for fill in (0, 3):
        inputs = {f: pad(batch[f], fill) for f in ("time", "pitch", "duration", "velocity")}
        inputs["voice"] = pad(batch["voice"], fill % 2)
        h, k, v = graphs("init", **inputs, chord=pad(batch["chord"], fill), pulse=pad(batch["pulse"], fill),
                         mode=mode, style_vector=style)
        assert h.shape == (1, n, CONFIG.d_model) and k.shape == export.cache_shape(model)
        assert maxdiff(h[:, :p], h_ref) < TIGHT
        assert maxdiff(k[:, :, :, :p], k_ref) < TIGHT and maxdiff(v[:, :, :, :p], v_ref) < TIGHT
    # the caches continue in the step graph: step at position p equals forward over p + 1 events
    longer = duet_batch(p + 1)
    with torch.no_grad():
        h_next = model({**longer, "mode": mode, "style_weights": weights})[:, p]
    previous = np.array([[int(longer[f][0, p - 1]) for f in ("time", "pitch", "duration", "velocity", "voice")]])
    h_step, _, _, _, _ = graphs("step", previous=previous, begin=np.zeros(1, np.float32), style_vector=style,
                                mode=mode, chord=longer["chord"][:, p], pulse=longer["pulse"][:, p],
                             position=np.array([p]), k_cache=k, v_cache=v)
    assert maxdiff(h_step, h_next) < TIGHT


def test_summary_and_parity_report(exported):
    summary = exported["summary"]
    assert summary["passed"] and summary["manifest_updated"] and summary["exporter"] == "torchscript"
    assert [g["name"] for g in summary["graphs"]] == list(export.GRAPH_NAMES)
    assert summary["max_abs_diff"] < TIGHT
    for part in ("random", "sequence"):
        figures = summary["parity"][part]
        assert set(figures) >= {"init_h", "step_h", "step_time_logits", "pitch_head", "duration_head",
                                "velocity_head", "step_k", "init_k"}
        assert max(figures.values()) < TIGHT
    report = json.loads((exported["folder"] / "onnx" / "parity.json").read_text())
    assert report["passed"] and report["tolerance"] == export.TOLERANCE
    assert report["sequence"]["events"] == CONFIG.context and 0 < report["sequence"]["prefix"] < CONFIG.context
    assert report["sequence"]["max_abs_reference"]["pitch_head"] > 0.3
    assert set(report["timing"]["export_s"]) == set(export.GRAPH_NAMES) and report["timing"]["ort_step_ms"] > 0


def test_manifest_lists_the_graphs_and_still_loads(exported):
    folder = exported["folder"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["schema"] == 1
    assert [g["name"] for g in manifest["graphs"]] == list(export.GRAPH_NAMES)
    for g in manifest["graphs"]:
        assert set(g) == {"name", "onnx", "sha256", "trtexec_args", "fp16"}
        assert g["onnx"] == f"onnx/{g['name']}.onnx"
        assert g["sha256"] == sha256_of(folder / g["onnx"])
        assert g["fp16"] is True and all(a.startswith("--") for a in g["trtexec_args"])
        assert not any("Shapes" in a or a.startswith("--shapes") for a in g["trtexec_args"])
    assert manifest["onnx_export"]["weights_sha256"] == manifest["weights"]["sha256"]
    assert manifest["onnx_export"]["io"]["step"]["inputs"][0]["name"] == "previous"
    bundle = load_bundle(folder)
    assert bundle.model.config == CONFIG and [s.name for s in bundle.styles] == ["others", "mehldau"]
    assert export.verify_graphs(folder) == []
    rc, out = cli("export", "--model", str(folder), "--verify", "--json")
    assert rc == 0 and json.loads(out)["ok"]


def test_the_export_lets_onnxruntime_blend_styles_without_torch(exported):
    """The style table beside the graphs gives the same blended style vector as the weights."""
    from sideman.model.onnx_bundle import load_onnx_bundle

    light = load_onnx_bundle(exported["folder"])
    assert light.context == CONFIG.context and light.d_model == CONFIG.d_model
    want = style_vector(exported)[0].numpy()
    np.testing.assert_allclose(light.style_vector({"mehldau": 0.7, "others": 0.3}), want, atol=1e-6)
    np.testing.assert_allclose(exported["bundle"].style_vector({"mehldau": 0.7, "others": 0.3}), want, atol=1e-6)


FAKE_TRTEXEC = """#!/bin/sh
# Stand-in for TensorRT's trtexec: refuses shapes for these static graphs, as the real one does.
echo "$*" >> "$FAKE_TRTEXEC_LOG"
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v8602] # trtexec $*"
for arg; do
    case "$arg" in
        --shapes=*|--minShapes=*|--optShapes=*|--maxShapes=*)
            echo "[E] Static model does not take explicit shapes since the shape of inference tensors will be"
            exit 1 ;;
    esac
done
for arg; do
    case "$arg" in --saveEngine=*) echo fake-plan > "${arg#--saveEngine=}" ;; esac
done
echo "&&&& PASSED TensorRT.trtexec [TensorRT v8602]"
"""


def test_the_box_engine_build_accepts_the_manifest(exported, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(exported["folder"], models / "transformer")
    trtexec = tmp_path / "trtexec"
    trtexec.write_text(FAKE_TRTEXEC)
    trtexec.chmod(0o755)
    env = dict(os.environ, SIDEMAN_MODELS_DIR=str(models), SIDEMAN_STATE_DIR=str(tmp_path / "state"),
               TRTEXEC=str(trtexec), FAKE_TRTEXEC_LOG=str(tmp_path / "calls.log"))
    proc = subprocess.run([sys.executable, str(ENGINE_BUILD)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    status = json.loads((tmp_path / "state" / "engines" / "status.json").read_text())
    assert status["backend"] == "tensorrt", status
    assert sorted(status["engines"]) == sorted(export.GRAPH_NAMES)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert len(calls) == len(export.GRAPH_NAMES)
    for call in calls:
        args = call.split()
        assert "--fp16" in args and "--skipInference" in args
        assert any(a.startswith("--onnx=") and "/transformer/onnx/" in a for a in args)


def test_a_corrupted_graph_is_caught_by_its_sha256(exported, tmp_path):
    folder = copy_of(exported, tmp_path)
    path = folder / "onnx" / "step.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = export.verify_graphs(folder)
    assert len(problems) == 1 and "step" in problems[0] and "sha256" in problems[0], problems
    rc, _ = cli("export", "--model", str(folder), "--verify")
    assert rc == 1
    (folder / "onnx" / "pitch_head.onnx").unlink()
    problems = export.verify_graphs(folder)
    assert any("pitch_head" in p and "missing" in p for p in problems), problems
    # graphs from other weights than the manifest's
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["onnx_export"]["weights_sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert any("other weights" in p for p in export.verify_graphs(folder))


def test_a_model_folder_without_graphs_is_reported(tmp_path):
    folder = tmp_path / "bare"
    save_bundle(folder, tiny_model(), STYLES, default_style="mehldau")
    assert any("no graphs" in p for p in export.verify_graphs(folder))
    assert any("no model manifest" in p for p in export.verify_graphs(tmp_path / "nothing"))


def test_failed_parity_leaves_graphs_and_manifest_alone(exported, tmp_path):
    folder = copy_of(exported, tmp_path)
    before = (folder / "manifest.json").read_text()
    onnx_before = {p.name: p.read_bytes() for p in (folder / "onnx").glob("*")}
    rc, out = cli("export", "--model", str(folder), "--tolerance", "-1", "--json")
    assert rc == 1
    summary = json.loads(out)
    assert not summary["passed"] and not summary["manifest_updated"]
    rejected = folder / "onnx" / "rejected"
    assert sorted(p.name for p in rejected.glob("*.onnx")) == sorted(f"{n}.onnx" for n in export.GRAPH_NAMES)
    assert not json.loads((rejected / "parity.json").read_text())["passed"]
    assert (folder / "manifest.json").read_text() == before
    assert {p.name: p.read_bytes() for p in (folder / "onnx").glob("*") if p.is_file()} == onnx_before
    assert not list((folder / "onnx").glob(".export-*")), "staging removed"
    assert export.verify_graphs(folder) == []

"""`sideman-train size-budget`: untrained networks of other sizes, exported and run through the model
bench beside the shipped model, each held to the box's limits.

A tiny "shipped" model (d_model 32, 2 layers, context 64) stands in for models/transformer so the
exports and the bench's processes stay cheap. Timings are only checked for being there: what is
asserted is what the tool decides from them (sizes, megabytes, which limit a network is over)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

import pytest
import torch

from sideman.model.bundle import Style, load_bundle, save_bundle
from sideman.model.transformer import JazzTransformer, ModelConfig
from sideman_train import size_budget

SHIPPED = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context=64, n_styles=4, n_modes=4,
                      head_hidden=32, dropout=0.1, pulse_dim=4)
STYLES = [Style("others", "", 0), Style("mehldau", "Brad Mehldau", 1)]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    from sideman_train.export import export_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("size-budget") / "transformer"
    save_bundle(folder, JazzTransformer(SHIPPED).eval(), STYLES, default_style="mehldau")
    assert export_model(folder)["passed"]
    return folder


@pytest.fixture(scope="module")
def report(shipped) -> dict:
    before = set(Path(tempfile.gettempdir()).glob("sideman-size-budget-*"))
    result = size_budget.size_budget([size_budget.parse_size("wider=64,2,2,256"),
                                      size_budget.parse_size("deeper=32,4,2,64")],
                                     model=shipped, rounds=2, events=120, say=lambda m: None)
    result["left_behind"] = set(Path(tempfile.gettempdir()).glob("sideman-size-budget-*")) - before
    return result


def test_each_network_is_measured_in_every_round_beside_the_shipped_one(report):
    rows = {c["name"]: c for c in report["candidates"]}
    assert list(rows) == ["shipped", "wider", "deeper"] and report["baseline"] == "shipped"
    for row in rows.values():
        assert len(row["event_p99_ms"]) == len(row["event_p50_ms"]) == len(row["ready_s"]) == 2
        assert all(p99 >= p50 > 0 for p50, p99 in zip(row["event_p50_ms"], row["event_p99_ms"]))
    assert rows["shipped"]["p50_vs_shipped"] == 1.0
    assert report["left_behind"] == set()      # the untrained folders are scratch


def test_the_candidates_have_the_asked_shape_and_what_it_weighs(report, shipped):
    rows = {c["name"]: c for c in report["candidates"]}
    assert (rows["wider"]["d_model"], rows["wider"]["d_ff"], rows["wider"]["head_hidden"]) == (64, 256, 64)
    assert rows["deeper"]["n_layers"] == 4
    assert rows["shipped"]["parameters"] == load_bundle(shipped).model.parameter_count()
    # more parameters ship more megabytes (weights.pt and the ONNX graphs)
    assert rows["shipped"]["parameters"] < rows["deeper"]["parameters"] < rows["wider"]["parameters"]
    assert rows["shipped"]["shipped_mb"] < rows["deeper"]["shipped_mb"] < rows["wider"]["shipped_mb"]
    assert all(0 < row["largest_file_mb"] < row["shipped_mb"] for row in rows.values())


def measured(p99_ms: list[float], ready_s: float = 0.5, rss_mb: float = 200.0) -> list[dict]:
    return [{"event": {"p50_ms": p / 2, "p99_ms": p}, "step": {"p99_ms": p / 2}, "ready_s": ready_s,
             "peak_rss_mb": rss_mb} for p in p99_ms]


def test_a_network_over_a_limit_is_named_with_the_limit(report):
    assert all(c["fits"] and c["over"] == [] for c in report["candidates"])    # tiny networks fit the box
    fits = size_budget.summarize("a", {}, 3_000_000, [13_300_000, 13_300_000, 12_400_000], measured([2.5, 3.1, 2.8]))
    assert fits["fits"] and fits["over"] == []
    # held at its worst round: one p99 over 5 ms is enough
    assert (fits["shipped_mb"], fits["largest_file_mb"]) == (39.0, 13.3)
    slow = size_budget.summarize("b", {}, 3_000_000, [39_000_000], measured([2.5, 5.4, 2.8]))
    assert not slow["fits"] and slow["over"] == ["event_p99_ms"]
    # 50 MB held against the files together, each under it
    heavy = size_budget.summarize("c", {}, 15_000_000, [45_000_000, 45_000_000], measured([9.0], ready_s=6.0, rss_mb=450.0))
    assert heavy["largest_file_mb"] == 45.0
    assert heavy["over"] == ["event_p99_ms", "ready_s", "peak_rss_mb", "shipped_mb"]


def cli(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="sideman-train")
    size_budget.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = args.run(args)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("size", ["wide=64,2,2", "wide=64,2,3,256", "=64,2,2,256", "wide=64,x,2,256", "wide=0,2,2,256"])
def test_a_bad_size_gets_a_clear_error(size):
    rc, out, err = cli("size-budget", "--size", size)
    assert rc == 2 and out == "" and "--size" in err and "sideman-train size-budget" in err


def test_a_folder_without_a_model_gets_a_clear_error(tmp_path):
    rc, out, err = cli("size-budget", "--model", str(tmp_path), "--size", "tiny=16,1,2,32")
    assert rc == 2 and out == "" and "no model manifest" in err


def test_the_command_writes_its_report(shipped, tmp_path):
    out_file = tmp_path / "budget.json"
    rc, out, err = cli("size-budget", "--model", str(shipped), "--size", "tiny=16,1,2,32", "--rounds", "1",
                       "--events", "80", "--out", str(out_file))
    assert rc == 0, err
    assert json.loads(out) == json.loads(out_file.read_text())
    assert [c["name"] for c in json.loads(out)["candidates"]] == ["shipped", "tiny"]

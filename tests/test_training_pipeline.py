"""sideman-train end to end on a tiny PiJAMA-shaped corpus written here: prepare → fit (and resume)
→ eval → finetune → export. Two invented pianists with opposite habits (one plays high diatonic
lines, one low chromatic clusters), so the style input has something real to learn; a third is
held out of the base model and learned later by finetune."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from sideman.model.bundle import load_bundle
from sideman_train import cli

torch.set_num_threads(1)

PIANISTS = {
    "Ann Alpha": dict(low=72, high=96, scale=(0, 2, 4, 5, 7, 9, 11), step_ticks=120, velocity=(90, 110)),
    "Bob Beta": dict(low=36, high=60, scale=tuple(range(12)), step_ticks=360, velocity=(30, 50)),
    "Cy Gamma": dict(low=54, high=78, scale=(0, 3, 5, 6, 7, 10), step_ticks=240, velocity=(60, 80)),
}


def pianist_file(path: Path, habits: dict, seed: int, n: int = 160) -> None:
    rng = np.random.default_rng(seed)
    pitches = [p for p in range(habits["low"], habits["high"] + 1) if p % 12 in habits["scale"]]
    track = mido.MidiTrack()
    track.append(mido.Message("control_change", control=64, value=127, time=0))
    i = int(rng.integers(len(pitches)))
    for k in range(n):
        i = int(np.clip(i + rng.choice([-2, -1, 1, 2]), 0, len(pitches) - 1))
        track.append(mido.Message("note_on", note=pitches[i], velocity=int(rng.integers(*habits["velocity"])), time=0))
        track.append(mido.Message("note_off", note=pitches[i], time=habits["step_ticks"]))
        if k % 16 == 15:
            track.append(mido.Message("control_change", control=64, value=0, time=0))
            track.append(mido.Message("control_change", control=64, value=127, time=10))
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(str(path))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """PiJAMA layout: pijama.csv + midi/…; 8 train and 2 val performances per pianist (odd names)."""
    root = tmp_path_factory.mktemp("pijama")
    rows = []
    for a, (artist, habits) in enumerate(PIANISTS.items()):
        for k in range(10):
            relative = f"midi/studio/{artist}/Album ’{a}/Take {k} - Live é.midi"
            pianist_file(root / relative, habits, seed=100 * a + k)
            rows.append({"id": len(rows), "artist": artist, "album": f"Album {a}", "title": f"Take {k}",
                         "recording_condition": "studio", "midi_path": relative, "duration_sec": 60,
                         "split": "val" if k >= 8 else "train"})
    with open(root / "pijama.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


CONFIG = """
[data]
# 64: the live voice (which evaluation plays) slides its cache SLIDE_MARGIN events before it is full
context = 64
batch_size = 8
min_files_per_style = 2
spare_styles = 2
exclude_artists = ["Cy Gamma"]
style_dropout = 0.0
default_style = "alpha"
val_windows = 8
val_focus_artist = "Ann Alpha"
[model]
d_model = 32
n_layers = 2
n_heads = 2
d_ff = 64
head_hidden = 32
dropout = 0.0
[train]
steps = {steps}
lr = 5e-3
warmup_steps = 5
eval_every = 20
"""


def sideman_train(*argv) -> int:
    return cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("run")
    config = work / "tiny.toml"
    config.write_text(CONFIG.format(steps=120))
    assert sideman_train("fit", "--config", config, "--pijama", corpus, "--cache", work / "cache",
                         "--run-dir", work / "run", "--out", work / "model", "--steps", 60) == 0
    return {"work": work, "config": config, "model": work / "model", "run": work / "run", "cache": work / "cache"}


def test_fit_prepares_the_cache_trains_and_writes_a_model_folder(trained):
    run, model = trained["run"], trained["model"]
    assert (trained["cache"] / "index.json").is_file()  # built by fit from --pijama
    rows = list(csv.DictReader(open(run / "loss.csv")))
    assert [int(r["step"]) for r in rows] == [20, 40, 60]
    assert float(rows[-1]["train_bits"]) < float(rows[0]["train_bits"])  # it learns
    assert (run / "loss.png").stat().st_size > 1000
    manifest = json.loads((model / "manifest.json").read_text())
    assert [s["name"] for s in manifest["styles"]] == ["others", "alpha", "beta"]
    assert manifest["config"]["n_styles"] == 5       # 3 styles + 2 spare rows
    assert manifest["training"]["best_step"] in (20, 40, 60)
    bundle = load_bundle(model)
    assert bundle.default_style == "alpha"


def test_fit_resumes_where_it_stopped(trained):
    assert sideman_train("fit", "--config", trained["config"], "--cache", trained["cache"],
                         "--run-dir", trained["run"], "--resume", "--steps", 80) == 0
    rows = list(csv.DictReader(open(trained["run"] / "loss.csv")))
    assert [int(r["step"]) for r in rows] == [20, 40, 60, 80]


def eval_report(capsys, model, corpus, artist, style, *extra) -> dict:
    capsys.readouterr()
    assert sideman_train("eval", "--model", model, "--folder", corpus, "--pianist", artist, "--split", "val",
                         "--style", style, "--all-styles", "--json", *extra) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_scores_each_style_next_to_the_markov_baseline(trained, corpus, capsys, tmp_path):
    from music_fixtures import fixture_markov
    from sideman_train.markov_fit import save_markov
    markov = tmp_path / "fixture.npz"
    save_markov(fixture_markov(), markov)
    report = eval_report(capsys, trained["model"], corpus, "Ann Alpha", "alpha", "--markov", markov,
                         "--prompts", 2, "--length", 12, "--partner", "beta", "--samples", tmp_path / "samples")
    assert report["files"] == 2 and report["events"] > 300
    assert set(report["by_style"]) == {"others", "alpha", "beta"}
    # The style input is real: Ann's own style explains her playing better than Bob's.
    assert report["by_style"]["alpha"] < report["by_style"]["beta"]
    assert report["markov"]["bits_per_event"] > 0 and report["ratio_to_markov"] > 0
    assert len(report["blend"]["blends"]) == 5
    assert {"model", "real"} <= set(report["harmonic_coherence"])  # (Ann never plays below C4: no real left hand)
    assert sorted(p.suffix for p in (tmp_path / "samples").iterdir()) == [".mid"] * 3 + [".png"] * 3


def test_eval_skips_broken_files_and_reads_folders_it_has_never_seen(trained, corpus, tmp_path, capsys):
    folder = tmp_path / "unseen"
    pianist_file(folder / "one.mid", PIANISTS["Ann Alpha"], seed=7, n=60)
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00garbage")
    capsys.readouterr()
    assert sideman_train("eval", "--model", trained["model"], "--folder", folder, "--json", "--prompts", 1) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.mid" in captured.err
    assert json.loads(captured.out)["files"] == 1


def test_finetune_learns_a_pianist_the_base_never_heard(trained, corpus, capsys):
    model = trained["model"]
    before = eval_report(capsys, model, corpus, "Cy Gamma", "alpha", "--prompts", 1, "--length", 8)
    assert sideman_train("finetune", "--model", model, "--pijama", corpus, "--pianist", "Cy Gamma",
                         "--split", "train", "--name", "gamma", "--steps", 60, "--lr", 0.05) == 0
    bundle = load_bundle(model)
    assert bundle.style("gamma").source == "finetune"        # listed with the model's styles now
    after = eval_report(capsys, model, corpus, "Cy Gamma", "gamma", "--prompts", 1, "--length", 8)
    best_base = min(v for k, v in before["by_style"].items())
    assert after["bits_per_event"] < best_base


def test_export_of_the_trained_model_passes_parity(trained, capsys):
    assert sideman_train("export", "--model", trained["model"], "--json") == 0
    from sideman_train.export import verify_graphs
    assert verify_graphs(trained["model"]) == []
    names = [g["name"] for g in json.loads((trained["model"] / "manifest.json").read_text())["graphs"]]
    assert "step" in names and "init" in names


def test_the_same_script_runs_under_torchrun_with_two_processes(trained, tmp_path):
    """DDP on the CPU (gloo): two ranks draw their own windows, rank 0 validates and writes."""
    import os
    import subprocess
    import sys
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "sideman_train.cli",
                             "fit", "--config", str(trained["config"]), "--cache", str(trained["cache"]),
                             "--run-dir", str(tmp_path / "ddp"), "--out", str(tmp_path / "model"), "--steps", "20"],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "loss.csv")))
    assert [int(r["step"]) for r in rows] == [20]
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2
    assert load_bundle(tmp_path / "model").default_style == "alpha"


def test_finetune_with_lora_adapters_writes_a_merged_model(trained, corpus, tmp_path):
    pytest.importorskip("peft")  # the `train` extra; not needed by the rest of the suite
    out = tmp_path / "lora-model"
    assert sideman_train("finetune", "--model", trained["model"], "--pijama", corpus, "--pianist", "Cy Gamma",
                         "--split", "train", "--name", "gamma-lora", "--steps", 40, "--lr", 0.05,
                         "--lora-rank", 4, "--out", out) == 0
    bundle = load_bundle(out)
    assert bundle.style("gamma-lora").source == "finetune"
    assert not any("lora" in k for k in bundle.model.state_dict())   # merged into plain weights
    base = load_bundle(trained["model"])
    changed = [k for k, v in bundle.model.state_dict().items()
               if k in base.model.state_dict() and not torch.equal(v, base.model.state_dict()[k])]
    assert any("qkv" in k for k in changed)       # the adapters moved the attention weights


def test_the_style_contrast_makes_the_pianists_row_matter(trained, corpus, capsys, tmp_path):
    """The same 40 steps from the same weights, with and without the style contrast: with it, Ann's
    val files are explained clearly better by her row than by the closest other row (`eval
    --all-styles`). Without it, "others" explains them as well as her own row does."""
    margin = {}
    for weight in (0.0, 2.0):
        config = tmp_path / f"contrast-{weight}.toml"
        config.write_text(CONFIG.format(steps=40) + f"style_contrast = {weight}\nstyle_margin_bits = 1.5\n")
        run, out = tmp_path / f"run-{weight}", tmp_path / f"model-{weight}"
        assert sideman_train("fit", "--config", config, "--cache", trained["cache"], "--run-dir", run,
                             "--init-from", trained["model"], "--out", out, "--steps", 40) == 0
        rows = list(csv.DictReader(open(run / "loss.csv")))
        assert ("train_margin_bits" in rows[-1]) == (weight > 0)   # logged only when it trains
        by_style = eval_report(capsys, out, corpus, "Ann Alpha", "alpha", "--nll-only")["by_style"]
        margin[weight] = min(by_style[s] for s in by_style if s != "alpha") - by_style["alpha"]
    assert margin[2.0] > margin[0.0] + 0.3, margin


def test_rivals_never_draw_the_windows_own_pianist_and_favour_the_closest():
    from sideman_train.style_contrast import Rivals
    rivals = Rivals(np.array([0, 1, 2, 3]), n_rows=6, temperature_bits=0.1)
    own = np.array([1] * 400)
    drawn = rivals.draw(own, np.random.default_rng(0))
    assert not np.any(drawn == 1) and set(drawn) == {0, 2, 3}    # unseen pairs: every rival is tried
    rivals.update(np.array([1, 1, 1]), np.array([0, 2, 3]), np.array([0.05, 0.6, float("nan")]))
    drawn = rivals.draw(own, np.random.default_rng(1))
    share = {r: float(np.mean(drawn == r)) for r in (0, 2, 3)}
    assert share[2] < 0.01, share              # 2 is far from 1 already: the pushes go elsewhere
    assert share[0] > 0.3 and share[3] > 0.3, share   # to 0, close, and to 3, never measured yet
    restored = Rivals(np.array([0, 1, 2, 3]), n_rows=6)
    restored.load(rivals.state())
    assert restored.margin[1, 0] == rivals.margin[1, 0]           # resumable (kept in fit's checkpoint)
    with pytest.raises(ValueError, match="two trained style rows"):
        Rivals(np.array([1]), n_rows=6)

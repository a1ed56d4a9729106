"""`sideman-train fit`: train the jazz-piano transformer from a config file.

    sideman-train fit --config training/configs/pijama-cpu.toml --pijama ../shared/data/pijama \
                      --out models/transformer

One script for every machine, CPU here or CUDA when a GPU is present. Precision (`[train] amp`):
"auto" (the default) trains in bf16 autocast where bf16 is fast (CUDA; a CPU with AVX512-BF16 or AMX)
and in fp32 elsewhere: on an AVX2-only CPU a bf16 matmul runs ~20x slower than fp32 (measured,
training/README.md); true or false force it. The
same file under `torchrun --nproc_per_node N -m sideman_train.cli fit …` for several GPUs (each rank
draws its own windows; rank 0 validates and writes). The corpus cache is built first when missing
(`sideman-train prepare`). Checkpoints are written every validation, so `--resume` carries on after
an interruption; the loss curve is kept as CSV and PNG beside them. At the end the best checkpoint
on the validation split becomes a model bundle (manifest + weights) in --out.

`--init-from BUNDLE` starts from a trained bundle's weights instead of random ones (a fresh run dir,
a fresh optimizer and schedule): how a model trained in an earlier session keeps learning with new
inputs or a wider feed-forward layer. Weights the bundle lacks keep their initialisation, except that
new input columns of a layer start at zero, so the network computes what the bundle did until it
learns to use them (init_from_bundle).

The loss counts the AI's events at weight 1 and the human's at train.human_weight (duets.py); every
bits/event figure (validation, selection) is the AI's events only.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from sideman.model.bundle import save_bundle, save_torch_atomically, write_json_atomically
from sideman.model.conditioning import MODEL_MODES
from sideman.model.transformer import JazzTransformer, ModelConfig
from sideman.paths import write_atomically
from sideman_train.corpus import CorpusError
from sideman_train.training_data import ensure_cache, training_data
from sideman_train.config import load_config
from sideman_train.batches import to_torch, validation_batches
from sideman_train.style_contrast import Rivals, style_contrast

LN2 = math.log(2.0)


def add_commands(commands) -> None:
    p = commands.add_parser("fit", help="train the transformer (CPU, CUDA, or torchrun DDP)")
    p.add_argument("--config", required=True, type=Path, help="TOML config (see training/configs/)")
    p.add_argument("--cache", type=Path, help="corpus cache from `prepare` (default: the config's data.cache)")
    p.add_argument("--pijama", type=Path, help="PiJAMA folder: prepare the cache from it when it is missing")
    p.add_argument("--run-dir", type=Path, help="checkpoints and loss curves (default: runs/<config name>)")
    p.add_argument("--out", type=Path, help="write the best model bundle here at the end (e.g. models/transformer)")
    p.add_argument("--resume", action="store_true", help="carry on from the run dir's last checkpoint")
    p.add_argument("--init-from", type=Path, metavar="BUNDLE",
                   help="start from this trained model bundle's weights (e.g. models/transformer)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--max-minutes", type=float,
                   help="stop (and keep the best checkpoint) after this long; the cosine follows whichever "
                        "ends first, steps or time (with --resume: the budget of this run)")
    p.add_argument("--steps", type=int, help="override the config's train.steps")
    p.set_defaults(run=run)


# ---------------------------------------------------------------------------------------------


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """The CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), so bf16 autocast is faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def learning_rate(step: int, cfg: dict, time_share: float = 0.0) -> float:
    """Linear warm-up, then cosine down to 10 % of the peak. With a time budget (--max-minutes) the
    cosine follows whichever runs out first, steps or time, so a slower machine still anneals."""
    peak, warmup, total = cfg["lr"], cfg["warmup_steps"], cfg["steps"]
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_share))
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


class EventLoss(torch.nn.Module):
    """The network's per-event loss as a module's forward(), so DistributedDataParallel (which only
    hooks forward) synchronises its gradients."""

    def __init__(self, model: JazzTransformer):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model.event_nats(batch)


def masked_bits(scorer, batch: dict, human_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of bits over the AI events of the batch and their count; with human_weight > 0, plus the
    human's events' bits and count at that weight (training). scorer: a JazzTransformer, or an
    EventLoss (possibly wrapped in DDP)."""
    nats = scorer.event_nats(batch) if isinstance(scorer, JazzTransformer) else scorer(batch)
    return weighted_bits(nats, batch, human_weight)


def weighted_bits(nats: torch.Tensor, batch: dict, human_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """masked_bits from per-event nats already computed."""
    weight = batch["loss_mask"].float()
    if human_weight > 0 and "human_mask" in batch:
        weight = weight + human_weight * batch["human_mask"].float()
    return (nats * weight).sum() / LN2, weight.sum()


def init_from_bundle(model: JazzTransformer, folder: Path) -> list[str]:
    """Copy a bundle's weights into model. Shapes must match, except layers that grew:
    - new input columns of a matrix start at zero (a new input, or a wider hidden layer feeding it);
    - new output rows of a matrix, and new bias entries, keep their fresh initialisation (rows) or
      start at zero (biases).
    So a config with a wider feed-forward layer (model.d_ff) computes exactly what the bundle did:
    the new hidden units are random, but the layer after them reads them with zero weights until
    training moves those. Returns what was not in the bundle."""
    from sideman.model.bundle import load_bundle
    landed = load_bundle(folder).model
    for field in ("d_model", "n_heads", "n_layers"):   # width, heads: would compute otherwise; depth: not written
        if getattr(landed.config, field) != getattr(model.config, field):
            raise SystemExit(f"sideman-train fit: --init-from {folder}: model.{field} is "
                             f"{getattr(landed.config, field)} there and {getattr(model.config, field)} in this "
                             f"config; only d_ff (and new inputs) can grow")
    source = landed.state_dict()
    own = model.state_dict()
    missing = []
    with torch.no_grad():
        for name, tensor in own.items():
            old = source.get(name)
            if old is None:
                missing.append(name)
            elif old.shape == tensor.shape:
                tensor.copy_(old)
            elif old.dim() == tensor.dim() and all(o <= t for o, t in zip(old.shape, tensor.shape)):
                if old.dim() == 2 and old.shape[1] < tensor.shape[1]:
                    tensor[:, old.shape[1]:] = 0.0
                elif old.dim() == 1:
                    tensor.zero_()
                tensor[tuple(slice(0, n) for n in old.shape)] = old
            else:
                raise SystemExit(f"sideman-train fit: --init-from {folder}: {name} is {tuple(old.shape)} "
                                 f"there and {tuple(tensor.shape)} in this config")
    return missing


@torch.no_grad()
def validate(model, batches: list[dict], device, autocast, style_row: int | None = None) -> float:
    """Bits/event over the batches' AI events, each window under its own style row, or all under
    style_row."""
    model.eval()
    bits, count = 0.0, 0.0
    for batch in batches:  # (fit refuses to start without validation windows)
        if style_row is not None:
            batch = {**batch, "style": np.full_like(batch["style"], style_row)}
        with autocast():
            b, n = masked_bits(model, to_torch(batch, device, model.config.n_styles))
        bits += float(b)
        count += float(n)
    model.train()
    return bits / max(count, 1.0)


def run(args) -> int:
    config = load_config(args.config)
    if args.steps:
        config["train"]["steps"] = args.steps
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(args.device)
    if distributed:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    say = print if is_main else (lambda *a, **k: None)

    cache = Path(args.cache or config["data"]["cache"])
    if is_main:  # one rank builds a missing cache; the others wait for it
        ensure_cache(cache, args.pijama, say=say)
    if distributed:
        dist.barrier()
    run_dir = args.run_dir or Path("runs") / args.config.stem
    run_dir.mkdir(parents=True, exist_ok=True)

    if config["train"]["threads"]:
        torch.set_num_threads(int(config["train"]["threads"]))
    seed = int(config["train"]["seed"]) + rank
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    try:
        data = training_data(cache, config, rng)
    except CorpusError as exc:
        raise SystemExit(f"sideman-train fit: {exc}") from None
    if config["data"]["default_style"] not in {s.name for s in data.styles}:
        raise SystemExit(f"sideman-train fit: data.default_style {config['data']['default_style']!r} is not "
                         f"among this corpus's styles ({', '.join(s.name for s in data.styles)})")
    say(f"styles: {len(data.styles)} rows ({', '.join(s.name for s in data.styles[:8])}, …); "
        f"train {data.train_events:,} events in {data.train_performances} performances")
    model_config = ModelConfig.from_dict({**config["model"], "context": config["data"]["context"],
                                          "n_styles": data.n_style_rows, "n_modes": len(MODEL_MODES)})
    model = JazzTransformer(model_config)
    if args.init_from and not (args.resume and (run_dir / "checkpoint.pt").exists()):
        missing = init_from_bundle(model, args.init_from)
        say(f"started from {args.init_from}" + (f" (new: {', '.join(missing)})" if missing else ""))
    model = model.to(device)
    say(f"model: {model.parameter_count() / 1e6:.2f} M parameters on {device}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["train"]["lr"],
                                  weight_decay=config["train"]["weight_decay"], betas=(0.9, 0.98))
    amp = config["train"].get("amp", "auto")
    if amp not in ("auto", True, False):
        raise SystemExit(f"sideman-train fit: train.amp must be \"auto\", true or false, not {amp!r}")
    use_amp = (device.type == "cuda" or cpu_has_fast_bf16()) if amp == "auto" else bool(amp)
    say(f"precision: {'bf16 autocast' if use_amp else 'fp32'} (amp = {amp!r})")

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)

    start_step, best_val, history, rivals_state = 0, float("inf"), [], None
    checkpoint_path, best_path = run_dir / "checkpoint.pt", run_dir / "best.pt"
    if args.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, best_val, history = state["step"], state["best_val"], state["history"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        rivals_state = state.get("rivals")
        if distributed:  # only rank 0's random state is saved: give each rank its own stream again
            rng = np.random.default_rng([seed, rank, start_step])
            torch.manual_seed(seed * 1_000_003 + start_step)
        say(f"resumed at step {start_step} (best val {best_val:.3f} bits/event)")
    trained = EventLoss(model)
    contrast, margin_bits = float(config["train"]["style_contrast"]), float(config["train"]["style_margin_bits"])
    if contrast > 0 and distributed:  # DDP's reducer allows one forward per backward
        raise SystemExit("sideman-train fit: train.style_contrast needs a second forward pass per step, "
                         "which DistributedDataParallel does not allow; train it on one process")
    rivals = None
    if contrast > 0:
        rivals = Rivals(np.array([s.row for s in data.styles]), data.n_style_rows,
                        float(config["train"]["rival_temperature_bits"]))
        rivals.load(rivals_state)
    select = config["train"]["select"]
    if select not in ("val", "last"):
        raise SystemExit(f"sideman-train fit: train.select must be \"val\" or \"last\", not {select!r}")
    if distributed:
        trained = torch.nn.parallel.DistributedDataParallel(trained, device_ids=[device.index] if device.type == "cuda" else None)

    val_sets = {name: validation_batches(split, data, config) for name, split in data.validation.items()}
    if not val_sets.get(data.selection_split):
        raise SystemExit(f"sideman-train fit: no validation performance is longer than the context "
                         f"({config['data']['context']} events): nothing to select the model on")
    sampler = data.sampler(rng)
    train_cfg = config["train"]
    steps, batch_size = train_cfg["steps"], config["data"]["batch_size"]
    eval_every = train_cfg["eval_every"]
    budget_start = time.monotonic()
    deadline = budget_start + 60 * args.max_minutes if args.max_minutes else None
    began = time.monotonic() - (history[-1]["elapsed_s"] if history else 0.0)
    csv_path = run_dir / "loss.csv"
    window_bits, window_count, window_margins = 0.0, 0.0, []

    from tqdm import tqdm
    bar = tqdm(range(start_step, steps), initial=start_step, total=steps, disable=not is_main,
               desc="fit", unit="step", dynamic_ncols=True)
    step = start_step
    for step in bar:
        time_share = 0.0
        if deadline is not None:
            time_share = (time.monotonic() - budget_start) / (deadline - budget_start)
        if distributed:  # every rank follows rank 0's clock: same learning rate, same last step
            shared = torch.tensor([time_share], device=device)
            dist.broadcast(shared, src=0)
            time_share = float(shared)
        lr = learning_rate(step, train_cfg, time_share)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = to_torch(sampler.batch(batch_size), device, data.n_style_rows)
        with autocast():
            nats = trained(batch)
            bits, count = weighted_bits(nats, batch, train_cfg["human_weight"])
            loss = bits / count.clamp(min=1.0)
            if contrast > 0:  # on half the windows: the second pass then costs half a step
                half = {k: v[: batch_size // 2] for k, v in batch.items()}
                own_rows = half["style"].cpu().numpy()
                rival_rows = rivals.draw(own_rows, rng)
                hinge, margins = style_contrast(trained, half, nats[: batch_size // 2],
                                                torch.as_tensor(rival_rows, device=device), margin_bits)
                loss = loss + contrast * hinge
                rivals.update(own_rows, rival_rows, margins.float().cpu().numpy())
                window_margins.extend(m for m in margins.float().cpu().numpy() if np.isfinite(m))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg["grad_clip"])
        optimizer.step()
        window_bits += float(bits.detach())
        window_count += float(count)
        last = step + 1 == steps or time_share >= 1.0
        if is_main and ((step + 1) % eval_every == 0 or last):
            row = {"step": step + 1, "train_bits": window_bits / max(window_count, 1.0),
                   "lr": lr, "elapsed_s": time.monotonic() - began}
            if window_margins:
                row["train_margin_bits"] = float(np.mean(window_margins))
            window_bits, window_count, window_margins = 0.0, 0.0, []
            for name, batches in val_sets.items():
                row[f"val_{name}_bits"] = validate(model, batches, device, autocast)
            focus = config["data"]["default_style"]
            if focus in val_sets:  # on the focus pianist's val windows, how much his row beats "others"
                row[f"val_{focus}_margin_bits"] = (validate(model, val_sets[focus], device, autocast, style_row=0)
                                                   - row[f"val_{focus}_bits"])
            row["val_bits"] = row[f"val_{data.selection_split}_bits"]
            history.append(row)
            _write_history(csv_path, history)
            improved = row["val_bits"] < best_val or not best_path.exists()
            if improved:
                best_val = row["val_bits"]
            if improved or select == "last":
                save_torch_atomically({"model": model.state_dict(), "step": step + 1, "row": row}, best_path)
            save_torch_atomically({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "step": step + 1, "best_val": best_val, "history": history,
                                   "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                                   "rivals": rivals.state() if rivals else None},
                                  checkpoint_path)
            bar.set_postfix(train=f"{row['train_bits']:.2f}", val=f"{row['val_bits']:.2f}", best=f"{best_val:.2f}")
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if last:
            break
    bar.close()
    if is_main:
        from sideman_train.plots import loss_curve_png
        loss_curve_png(csv_path, run_dir / "loss.png", title=f"{args.config.stem}: bits/event")
        summary = {"config": str(args.config), "steps_done": step + 1, "best_val_bits": best_val,
                   "history_tail": history[-3:], "device": str(device),
                   "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
        write_json_atomically(run_dir / "summary.json", summary)
        if args.out:
            best = torch.load(best_path, map_location="cpu", weights_only=False)
            model.load_state_dict(best["model"])
            training = {**summary, "best_step": best["step"], "best_row": best["row"],
                        "train_events": data.train_events, "train_performances": data.train_performances,
                        "wall_time_s": history[-1]["elapsed_s"] if history else 0.0,
                        "data": config["data"], "train": train_cfg}
            save_bundle(args.out, model.cpu(), data.styles, default_style=config["data"]["default_style"],
                        training=training)
            say(f"wrote {args.out}/manifest.json (step {best['step']}, val {best['row']['val_bits']:.3f} "
                f"bits/event; select = {select!r})")
    if distributed:
        dist.destroy_process_group()
    return 0


def _write_history(path: Path, history: list[dict]) -> None:
    columns = ["step", "train_bits", "val_bits", "lr", "elapsed_s"]
    for row in history:
        columns += [k for k in row if k not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_atomically(path, text.getvalue().encode("utf-8"))

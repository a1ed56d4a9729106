"""`sideman-train finetune`: a new pianist's style from 50–200 of their MIDI files, without the base
corpus. The base network stays frozen; the new style is one row of the style table (a spare row, so
the exported graphs, which take the style vector as an input, serve it unchanged). The style is then
listed in the model's manifest with the others, which is where the live voice's style knob reads them.

    sideman-train finetune --model models/transformer --pijama ../shared/data/pijama \
        --pianist "Dave McKenna" --split train --limit 50 --name mckenna

Optional LoRA adapters (--lora-rank, via peft) also adapt the attention projections; they change the
weights, so the result is written as a new model folder (--out), merged.

The new row starts from the base style that best explains the held-out files (--init nearest).
Model selection: a tenth of the files (at least one) is held out; the step with the lowest held-out
bits is kept, and nothing is written unless it beats the base model's best style there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from sideman.model.bundle import (MANIFEST, Style, read_manifest, save_bundle,
                                  save_torch_atomically, sha256_of, write_json_atomically)
from sideman.model.conditioning import MODEL_MODES
from sideman_train.batches import performance_windows, to_torch
from sideman_train.corpus import CorpusError, CorpusSplit, add_corpus_options, list_performances
from sideman_train.duets import WindowSampler
from sideman_train.evaluate import event_arrays, examples_bits, open_model, read_all

LN2 = float(np.log(2.0))


def add_commands(commands) -> None:
    p = commands.add_parser("finetune", help="a new pianist's style from 50–200 MIDI files")
    p.add_argument("--model", required=True, type=Path, help="base model folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pijama", dest="folder", type=Path, metavar="PIJAMA", help="the PiJAMA folder (with --pianist)")
    add_corpus_options(p, "folder of the pianist's MIDI files, or PiJAMA with --pianist", "PiJAMA: the pianist",
                       source)
    p.add_argument("--split", help="PiJAMA: the split to take files from (train)")
    p.add_argument("--limit", type=int, help="use at most this many files")
    p.add_argument("--name", required=True, help="the style's knob name, e.g. mckenna")
    p.add_argument("--out", type=Path, help="model folder to write (default: add the style to --model)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--init", default="nearest",
                   help="the row to start from: nearest (the base style that best explains the held-out "
                        "files), others, or a style name")
    p.add_argument("--lr", type=float, default=5e-3, help="learning rate of the style row (rows are ~0.02 per coordinate)")
    p.add_argument("--lora-rank", type=int, default=0, help="also train LoRA adapters of this rank (peft)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def split_of(arrays: list[dict], name: str) -> CorpusSplit:
    offsets = np.concatenate([[0], np.cumsum([a["pitch"].size for a in arrays])]).astype(np.int64)
    joined = {k: np.concatenate([a[k] for a in arrays]) for k in arrays[0]}
    return CorpusSplit(split=name, offsets=offsets, performances=[{} for _ in arrays], **joined)


def held_out_bits(model, examples: list[dict], style_weights: torch.Tensor) -> float:
    bits, count = examples_bits(model, examples, style_weights)
    return bits / max(count, 1)


def run(args) -> int:
    started = time.perf_counter()
    bundle = open_model(args.model, "finetune")
    if bundle is None:
        return 2
    if any(s.name == args.name for s in bundle.styles):
        print(f"sideman-train finetune: the model already has a style {args.name!r}", file=sys.stderr)
        return 2
    model = bundle.model
    row = max(s.row for s in bundle.styles) + 1
    if row >= model.config.n_styles:
        print(f"sideman-train finetune: no spare style row left ({model.config.n_styles} rows used)", file=sys.stderr)
        return 2
    if args.init != "nearest" and args.init not in {s.name for s in bundle.styles}:
        print(f"sideman-train finetune: --init {args.init!r} is not a style of {args.model}", file=sys.stderr)
        return 2
    if args.lora_rank and not args.out:
        print("sideman-train finetune: --lora-rank changes the weights: give --out (a new model folder)", file=sys.stderr)
        return 2
    try:
        performances = read_all(list_performances(args.folder, args.pianist, args.split), args.limit)
    except CorpusError as exc:
        print(f"sideman-train finetune: {exc}", file=sys.stderr)
        return 2
    length = model.config.context
    arrays = [event_arrays(events) for _, events in performances]
    arrays = [a for a in arrays if a["pitch"].size > length]
    if len(arrays) < 2:
        print(f"sideman-train finetune: need at least 2 performances longer than {length} events", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    order = rng.permutation(len(arrays))
    n_held = max(1, len(arrays) // 10)
    held = [arrays[i] for i in order[:n_held]]
    train = split_of([arrays[i] for i in order[n_held:]], "finetune")
    print(f"{args.name}: {len(arrays) - n_held} files to learn from, {n_held} held out; base: {args.model}")

    for p in model.parameters():
        p.requires_grad_(False)
    model.style_table.requires_grad_(True)
    trainable = [model.style_table]
    if args.lora_rank:
        from peft import LoraConfig, get_peft_model
        lora = LoraConfig(r=args.lora_rank, lora_alpha=2 * args.lora_rank, lora_dropout=0.0,
                          target_modules=["qkv", "out"])
        model = get_peft_model(model, lora)
        model.base_model.model.style_table.requires_grad_(True)
        trainable = [p for p in model.parameters() if p.requires_grad]
    net = model.base_model.model if args.lora_rank else model
    row_mask = torch.zeros(net.config.n_styles, 1)
    row_mask[row] = 1.0
    optimizer = torch.optim.Adam([{"params": [net.style_table], "lr": args.lr},
                                  {"params": [p for p in trainable if p is not net.style_table], "lr": 1e-3}])
    one_hot = torch.zeros(1, net.config.n_styles)
    one_hot[0, row] = 1.0
    held_examples = [ex for a in held for ex in performance_windows(a, length)]
    probs = np.array([{"solo": 0.6, "answer": 0.2, "comp": 0.1, "duet": 0.1}[m] for m in MODEL_MODES])
    sampler = WindowSampler(train, np.full(len(train), row), length, rng, mode_probs=probs,
                            augment_cfg={"transpose": (-3, 3), "stretch": (0.95, 1.05), "velocity_jitter": 3.0})
    net.eval()  # no dropout: only the style row (and adapters) move
    # Start from a base style: by default the one that already explains the held-out files best
    # (the nearest pianist), so the new style only has to beat the base model where it is strongest.
    if args.init == "nearest":
        scores = {s.name: held_out_bits(net, held_examples, bundle.style_weights({s.name: 1.0})) for s in bundle.styles}
        start = min(scores, key=scores.get)
    else:
        start = args.init
        scores = {start: held_out_bits(net, held_examples, bundle.style_weights({start: 1.0}))}
    with torch.no_grad():
        net.style_table[row] = net.style_table[bundle.style(start).row]
    base_bits = scores[start]
    best_bits, best_state, best_step = base_bits, None, 0
    print(f"held out, base model's best style ({start}): {base_bits:.3f} bits/event; "
          f"'others': {scores.get('others', float('nan')):.3f}")
    from tqdm import tqdm
    for step in tqdm(range(args.steps), desc="finetune", unit="step", dynamic_ncols=True):
        batch = to_torch(sampler.batch(args.batch_size), "cpu", net.config.n_styles)
        batch["style_weights"] = one_hot.expand(args.batch_size, -1)
        nats = net.event_nats(batch)
        loss = (nats * batch["loss_mask"]).sum() / batch["loss_mask"].sum().clamp(min=1) / LN2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        net.style_table.grad *= row_mask  # only the new row learns
        optimizer.step()
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            bits = held_out_bits(net, held_examples, one_hot)
            tqdm.write(f"step {step + 1}: train {float(loss.detach()):.3f}, held out {bits:.3f} bits/event")
            if bits < best_bits:
                best_bits, best_step = bits, step + 1
                best_state = {"embedding": net.style_table[row].detach().clone()}
                if args.lora_rank:
                    best_state["lora"] = {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}
    if best_state is None:
        print(f"sideman-train finetune: the new style never beat the base model's best style ({start}) "
              f"on the held-out files ({base_bits:.3f} bits/event); nothing written", file=sys.stderr)
        return 1
    info = {"files": len(arrays), "held_out_files": n_held, "steps": args.steps, "best_step": best_step,
            "init": start, "held_out_bits_base": round(base_bits, 4), "held_out_bits": round(best_bits, 4),
            "lora_rank": args.lora_rank, "seconds": round(time.perf_counter() - started, 1),
            "source": str(args.folder), "artist": args.pianist or ""}
    style = Style(args.name, args.pianist or args.name, row, source="finetune", info=info)
    if args.lora_rank:  # new folder, adapters merged into the weights
        model.load_state_dict({**model.state_dict(), **best_state["lora"]})
        merged = model.merge_and_unload()
        with torch.no_grad():
            merged.style_table[row] = best_state["embedding"]
        manifest = read_manifest(args.model)
        # Earlier fine-tuned styles are rows of the merged table now, not separate files.
        from dataclasses import replace as _replace
        styles = [_replace(s, file=None, sha256=None) for s in bundle.styles]
        save_bundle(args.out, merged, styles + [style], bundle.default_style,
                    training={**manifest.get("training", {}), "finetune": info})
        target = args.out
    else:
        target = args.out or args.model
        if args.out and args.out != args.model:
            import shutil
            shutil.copytree(args.model, args.out, dirs_exist_ok=True)
        style.file = f"styles/{args.name}.pt"
        save_torch_atomically({"embedding": best_state["embedding"]}, target / style.file)
        style.sha256 = sha256_of(target / style.file)
        manifest = read_manifest(target)
        manifest["styles"].append(style.to_dict())
        write_json_atomically(target / MANIFEST, manifest)
    print(f"{args.name}: held out {best_bits:.3f} bits/event (base, as {start}: {base_bits:.3f}); "
          f"style row {row} written to {target}")
    return 0

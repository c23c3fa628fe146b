"""GPU figures (issue 17, item 4), prepared so that a lent device spends its few minutes measuring.

    python bench/gpu.py prepare                                # here: bench/_work/gpu/ (~1 MB)
    python3 bench/gpu.py run --out $OUT/gpu-cuda.json          # on the device, carrying bench/_work/gpu
    python bench/gpu.py run --device cpu --size tiny ...       # the suite's smoke run

The device has its image's packages only (torch, transformers, safetensors, pandas, pyarrow, pillow;
no Snakemake, jsonschema, or the pip packages that ship our model and data), and reaches nothing. So
`prepare` copies from here what the run cannot build (all-MiniLM-L6-v2's config and tokenizer, one
real train split, the validated config), and `run` builds random weights of the real shapes there:
throughput does not depend on the values. Each figure is a ratio measured side by side in the run:

P2      merge per mask, N = 8 fine-tunes of a CLIP ViT-B/32 (the clip family merges its vision tower,
        87.8 M parameters): the engine's pool (average and task arithmetic) against an in-memory
        Gray-code running sum on the same device, and beside them all 255 masks as one batched matmul
        (the issue's anchor: 0.33 ms a mask on an H100).
images  merge_eval's scoring (engine.score's forward, the target split at 224 px) in images/s against
        a raw forward loop over the same images already normalised on the device.
P4      our fine-tune end to end against a raw loop (bench/finetune.py's measure), all-MiniLM-L6-v2's
        shape and tokenizer, a real train split.

A section that fails is recorded with its error and the others still run (exit 1 then).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "bench"))

PREPARED = REPO / "bench" / "_work" / "gpu"
TEMPLATES = ["a photo of the digit {}."]


def prepare(config: Path, dest: Path, workdir: Path) -> Path:
    """Here, where the packages are: the model's files but its weights, the first candidate's train
    split, and the validated config, into `dest` (replaced)."""
    from finetune import prepared_split
    from merge2mix import assets, config as config_mod
    from provenance import commit

    cfg = config_mod.load(config)
    plan = config_mod.Plan(cfg)
    name = plan.candidates[0]
    split = prepared_split(config, plan, name, workdir)
    source = Path(assets.model_source(cfg))
    if not source.is_dir():
        sys.exit(f"gpu bench: model {source}: a local model directory is needed (the device reaches no Hub)")
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "minilm").mkdir(parents=True)
    for f in source.iterdir():  # config and tokenizer; the weights are drawn on the device
        if f.is_file() and f.suffix not in (".safetensors", ".bin", ".pt", ".pth", ".h5", ".onnx", ".msgpack"):
            shutil.copy2(f, dest / "minilm" / f.name)
    shutil.copy2(split, dest / "train.parquet")
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip())
    (dest / "prepared.json").write_text(json.dumps({"config": cfg, "dataset": name, "model": str(source),
                                                    "commit": commit(), "uncommitted_changes": dirty}, indent=2))
    print(f"prepared: {dest} ({sum(f.stat().st_size for f in dest.rglob('*') if f.is_file()) / 1e6:.1f} MB)")
    return dest


def clip_pool(work: Path, size: str, n: int, seed: int = 0):
    """theta_0 (a random CLIP of `size`, saved as the clip family saves it) and n fine-tunes: theta_0
    with the merged tensors (the vision tower) perturbed, the rest theta_0's as the engine requires."""
    import torch

    from merge2mix import families
    from merge2mix.checkpoints import load_weights, save_weights
    from pools import make_clip

    fam = families.get("clip")
    base = work / "base"
    if not (work / f"ft{n - 1}.safetensors").exists():
        fam.init_base(str(make_clip(work / "source", size, seed)), str(base), {"type": "clip"}, seed)
        theta = load_weights(base / "model.safetensors")
        g = torch.Generator().manual_seed(seed)
        for i in range(n):
            save_weights({k: v + 0.01 * torch.randn(v.shape, generator=g) if fam.is_merged(k, v) else v
                          for k, v in theta.items()}, work / f"ft{i}.safetensors")
    return fam, base, {f"ft{i}": str(work / f"ft{i}.safetensors") for i in range(n)}


def batched_matmul(rows, names: list[str], masks: list[str], sync, chunk: int = 1 << 21) -> float:
    """All masks' averages as one (masks x N) @ (N x P) product over `rows` (merge_eval.flat_rows of
    `names`, in that order), P in chunks: the anchor's method.
    Seconds for all masks (the product is computed, not written into a model); checked to be the
    averages (the all-members mask against the plain mean) before it is reported."""
    import torch

    dev = rows.device
    w = torch.zeros(len(masks), len(names), device=dev)
    for i, m in enumerate(masks):
        members = m.split("+")
        for x in members:
            w[i, names.index(x)] = 1.0 / len(members)
    out = torch.empty(len(masks), min(chunk, rows.shape[1]), device=dev)
    best = float("inf")
    for _ in range(3):  # the best of three: a kernel's first call pays its set-up
        sync()
        t0 = time.perf_counter()
        for s in range(0, rows.shape[1], chunk):
            part = rows[:, s : s + chunk]
            torch.matmul(w, part, out=out[:, : part.shape[1]])
        sync()
        best = min(best, time.perf_counter() - t0)
    last = rows[:, (rows.shape[1] - 1) // chunk * chunk :]  # what `out` holds: the last chunk's products
    if not torch.allclose(out[:, : last.shape[1]], w @ last, rtol=1e-4, atol=1e-6) or not torch.allclose(
            out[masks.index("+".join(names)), : last.shape[1]], last.mean(0), rtol=1e-4, atol=1e-6):
        raise AssertionError("batched matmul: the product is not the masks' averages")
    return best


def section_p2(work: Path, size: str, n: int, dev, sync, repeats: int) -> dict:
    from itertools import combinations

    from merge_eval import flat_rows, merge_per_mask
    from merge2mix.config import AVERAGE

    fam, base, ckpt = clip_pool(work, size, n)
    names = sorted(ckpt)
    masks = ["+".join(c) for k in range(1, n + 1) for c in combinations(names, k)]
    order = list(masks)
    random.Random(0).shuffle(order)
    ops = {"average": AVERAGE, "task_arithmetic": {"method": "task_arithmetic", "params": {"lambda_power": 0.5}}}
    rows = flat_rows(fam, [ckpt[x] for x in names], dev)  # read once: the Gray-code reference's and the anchor's
    med, ratios, reps, pool = merge_per_mask(fam, str(base), dev, ckpt, rows, ops, order, repeats, sync)
    numel, pool = pool.numel, None  # its rows and sums go before the anchor's product buffer
    bmm = batched_matmul(rows, names, masks, sync)
    per = {k: 1000 * v / len(order) for k, v in med.items()}
    return {"n": n, "masks": len(order), "merged_params": numel, "ms_per_mask": {**{k: round(v, 4) for k, v in per.items()},
            "batched_matmul": round(1000 * bmm / len(masks), 4)},
            "P2_engine_over_gray_code": round(ratios["average"], 3),
            "P2_task_arithmetic_over_gray_code": round(ratios["task_arithmetic"], 3),
            "engine_over_batched_matmul": round(per["average"] / (1000 * bmm / len(masks)), 3),
            "repeats_s": [{k: round(v, 4) for k, v in r.items()} for r in reps],
            "anchor_ms_per_mask_h100": 0.33, "target": {"P2": "<= 2"}}


def synthetic_images(path: Path, count: int, classes: list[str], seed: int = 0) -> Path:
    """`count` random 64 x 64 RGB images (PNG in an `image` column, as every image split is stored),
    labels drawn from `classes`; decoding scales them to the model's size."""
    import numpy as np
    import pandas as pd

    from merge2mix.data.images import to_png

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"image": [to_png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(count)],
                       "label": [classes[i % len(classes)] for i in range(count)]})
    df.to_parquet(path)
    return path


def section_images(work: Path, size: str, n: int, dev, sync, count: int, batch_size: int, threads: int, n_masks: int) -> dict:
    import pandas as pd
    import torch
    import torch.nn.functional as F

    from merge2mix import engine
    from merge2mix.families import clip
    from merge2mix.job import Job

    _, base, ckpt = clip_pool(work, size, n)
    classes = [str(d) for d in range(10)]
    val = synthetic_images(work / "val.parquet", count, classes)
    head = clip.build_head(str(base), classes, TEMPLATES, str(work / "head.safetensors"), dev)
    job = Job(base_dir=str(base), task={"type": "clip", "templates": TEMPLATES}, device=str(dev), threads=threads,
              batch_size=batch_size, heads={"synthetic": str(work / "head.safetensors")})
    names = sorted(ckpt)
    masks = ["+".join(sorted(random.Random(i).sample(names, 1 + i % len(names)))) for i in range(n_masks)]
    engine.clear_cache()
    engine.score(job, ckpt, str(val), mode="memory", pool=names)  # warm: the pool loaded, the split decoded
    ours = [engine.score(job, {x: ckpt[x] for x in m.split("+")}, str(val), mode="memory", pool=names)["eval_s"] for m in masks]

    model = clip.load_model(str(base), dev).eval()
    processor = clip.load_processor(str(base))
    split = clip.encode(processor, pd.read_parquet(val), job.task, job.heads)
    pixels = split.batch(list(range(len(split))), dev)["pixel_values"]  # normalised once, on the device
    h = head.to(dev)
    raw = []
    with torch.inference_mode():
        for _ in range(len(masks)):
            sync()
            t0 = time.perf_counter()
            for s in range(0, len(pixels), batch_size):
                f = model.get_image_features(pixel_values=pixels[s : s + batch_size])
                f = f if isinstance(f, torch.Tensor) else f.pooler_output  # transformers 5 returns an output object
                (model.logit_scale.exp() * F.normalize(f, dim=-1) @ h.T).argmax(-1)
            sync()
            raw.append(time.perf_counter() - t0)
    engine.clear_cache()  # the pool's rows and sums go before P4
    ours_ips, raw_ips = count * len(ours) / sum(ours), count * len(raw) / sum(raw)
    return {"images": count, "image_size": clip.image_size(processor, job.task), "batch_size": batch_size,
            "masks": len(masks), "ours_images_per_s": round(ours_ips, 1), "raw_images_per_s": round(raw_ips, 1),
            "ours_over_raw": round(ours_ips / raw_ips, 3), "ours_eval_s": ours, "raw_s": [round(x, 4) for x in raw]}


def section_p4(prepared: Path, work: Path, dev, threads: int, repeats: int, steps: int) -> dict:
    import torch
    from transformers import AutoConfig, AutoModel

    from finetune import measure

    meta = json.loads((prepared / "prepared.json").read_text())
    model_dir = work / "minilm"
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(prepared / "minilm", model_dir)
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(model_dir)).save_pretrained(model_dir)  # random weights, real shape
    measure(meta["config"], prepared / "train.parquet", meta["dataset"], str(model_dir), str(dev), threads, 1, 2)  # warm-up
    res = measure(meta["config"], prepared / "train.parquet", meta["dataset"], str(model_dir), str(dev), threads, repeats, steps)
    return {"model_shape_of": meta["config"]["model"], "weights": "random (torch.manual_seed(0))", **res}


def run(a) -> int:
    import torch

    from merge2mix import runtime
    from provenance import commit, machine

    dev = runtime.setup(a.threads, a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if not (Path(a.prepared) / "prepared.json").is_file():
        sys.exit(f"gpu bench: {a.prepared}/prepared.json not found: run `python bench/gpu.py prepare` first (where the packages are)")
    prepared = json.loads((Path(a.prepared) / "prepared.json").read_text())
    res = {"command": "python bench/gpu.py " + " ".join(sys.argv[1:]),
           # the device's copy of the tree may have no git: the commit `prepare` saw (the tree sent is that checkout)
           "commit": commit() if shutil.which("git") and (REPO / ".git").exists() else prepared["commit"],
           "prepared_at_commit": prepared["commit"], "prepared_with_uncommitted_changes": prepared["uncommitted_changes"],
           "machine": machine(threads=a.threads, python=platform.python_version(), torch=torch.__version__,
                              gpu=torch.cuda.get_device_name(0) if dev.type == "cuda" else None),
           "device": str(dev), "size": a.size}
    sections = {
        "p2": lambda: section_p2(work / "clip", a.size, a.n, dev, sync, a.repeats),
        "images": lambda: section_images(work / "clip", a.size, a.n, dev, sync, a.images, a.batch_size, a.threads, a.masks),
        "p4": lambda: section_p4(Path(a.prepared), work, dev, a.threads, a.repeats, a.p4_steps),
    }
    failed = []
    for name in a.only or sections:
        t0 = time.perf_counter()
        print(f"[gpu] {name} ...", flush=True)
        try:
            res[name] = sections[name]()
        except Exception as e:  # record it and go on: one lease, every figure it can give
            failed.append(name)
            res[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            print(res[name]["traceback"], file=sys.stderr)
        res[name]["section_s"] = round(time.perf_counter() - t0, 1)
        print(f"[gpu] {name}: {json.dumps({k: v for k, v in res[name].items() if not isinstance(v, (list, dict))})}", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written: {out}")
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="here: copy what the device run needs into --dest")
    p.add_argument("--config", type=Path, default=REPO / "config.yaml")
    p.add_argument("--dest", type=Path, default=PREPARED)
    p.add_argument("--workdir", type=Path, default=REPO, help="where the config's relative results paths start")
    r = sub.add_parser("run", help="on the device: measure and write --out")
    r.add_argument("--device", default="cuda")
    r.add_argument("--size", default="vit-b32", choices=["tiny", "vit-b32"], help="the CLIP's shape (bench/pools.py)")
    r.add_argument("--n", type=int, default=8, help="fine-tunes in the P2 pool (2^n - 1 masks)")
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--images", type=int, default=1024, help="images in the scored split")
    r.add_argument("--batch-size", type=int, default=256)
    r.add_argument("--masks", type=int, default=8, help="masks scored for images/s")
    r.add_argument("--p4-steps", type=int, default=300, help="fine-tune steps (a GPU step is short: fixed costs need amortising)")
    r.add_argument("--threads", type=int, default=4)
    r.add_argument("--prepared", default=str(PREPARED))
    r.add_argument("--work", default="/tmp/merge2mix-gpu", help="scratch folder (random models, ~5 GB at vit-b32)")
    r.add_argument("--only", nargs="*", choices=["p2", "images", "p4"], default=None)
    r.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu-cuda.json"))
    a = ap.parse_args(argv)
    if a.cmd == "prepare":
        prepare(a.config, a.dest, a.workdir)
        return 0
    return run(a)


if __name__ == "__main__":
    sys.exit(main())

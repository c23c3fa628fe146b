"""P4: our fine-tune's throughput against a minimal raw PyTorch loop, measured side by side in one run
(issue "Speed where users wait", item 1).

    python bench/finetune.py                              # the embedded default's model and first candidate
    python bench/finetune.py --config my.yaml --dataset airline --repeats 3

Both train the same model (theta_0 with a seeded classification head, built here from the config's
model), on the same prepared train split (results/<run>/data/<dataset>/train.parquet, made first if
missing), with the same batch size, AdamW groups, gradient clipping and warm-up/linear-decay schedule,
for the same number of steps, on the same threads:
- ours: merge2mix.train.finetune, timed end to end (load, tokenise, train, save the safetensors) -
  everything a fine-tune job does after Python and torch are imported;
- raw: a plain loop over AutoModelForSequenceClassification, timed from the first step to the last
  (model load and tokenising excluded), i.e. the loop alone.
So P4 = raw ms/step / our ms/step is a lower bound on the loop's own efficiency (goal >= 0.9). The two
alternate `--repeats` times so machine noise lands on both. Task: text_classification with a trained
head over the config's task.labels (a frozen label-description head costs the same encoder passes).

Writes bench/results/finetune-<device>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

from merge2mix import assets, config as config_mod  # noqa: E402  (light: no torch)
from provenance import commit, machine, snakemake, workflow_env  # noqa: E402


def prepared_split(cfg_path: Path, plan: config_mod.Plan, name: str, workdir: Path) -> Path:
    path = Path(plan.run_dir) / "data" / name / "train.parquet"
    if not (workdir / path).exists():
        cmd = snakemake(path, "--cores", "1", "--configfile", cfg_path)
        if subprocess.run(cmd, cwd=workdir, env=workflow_env()).returncode:
            sys.exit(f"finetune bench: could not prepare {path}")
    return workdir / path


def raw_loop(base_dir: str, texts: list[str], labels: list[int], hp: dict, steps: int, seed: int, device="cpu") -> float:
    """The loop alone, in seconds: shuffled batches, dynamic padding, AdamW with and without decay,
    clipping, the same schedule."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(base_dir).to(device)
    model.train()
    enc = tok(texts, truncation=True, max_length=hp["max_length"])
    rows = [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
    y = torch.tensor(labels, device=device)
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": hp["weight_decay"]},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=hp["lr"])
    warm = int(hp["warmup_ratio"] * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    bs, gen = hp["batch_size"], torch.Generator().manual_seed(seed)
    t0, done, order = time.perf_counter(), 0, torch.randperm(len(rows), generator=gen)
    while done < steps:
        i = done % math.ceil(len(rows) / bs)
        if i == 0 and done:
            order = torch.randperm(len(rows), generator=gen)
        idx = order[i * bs : (i + 1) * bs].tolist()
        batch = {k: v.to(device) for k, v in tok.pad([rows[j] for j in idx], return_tensors="pt").items()}
        loss = model(**batch, labels=y[idx]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, hp["max_grad_norm"])
        opt.step()
        sched.step()
        float(loss.detach())  # what a loop that logs its loss pays (ours does; on a GPU it waits for the step)
        done += 1
    return time.perf_counter() - t0


def measure(cfg: dict, split: Path, name: str, source: str, device: str, threads: int, repeats: int,
            max_steps: int | None = None) -> dict:
    """P4 for one prepared train split: the raw loop and ours alternate `repeats` times on `device`, each
    from theta_0 built here from `source` (a Hub id or a local model directory) with a seeded head."""
    import pandas as pd
    import torch

    from merge2mix import families, runtime, train
    from merge2mix.job import Job

    df = pd.read_parquet(split)
    labels = cfg["task"].get("labels") or sorted(df["label"].unique())  # label_description heads: the split's classes
    task = {"type": "text_classification", "labels": list(labels), "max_length": cfg["task"]["max_length"]}
    hp = dict(cfg["train"])
    steps = max_steps or max(1, math.ceil(hp["epochs"] * math.ceil(len(df) / hp["batch_size"])))
    hp["max_steps"] = steps
    dev = runtime.setup(threads, device, cfg["seed"])
    fam = families.get("text_classification")
    with tempfile.TemporaryDirectory() as tmp:
        base = f"{tmp}/base"
        fam.init_base(source, base, task, cfg["seed"])
        index = {l: i for i, l in enumerate(task["labels"])}
        raw_s, ours_s = [], []
        for r in range(repeats):
            torch.use_deterministic_algorithms(False)  # ours turns it on (CPU); the raw loop runs as plain PyTorch does
            raw_s.append(raw_loop(base, df["text"].astype(str).tolist(), [index[l] for l in df["label"]],
                                  {**hp, "max_length": task["max_length"]}, steps, cfg["seed"], dev))
            rec = train.finetune(Job(base_dir=base, task=task, hp=hp, seed=cfg["seed"], device=str(dev), threads=threads),
                                 {name: str(split)}, f"{tmp}/ft{r}.safetensors", f"{tmp}/ft{r}.json")
            ours_s.append(rec["wall_time_s"])
            print(f"[bench] pair {r + 1}: raw {1000 * raw_s[-1] / steps:.0f} ms/step, ours {1000 * ours_s[-1] / steps:.0f} ms/step",
                  flush=True)
    raw_ms, ours_ms = 1000 * sum(raw_s) / len(raw_s) / steps, 1000 * sum(ours_s) / len(ours_s) / steps
    return {"device": str(dev), "dataset": name, "examples": len(df), "steps": steps,
            "batch_size": hp["batch_size"], "max_length": task["max_length"], "repeats": repeats,
            "raw_loop_ms_per_step": round(raw_ms, 1), "ours_end_to_end_ms_per_step": round(ours_ms, 1),
            "raw_runs_s": [round(x, 2) for x in raw_s], "ours_runs_s": [round(x, 2) for x in ours_s],
            "P4_raw_over_ours": round(raw_ms / ours_ms, 3), "target": {"P4": ">= 0.9"}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=REPO / "config.yaml")
    ap.add_argument("--dataset", default=None, help="the candidate whose train split both loops use (default: the first)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--repeats", type=int, default=2, help="raw/ours pairs, alternating")
    ap.add_argument("--max-steps", type=int, default=None, help="cap the steps (default: the config's epochs)")
    ap.add_argument("--workdir", type=Path, default=REPO, help="where the config's relative results paths start")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    cfg = config_mod.load(a.config)
    plan = config_mod.Plan(cfg)
    name = a.dataset or plan.candidates[0]
    split = prepared_split(a.config, plan, name, a.workdir)
    m = measure(cfg, split, name, assets.model_source(cfg), a.device, a.threads, a.repeats, a.max_steps)
    res = {"command": "python bench/finetune.py " + " ".join(argv if argv is not None else sys.argv[1:]), "commit": commit(),
           "machine": machine(threads=a.threads), "model": assets.model_source(cfg), **m}
    print(f"P4  raw loop {res['raw_loop_ms_per_step']} ms/step / ours end to end {res['ours_end_to_end_ms_per_step']} ms/step "
          f"= {res['P4_raw_over_ours']}  ({res['steps']} steps, batch {res['batch_size']}, {a.threads} threads, "
          f"{a.repeats} pairs, {res['device']})")
    out = a.out or REPO / "bench" / "results" / f"finetune-{'cpu' if res['device'] == 'cpu' else 'cuda'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

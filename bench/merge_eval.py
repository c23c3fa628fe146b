"""Benchmark of the merge-and-evaluate phase (issue "A merge-and-evaluate fan-out ..."). Prints ratios
measured in one run, side by side with their baselines, and writes them to bench/results/.

    python bench/merge_eval.py                       # the embedded default, 2 cores
    python bench/merge_eval.py --config my.yaml --cores 8 --naive-masks 4

P1  wall time of the whole merge_eval phase as Snakemake runs it (all 2^N - 1 jobs + select_mixture,
    Snakemake start-up included) / the in-process kernel time (merge + forward of every mask in one
    warm process). Beside it: the naive figure, one process per job (no workflow profile), and P1
    from one run: the phase / its own jobs' recorded merge + forward seconds.
P2  merge kernel per mask: the engine's exact prefix-sum path vs an in-memory Gray-code running sum
    (the incremental reference; not bit-exact) and vs recomputing each mean from the files.
P5  peak resident memory of a merging process above its import floor (torch + transformers imported),
    in units of one model (fp32), for the stream path (what auto picks when the pool does not fit) and
    the memory path, on a BERT-base-shaped random model (440 MB) so fixed costs do not hide the ratio.

The fine-tunes come from results/<run>/ (computed first if missing); the phase runs on a copy of them
under bench/_work/, so the results a user has are never touched.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "bench"))

from merge2mix import config as config_mod  # noqa: E402  (light: no torch)
from provenance import commit, machine, snakemake, with_stub_scontrol, workflow_env  # noqa: E402


ENV = workflow_env()
P2_REPEATS = 5


def run_snakemake(args, cwd, check=True):
    t0 = time.perf_counter()
    r = subprocess.run(snakemake(*args), cwd=cwd, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t0
    if check and r.returncode != 0:
        sys.exit(f"snakemake failed ({' '.join(args)}):\n{r.stderr[-3000:]}")
    return wall, r


def prepare_work(cfg_path: Path, cores: int, work: Path) -> tuple[Path, Path, config_mod.Plan]:
    cfg = config_mod.load(cfg_path)
    plan = config_mod.Plan(cfg)
    print(f"[bench] fine-tunes for {plan.run_dir} (computed now if missing) ...", flush=True)
    run_snakemake(["--cores", str(cores), "--configfile", str(cfg_path), "--until", "finetune"], REPO)
    shutil.rmtree(work, ignore_errors=True)
    src = REPO / plan.run_dir
    dst = work / "results" / cfg["run"]
    for part in ("base", "data", "heads", "finetune"):  # heads: families with frozen per-dataset heads
        if (src / part).is_dir():
            shutil.copytree(src / part, dst / part, copy_function=shutil.copy2)  # mtimes kept: nothing reruns
    import yaml

    # The config as written (the validated one has its task rewritten, e.g. task.head's), moved to work/.
    raw = {**yaml.safe_load(cfg_path.read_text()), "results_dir": str(work / "results")}
    for ds in raw["datasets"].values():
        if "local" in ds:
            ds["local"]["path"] = str((REPO / ds["local"]["path"]).resolve())

    wcfg = work / "config.yaml"
    wcfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    return work, wcfg, config_mod.Plan(config_mod.load(wcfg))


def phase(work, wcfg, plan, cores, profile: bool, masks=None):
    """Delete the given masks' results (all by default) and time Snakemake recomputing them."""
    out = work / "results" / plan.cfg["run"] / "merge_eval"
    masks = masks or plan.masks
    for m in masks:
        (out / f"{m}.json").unlink(missing_ok=True)
    args = ["--cores", str(cores), "--configfile", str(wcfg), "--rerun-triggers", "mtime"]
    if profile:
        args += ["--until", "select_mixture"]
        targets = []
    else:
        args += ["--workflow-profile", "none", "--scheduler", "greedy"]
        targets = [str(out / f"{m}.json") for m in masks]
    _, dry = run_snakemake([*args, "-n", *targets], work)
    planned = {l.split()[0]: int(l.split()[1]) for l in dry.stdout.splitlines() if len(l.split()) == 2 and l.split()[1].isdigit()}
    assert planned.get("merge_eval") == len(masks) and "finetune" not in planned, planned
    wall, _ = run_snakemake([*args, *targets], work)
    return wall


def in_run_kernel(plan) -> float:
    """The phase's masks' own merge + forward seconds, as each job recorded them (merge_s, eval_s) in
    the run just timed. P1 divides the phase by a kernel measured minutes later in another process;
    on a shared VM whose speed drifts by 2x within minutes that ratio moves with the machine (1.08 to
    1.40 on the same code, bench/results/p1-warm-forward/). Phase / this figure is the same ratio from
    one run: what Snakemake, start-up and loading add around the same work."""
    out = Path(plan.run_dir) / "merge_eval"
    recs = [json.loads((out / f"{m}.json").read_text()) for m in plan.masks]
    return sum(r["merge_s"] + r["eval_s"] for r in recs)


def kernel(plan, threads):
    """In one warm process, through the engine's public calls: per mask, merge + forward (what a mask
    costs once everything is loaded: engine.score's own merge_s and eval_s), then the merge alone
    (pool.Pool.merge) for the paper's average and the configured operator, against two references
    built here from the files: an in-memory Gray-code running sum and recomputing each mean."""
    from merge2mix import engine, families, runtime
    from merge2mix.config import AVERAGE, merge_operator
    from merge2mix.job import from_config
    from merge2mix.merge import average
    from merge2mix.checkpoints import load_weights

    cfg, run = plan.cfg, Path(plan.run_dir)
    ckpt = {n: str(run / "finetune" / n / "model.safetensors") for n in plan.candidates}
    head = run / "heads" / f"{plan.target}.safetensors"
    job = from_config(cfg, str(run / "base"), threads, {plan.target: str(head)} if head.exists() else None)
    val = str(run / "data" / plan.target / "val.parquet")
    common = dict(mode="memory", pool=plan.candidates, operator=merge_operator(cfg["merge"]))
    order = list(plan.masks)
    random.Random(0).shuffle(order)  # Snakemake's order is whatever becomes ready first
    for n in plan.candidates:  # the one-off cost (load every fine-tune, encode the split), not the kernel
        engine.score(job, {n: ckpt[n]}, val, **common)
    merge_s = fwd_s = 0.0
    for m in order:
        r = engine.score(job, {n: ckpt[n] for n in m.split("+")}, val, **common)
        merge_s, fwd_s = merge_s + r["merge_s"], fwd_s + r["eval_s"]

    dev = runtime.setup(threads, cfg["device"])
    fam = families.get(cfg["task"]["type"])
    rows = flat_rows(fam, [ckpt[x] for x in sorted(ckpt)], dev)
    med, ratios, repeats, pool = merge_per_mask(fam, job.base_dir, dev, ckpt, rows,
                                                {"average": AVERAGE, "configured": common["operator"]}, order)

    t0 = time.perf_counter()
    sample = order[: min(len(order), 12)]
    for m in sample:
        pool.model.load_state_dict(average([load_weights(ckpt[x]) for x in sorted(m.split("+"))]), strict=False)
    files_s = (time.perf_counter() - t0) / len(sample) * len(order)
    return {"masks": len(order), "merge_s": merge_s, "forward_s": fwd_s, "kernel_s": merge_s + fwd_s,
            "average_merge_s": med["average"], "configured_merge_s": med["configured"],
            "operator": common["operator"], "gray_code_merge_s": med["gray_code"], "from_files_merge_s_extrapolated": files_s,
            "model_fp32_bytes": pool.numel * 4, "p2_ratios": ratios, "p2_repeats": repeats}


def flat_rows(fam, paths: list[str], dev):
    """The merged tensors of each checkpoint as one fp32 row of an (n x P) matrix on `dev`, read one
    file at a time (a ViT-B/32 pool's files would otherwise sit in memory all at once)."""
    import torch

    from merge2mix.checkpoints import load_weights

    rows = None
    for i, path in enumerate(paths):
        sd = load_weights(path)
        keys = [k for k, t in sd.items() if fam.is_merged(k, t)]
        row = torch.cat([sd[k].reshape(-1).float() for k in keys])
        if rows is None:
            rows = torch.empty(len(paths), row.numel(), device=dev)
        rows[i].copy_(row)
    return rows


def merge_per_mask(fam, base_dir, dev, ckpt: dict[str, str], rows, operators: dict[str, dict], order: list[str],
                   repeats: int = P2_REPEATS, sync=lambda: None):
    """P2: the merge alone, one pass over the masks in `order` as a run makes it, each operator on a fresh
    pool of its own (the same public class the engine uses) with the engine's cache emptied first: a
    pool that reuses another's freed buffers skips the page faults of its first prefix sums (measured:
    an add into a fresh 91 MB buffer costs 4x one into a reused buffer), which a run does not. The
    Gray-code reference (an in-memory running sum over the same merged tensors) runs right after each
    pair, and the ratio is taken per repeat: on a shared VM the memory bandwidth itself drifts by 2x
    within minutes, so only side-by-side ratios compare; the median of `repeats` is reported, every
    repeat kept. `rows`: flat_rows of the checkpoints in sorted-name order (the reference's input).
    `sync` waits for the device (torch.cuda.synchronize on a GPU) before a clock is read.
    Returns (median seconds per operator and 'gray_code', median ratios to it, the repeats, the last pool)."""
    import torch

    from merge2mix import engine
    from merge2mix import pool as pools

    names = sorted(ckpt)
    n = len(names)

    def gray_code() -> float:
        out = torch.empty_like(rows[0])
        s = torch.zeros_like(rows[0])
        sync()
        g_prev, t0 = 0, time.perf_counter()
        for i in range(1, 2**n):  # Gray code: each mask differs from the last by one dataset
            g = i ^ (i >> 1)
            j = (g ^ g_prev).bit_length() - 1
            s.add_(rows[j]) if g & (1 << j) else s.sub_(rows[j])
            torch.div(s, bin(g).count("1"), out=out)
            g_prev = g
        sync()
        return (time.perf_counter() - t0) * len(order) / (2**n - 1)  # per pass over `order`

    reps, pool = [], None
    for _ in range(repeats):
        rep = {}
        for name, op in operators.items():
            engine.clear_cache()
            pool = None  # the last pass's buffers go before the next pool takes its own
            pool = pools.Pool(fam, base_dir, dev, "memory", names)
            pool.merge(ckpt, op["method"], op["params"])  # warm: rows loaded
            sync()
            t0 = time.perf_counter()
            for m in order:
                pool.merge({x: ckpt[x] for x in m.split("+")}, op["method"], op["params"])
            sync()
            rep[name] = time.perf_counter() - t0
        rep["gray_code"] = gray_code()
        reps.append(rep)
    med = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
    ratios = {k: statistics.median(r[k] / r["gray_code"] for r in reps) for k in operators}
    return med, ratios, reps, pool


def make_p5_pool(root: Path, n: int, size: str = "base") -> Path:
    """By default a BERT-base-shaped random model (~110 M parameters, 440 MB fp32) and n perturbed
    copies: a model whose size dominates the process's fixed costs, so the ratio says what it would
    for a large one (the suite's smoke run uses `tiny`)."""
    from pools import make_pool

    return make_pool(root / size, size, n)


def vm_hwm() -> int:
    """Peak resident set of this process (bytes). Not ru_maxrss: that survives exec, so a child would
    inherit its parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_child(mode: str, root: str, n: int, threads: int):
    """Run in a subprocess: peak RSS of building the pool and merging all n, then 2 of them."""
    import torch  # noqa: F401  (the import floor)
    import transformers  # noqa: F401
    from transformers import BertForSequenceClassification  # noqa: F401

    floor = vm_hwm()
    from merge2mix import engine, families, runtime
    from merge2mix import pool as pools

    dev = runtime.setup(threads, "cpu")
    fam = families.get("text_classification")
    pool = pools.Pool(fam, f"{root}/base", dev, mode, [f"ft{i}" for i in range(n)])
    files = {f"ft{i}": f"{root}/ft{i}.safetensors" for i in range(n)}
    pool.merge(files)
    pool.merge(dict(list(files.items())[:2]))
    peak = vm_hwm()
    print(json.dumps({"floor_bytes": floor, "peak_bytes": peak, "model_fp32_bytes": pool.numel * 4, "n": n}))


def rss(mode, root, n, threads):
    r = subprocess.run([sys.executable, __file__, "--rss-child", mode, "--p5-dir", str(root), "--p5-n", str(n),
                        "--threads", str(threads)], capture_output=True, text=True, cwd=REPO)
    if r.returncode:
        sys.exit(r.stderr[-2000:])
    d = json.loads(r.stdout.strip().splitlines()[-1])
    d["peak_over_floor_in_models"] = round((d["peak_bytes"] - d["floor_bytes"]) / d["model_fp32_bytes"], 2)
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "config.yaml"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the in-process kernel")
    ap.add_argument("--naive-masks", type=int, default=6, help="masks run one process per job (extrapolated)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--p5-n", type=int, default=6, help="fine-tunes in the peak-memory measurement")
    ap.add_argument("--p5-size", default="base", choices=["tiny", "small", "base"], help="the random pool's shape (bench/pools.py)")
    ap.add_argument("--work", default=str(REPO / "bench" / "_work" / "merge_eval"), help="scratch folder (replaced)")
    ap.add_argument("--p5-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--stub-scontrol", action="store_true", help="skip the SLURM plugin's scontrol wait (provenance.with_stub_scontrol)")
    a = ap.parse_args(argv)
    if a.stub_scontrol:
        ENV.update(with_stub_scontrol(ENV))
    if a.rss_child:
        return rss_child(a.rss_child, a.p5_dir, a.p5_n, a.threads)

    cfg_path = Path(a.config).resolve()
    work, wcfg, wplan = prepare_work(cfg_path, a.cores, Path(a.work))
    plan = config_mod.Plan(config_mod.load(cfg_path))
    print(f"[bench] {len(plan.masks)} masks; phase through Snakemake (workflow profile) ...", flush=True)
    fast_wall = phase(work, wcfg, wplan, a.cores, profile=True)
    in_run = in_run_kernel(wplan)
    k = min(a.naive_masks, len(plan.masks))
    print(f"[bench] naive: {k} masks one process per job ...", flush=True)
    naive_wall = phase(work, wcfg, wplan, a.cores, profile=False, masks=random.Random(1).sample(plan.masks, k))
    naive_per_job = naive_wall / k
    print("[bench] in-process kernel and merge references ...", flush=True)
    kr = kernel(wplan, a.threads)  # the work copy: the phase has prepared the target's split there
    print("[bench] peak memory (stream, memory) on a BERT-base-shaped pool ...", flush=True)
    p5 = make_p5_pool(Path(a.work).parent / "p5", a.p5_n, a.p5_size)
    mem = {m: rss(m, p5, a.p5_n, a.threads) for m in ("stream", "memory")}

    n_masks = kr["masks"]
    res = {
        "command": "python bench/merge_eval.py " + " ".join(sys.argv[1:]),
        "commit": commit(),
        "machine": machine(cores_used=a.cores, python=platform.python_version()),
        "config": str(cfg_path.relative_to(REPO)) if cfg_path.is_relative_to(REPO) else str(cfg_path),
        "candidates": len(plan.candidates), "masks": n_masks, "scontrol_stubbed": a.stub_scontrol,
        "phase_wall_s": round(fast_wall, 2),
        "kernel_s": round(kr["kernel_s"], 2), "kernel_merge_s": round(kr["merge_s"], 2), "kernel_forward_s": round(kr["forward_s"], 2),
        "P1_phase_over_kernel": round(fast_wall / kr["kernel_s"], 3),
        "phase_jobs_kernel_s": round(in_run, 2),
        "P1_same_run": round(fast_wall / in_run, 3),
        "naive_per_job_s": round(naive_per_job, 2),
        "naive_phase_estimate_s": round(naive_per_job * n_masks, 1),
        "naive_over_kernel": round(naive_per_job * n_masks / kr["kernel_s"], 2),
        "operator": kr["operator"],
        "merge_per_mask_ms": round(1000 * kr["average_merge_s"] / n_masks, 2),
        "configured_merge_per_mask_ms": round(1000 * kr["configured_merge_s"] / n_masks, 2),
        "gray_code_per_mask_ms": round(1000 * kr["gray_code_merge_s"] / n_masks, 2),
        "from_files_per_mask_ms": round(1000 * kr["from_files_merge_s_extrapolated"] / n_masks, 2),
        "P2_engine_over_gray_code": round(kr["p2_ratios"]["average"], 2),
        "P2_configured_over_gray_code": round(kr["p2_ratios"]["configured"], 2),
        "P2_repeats_ms_per_mask": [{k: round(1000 * v / n_masks, 2) for k, v in r.items()} for r in kr["p2_repeats"]],
        "P2_from_files_over_engine": round(kr["from_files_merge_s_extrapolated"] / kr["average_merge_s"], 2),
        "model_fp32_MB": round(kr["model_fp32_bytes"] / 1e6, 1),
        "P5_shape": a.p5_size, "P5_model_fp32_MB": round(mem["stream"]["model_fp32_bytes"] / 1e6, 1), "P5_n": a.p5_n,
        "P5_stream_peak_over_floor_models": mem["stream"]["peak_over_floor_in_models"],
        "memory_mode_peak_over_floor_models": mem["memory"]["peak_over_floor_in_models"],
        "targets": {"P1": "<= 1.25", "P2": "engine/gray <= 2 and files/engine >= 3", "P5": "stream <= 2"},
    }
    print()
    print(f"P1  phase {res['phase_wall_s']} s / kernel {res['kernel_s']} s = {res['P1_phase_over_kernel']}"
          f"   (naive one-process-per-job: {res['naive_per_job_s']} s/job -> {res['naive_over_kernel']}x the kernel)")
    print(f"    same run: phase / its jobs' own merge + forward time {res['phase_jobs_kernel_s']} s = {res['P1_same_run']}")
    print(f"P2  merge per mask: engine {res['merge_per_mask_ms']} ms (average), Gray-code {res['gray_code_per_mask_ms']} ms "
          f"(ratio {res['P2_engine_over_gray_code']}), from files {res['from_files_per_mask_ms']} ms "
          f"(files/engine {res['P2_from_files_over_engine']}); configured operator {res['operator']['method']} "
          f"{res['configured_merge_per_mask_ms']} ms (ratio {res['P2_configured_over_gray_code']})")
    print(f"P5  peak RSS above import floor: stream {res['P5_stream_peak_over_floor_models']} models, "
          f"memory {res['memory_mode_peak_over_floor_models']} models ({a.p5_n} fine-tunes of {res['P5_model_fp32_MB']} MB)")
    out = Path(a.out) if a.out else REPO / "bench" / "results" / f"merge_eval-{plan.cfg['run']}-{'cuda' if plan.cfg['device'] == 'cuda' else 'cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

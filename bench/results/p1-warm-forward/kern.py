"""REPO=<checkout> python kern.py: the same 63 masks' merge + forward in a standalone process
(engine.score, as bench/merge_eval.py's kernel), after a warm-up that loads the pool."""
import os, sys, time
from pathlib import Path

REPO = Path(os.environ["REPO"])
sys.path.insert(0, str(REPO / "workflow"))
from merge2mix import config as config_mod, engine  # noqa: E402
from merge2mix.config import merge_operator  # noqa: E402
from merge2mix.job import from_config  # noqa: E402

plan = config_mod.Plan(config_mod.load(REPO / "bench/_work/merge_eval/config.yaml"))
cfg, run = plan.cfg, Path(plan.run_dir)
ckpt = {n: str(run / "finetune" / n / "model.safetensors") for n in plan.candidates}
job = from_config(cfg, str(run / "base"), 2, {plan.target: str(run / "heads" / f"{plan.target}.safetensors")})
val = str(run / "data" / plan.target / "val.parquet")
common = dict(mode="memory", pool=plan.candidates, operator=merge_operator(cfg["merge"]))
t0 = time.perf_counter()
for n in plan.candidates:
    engine.score(job, {n: ckpt[n]}, val, **common)
t1 = time.perf_counter()
m_s = e_s = 0
for m in plan.masks:
    r = engine.score(job, {n: ckpt[n] for n in m.split("+")}, val, **common)
    m_s += r["merge_s"]; e_s += r["eval_s"]
print(f"standalone warmup {t1-t0:.1f} loop {time.perf_counter()-t1:.1f} eval {e_s:.1f} merge {m_s:.1f}")

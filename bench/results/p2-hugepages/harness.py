import random, sys, time, torch
sys.path.insert(0, sys.argv[1])
from merge2mix import families, runtime, engine
from merge2mix import pool as pools
from merge2mix.checkpoints import load_weights
R = "results/default"  # the embedded default's run, from the repository root
cands = ["airline", "selfdriving", "claritin", "coachella", "deflategate", "rt_movies"]
ck = {n: f"{R}/finetune/{n}/model.safetensors" for n in cands}
from itertools import combinations
masks = [c for k in range(1, 7) for c in combinations(cands, k)]
order = list(masks); random.Random(0).shuffle(order)
CAP = int(sys.argv[2]) if len(sys.argv) > 2 else None
dev = runtime.setup(2, "cpu")
fam = families.get("text_label_description")
def engine_run(method, params):
    engine.clear_cache()
    p = pools.Pool(fam, f"{R}/base", dev, "memory", cands)
    p.max_sums = CAP or p.max_sums
    p.merge(ck, method, params)
    t0 = time.perf_counter()
    for m in order:
        p.merge({n: ck[n] for n in m}, method, params)
    return (time.perf_counter() - t0) / len(order) * 1000
def gray():
    sds = [load_weights(ck[n]) for n in cands]
    keys = [k for k, t in sds[0].items() if t.is_floating_point()]
    rows = torch.stack([torch.cat([sd[k].reshape(-1).float() for k in keys]) for sd in sds])
    out = torch.empty_like(rows[0]); s = torch.zeros_like(rows[0]); gp = 0
    t0 = time.perf_counter()
    for i in range(1, 64):
        g = i ^ (i >> 1); j = (g ^ gp).bit_length() - 1
        s.add_(rows[j]) if g & (1 << j) else s.sub_(rows[j])
        torch.div(s, bin(g).count("1"), out=out); gp = g
    return (time.perf_counter() - t0) / 63 * 1000
for rep in range(3):
    a = engine_run("average", {}); t = engine_run("task_arithmetic", {"lam": 1.0, "power": 0.5}); g = gray()
    print(f"rep {rep}: average {a:.2f} ms  task_arith {t:.2f} ms  gray {g:.2f} ms  ratio {a/g:.2f} / {t/g:.2f}", flush=True)

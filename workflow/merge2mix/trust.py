"""How far to trust a run's pick, from the mixture fine-tunes the run makes anyway (docs/method.md, "Trust").

Every run fine-tunes some mixtures besides the singles (all the data, the similarity picks, the random
draws, the deployed pick, calibration anchors) and has every scored mask's merged val score. Those
(merged, fine-tuned) pairs on the run's own pool are the held-out validation pairs that catch a
breakdown of the merged-vs-fine-tuned agreement. No torch: reads result files.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import analysis
from .io import atomic_write_json
from .masks import mask_key, parse_key
from .select import sign

MIN_PAIRS = 4
R_TRUSTED = 0.6
# bench/results/trust-backtest: below this many pairs the verdict agreed with the oracle 4/10; with
# trust.anchors: 4 (9 pairs or so) 9/10 in loss. Said on the line, the rule is unchanged.
FEW_PAIRS, ADVISED_ANCHORS = 8, 4
RULE = (f"fewer than {MIN_PAIRS} pairs or a constant side: cannot tell; r < {R_TRUSTED}: weak; "
        f"r >= {R_TRUSTED} with the 95 % interval's lower end > 0: trusted; otherwise cannot tell")


def pairs(merged: pd.DataFrame, finetuned: list[dict], metric: str) -> tuple[pd.DataFrame, list[str]]:
    """`merged`: masks.csv (mask, <metric>); `finetuned`: {"mask", "val": fine-tuned val <metric>, "role"}
    per fine-tune the run made. Returns (one row per non-single mask with both scores: mask, size,
    merged, finetuned, roles) sorted by mask, and the non-single masks fine-tuned but never merge-scored."""
    scores = dict(zip(merged["mask"], merged[metric].astype(float)))
    rows, unscored = {}, set()
    for f in finetuned:
        mask = f["mask"]
        if len(parse_key(mask)) < 2:  # a single's merge is its fine-tune: no evidence
            continue
        if mask not in scores:
            unscored.add(mask)
            continue
        row = rows.setdefault(mask, {"mask": mask, "size": len(parse_key(mask)), "merged": scores[mask],
                                     "finetuned": float(f["val"]), "roles": []})
        if f.get("role") and f["role"] not in row["roles"]:
            row["roles"].append(f["role"])
    df = pd.DataFrame(list(rows.values()), columns=["mask", "size", "merged", "finetuned", "roles"])
    return df.sort_values("mask", kind="mergesort").reset_index(drop=True), sorted(unscored)


def pairs_needed(n: int, r: float | None) -> int:
    """Extra pairs for "cannot tell" to become a verdict: up to MIN_PAIRS, else the n at which a
    Fisher-z 95 % interval around r clears 0 (n >= 3 + (1.96 / atanh r)^2), at least one more."""
    if n < MIN_PAIRS or r is None or not np.isfinite(r) or r <= 0:
        return max(MIN_PAIRS - n, 1)
    need = math.ceil(3 + (1.96 / math.atanh(min(r, 0.999))) ** 2)
    return max(need - n, 1)


def verdict(n: int, r: float | None, ci: list[float] | None) -> dict:
    """The rule of docs/method.md, written down before the back-test."""
    if n < MIN_PAIRS or r is None or not np.isfinite(r):
        v = "cannot tell"
    elif r < R_TRUSTED:
        v = "weak"
    elif ci is not None and ci[0] > 0:
        v = "trusted"
    else:
        v = "cannot tell"
    return {"verdict": v, "extra_pairs_needed": pairs_needed(n, r) if v == "cannot tell" else 0}


def estimate(df: pd.DataFrame, seed: int = 0, n_boot: int = 2000) -> dict:
    """Pearson r and Spearman rho of merged vs fine-tuned over the pairs, paired bootstrap 95 % intervals."""
    x, y = df["merged"].to_numpy(float), df["finetuned"].to_numpy(float)
    out = {"pairs": len(df), "pearson_r": None, "pearson_r_ci95": None, "spearman_rho": None, "spearman_rho_ci95": None}
    if len(df) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        coefs = analysis._coefs(x, y)
        boot = analysis._boot_coefs(x, y, np.random.default_rng(seed), n_boot)
        for k in ("pearson_r", "spearman_rho"):
            out[k] = float(coefs[k])
            out[f"{k}_ci95"] = analysis._ci95(boot[k][np.isfinite(boot[k])])
    return out


def assess(merged: pd.DataFrame, finetuned: list[dict], metric: str, pick: dict | None = None, seed: int = 0) -> dict:
    """trust.json's content. `pick`: {"mask", "val": the deployed model's fine-tuned val <metric>} (None
    when unknown: runs from before the deployed model was scored on val)."""
    df, unscored = pairs(merged, [*finetuned, *([{**pick, "role": "deployed"}] if pick else [])], metric)
    est = estimate(df, seed=seed)
    out = {"metric": metric, **est, **verdict(len(df), est["pearson_r"], est["pearson_r_ci95"]), "rule": RULE,
           "pairs_table": df.to_dict("records"), "fine_tuned_but_not_merge_scored": unscored}
    if pick is not None:
        s = sign(metric)
        tuned = {f["mask"]: float(f["val"]) for f in finetuned}
        others = {m: v for m, v in tuned.items() if m != pick["mask"]}
        merged_score = dict(zip(merged["mask"], merged[metric].astype(float))).get(pick["mask"])
        out["pick"] = {"mask": pick["mask"], "merged": merged_score, "finetuned": float(pick["val"]),
                       "finetuned_rank": 1 + sum(s * v > s * float(pick["val"]) for v in others.values()),
                       "of_finetuned": 1 + len(others),
                       "beaten_on_val_by": sorted(m for m, v in others.items() if s * v > s * float(pick["val"]))}
    return out


def line(t: dict) -> str:
    """One line for summary.md, `merge2mix show` and the report."""
    r = t.get("pearson_r")
    est = (f"r {r:.2f} [{t['pearson_r_ci95'][0]:.2f}, {t['pearson_r_ci95'][1]:.2f}] over {t['pairs']} fine-tuned mixtures"
           if r is not None and t.get("pearson_r_ci95") else f"{t['pairs']} fine-tuned mixture(s) to compare")
    text = f"{t['verdict']}: merged vs fine-tuned target val {t['metric'].replace('_', ' ')}, {est}"
    if t["verdict"] == "weak":
        text += " — WARNING: on this pool the fine-tunes do not bear the merged scores out; weigh the pick against all_data"
    elif t["verdict"] == "cannot tell":
        text += f"; about {t['extra_pairs_needed']} more would tell (trust.anchors: {t['extra_pairs_needed']})"
    if t["verdict"] != "cannot tell" and t["pairs"] < FEW_PAIRS:
        text += (f"; from only {t['pairs']} pairs, a verdict the back-test found unreliable "
                 f"(trust.anchors: {ADVISED_ANCHORS} firms it up)")
    p = t.get("pick")
    if p and p["of_finetuned"] > 1:
        text += f"; the pick's fine-tune ranks {p['finetuned_rank']} of {p['of_finetuned']} on val"
    return text


def write(*, masks_csv: str, mixture_jsons: list[str], roles: dict[str, list[str]], metric: str, summary: dict,
          out_json: str, seed: int = 0) -> dict:
    """Rule trust: `roles` maps a mask to what the run fine-tuned it as (all_data, similarity_topk, ...)."""
    from .io import read_json

    merged = pd.read_csv(masks_csv, dtype={"bitstring": str})
    finetuned = []
    for path in mixture_jsons:
        rec = read_json(path)
        for role in roles.get(rec["mask"], [None]):
            finetuned.append({"mask": rec["mask"], "val": rec[f"val_{metric}"], "role": role})
    dv = summary.get("deployed_val")  # absent in runs from before the deployed model was scored on val
    pick = {"mask": mask_key(summary["selected_mixture"]), "val": dv[metric]} if dv else None
    t = assess(merged, finetuned, metric, pick=pick, seed=seed)
    atomic_write_json(t, out_json)
    return t

"""The reduce: gather every mask's result into a table and pick the best mask. No torch.

Ranking (documented in docs/method.md): the selection metric (`select.metric`, val accuracy by default;
loss ascending, the others descending), then the other scores in the order accuracy, macro-F1,
loss, then fewer datasets (a cheaper deployment fine-tune), then the mask key in lexicographic order.
With size calibration (merge2mix.calibration) the predicted fine-tuned metric comes first.
"""

from __future__ import annotations

import pandas as pd

from . import runtime
from .config import AVERAGE
from .errors import Merge2MixError
from .io import atomic_replace, atomic_write_json, read_json
from .masks import SEP, bitstring, parse_key

COLUMNS = ["mask", "bitstring", "size", "datasets", "accuracy", "macro_f1", "balanced_accuracy", "loss", "n", "rank"]
METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "loss")
SCORES = ("accuracy", "macro_f1", "loss")  # the tie-break after the selection metric
LOWER_IS_BETTER = ("loss",)


def sign(metric: str) -> int:
    """-1 for a score where lower is better (loss), else +1: sign(m) * score is higher-is-better, the
    one place that says so for the search, the weight search and the benches."""
    return -1 if metric in LOWER_IS_BETTER else 1


def order(metric: str = "accuracy", calibrated: bool = False) -> list[tuple[str, bool]]:
    """(column, ascending) from first to last key: [the calibrated prediction,] the metric, the other
    scores, size, key."""
    if metric not in METRICS:
        raise ValueError(f"select.metric '{metric}' is not one of {', '.join(METRICS)}")
    keys = [metric] + [c for c in SCORES if c != metric] + ["size", "mask"]
    out = [(c, sign(c) < 0 or c in ("size", "mask")) for c in keys]
    return [("calibrated", sign(metric) < 0)] + out if calibrated else out


def tie_break(metric: str = "accuracy", calibrated: bool = False) -> str:
    return ", ".join(f"{c} {'asc' if up else 'desc'}" for c, up in order(metric, calibrated))


TIE_BREAK = tie_break()


def gather(result_paths, candidates, metric: str = "accuracy") -> pd.DataFrame:
    """The bitstring is computed here, from the current candidate order: per-mask results do not
    depend on the candidate list, so adding a candidate leaves them valid."""
    rows = []
    for p in result_paths:
        r = read_json(p)
        if metric not in r:
            raise Merge2MixError(f"select.metric {metric}: {p} has no '{metric}' (scored by an older merge2mix; "
                             "delete the run's merge_eval/ folder to score the masks again)")
        rows.append({**r, "datasets": SEP.join(r["datasets"]), "bitstring": bitstring(r["mask"], candidates)})
    return rank(pd.DataFrame(rows), metric)


def rank(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    keys = order(metric, "calibrated" in df)
    df = df.sort_values([c for c, _ in keys], ascending=[up for _, up in keys], kind="mergesort").reset_index(drop=True)
    df["rank"] = range(1, len(df) + 1)
    return df


def operator_of(row) -> dict:
    """The merge operator a result was scored with (results from before operators: the average)."""
    op = row.get("operator")
    return op if isinstance(op, dict) else dict(AVERAGE)


def calibrate(df: pd.DataFrame, calibration: dict, metric: str) -> pd.DataFrame:
    """Add the predicted fine-tuned metric (merge2mix.calibration) and rank by it."""
    from .calibration import predict

    if calibration["metric"] != metric:
        raise Merge2MixError(f"calibration.json was fitted for {calibration['metric']}, select.metric is {metric} "
                             "(delete calibration.json to fit it again)")
    return rank(df.assign(calibrated=predict(calibration, df[metric], df["size"])), metric)


def within_constraints(df: pd.DataFrame, checked: dict) -> pd.DataFrame:
    """The rows whose mask satisfies the constraints of constraints.json (`checked`: the constraint set
    and each candidate's size in the budget's unit), ranks renumbered; `masks_scored` then counts these."""
    from .constraints import allows

    c, sizes = checked["constraints"], checked["sizes"]
    keep = [allows(parse_key(m), c, sizes) for m in df["mask"]]
    if not any(keep):
        raise Merge2MixError("select.constraints: no scored mask satisfies them")
    return df[keep].reset_index(drop=True).assign(rank=lambda d: range(1, len(d) + 1))


def select(result_paths, candidates, out_csv: str, out_best: str, metric: str = "accuracy",
           calibration_path: str | None = None, constraints_path: str | None = None) -> dict:
    df = gather(result_paths, candidates, metric)
    checked = read_json(constraints_path) if constraints_path else None
    if checked is not None:
        df = within_constraints(df, checked)
    columns = COLUMNS
    calibration = read_json(calibration_path) if calibration_path else None
    if calibration is not None:
        df, columns = calibrate(df, calibration, metric), COLUMNS[:-1] + ["calibrated", "rank"]
    atomic_replace(lambda tmp: df.reindex(columns=columns).to_csv(tmp, index=False), out_csv)
    runtime.failpoint("select.between_outputs")  # recovery tests: one output written, one not
    top = df.iloc[0]
    best = {
        "mask": top["mask"],
        "datasets": parse_key(top["mask"]),
        "bitstring": top["bitstring"],
        "candidates": list(candidates),
        "val_accuracy": float(top["accuracy"]),
        "val_macro_f1": float(top["macro_f1"]),
        "val_balanced_accuracy": None if pd.isna(top.get("balanced_accuracy")) else float(top["balanced_accuracy"]),
        "val_loss": float(top["loss"]),
        "masks_scored": len(df),
        "metric": metric,
        "tie_break": tie_break(metric, calibration is not None),
        "operator": operator_of(top),
    }
    if checked is not None:
        best["constraints"] = checked["constraints"]
    if calibration is not None:
        best["calibration"] = {k: calibration[k] for k in ("a", "b", "c", "slope_clipped", "rmse", "n_anchors", "extra_finetunes")}
        best["calibrated"] = float(top["calibrated"])
    atomic_write_json(best, out_best)
    return best

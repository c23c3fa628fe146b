"""The reduce: gather every mask's result into a table and pick the best mask. No torch.

Tie-break (documented in the README): highest val accuracy, then highest macro-F1, then lowest
loss, then fewer datasets (a cheaper deployment fine-tune), then the mask key in lexicographic order.
"""

from __future__ import annotations

import json

import pandas as pd

from . import runtime
from .io import atomic_replace, atomic_write_json
from .masks import SEP, bitstring, parse_key

COLUMNS = ["mask", "bitstring", "size", "datasets", "accuracy", "macro_f1", "loss", "n", "rank"]
TIE_BREAK = "accuracy desc, macro_f1 desc, loss asc, size asc, mask asc"


def gather(result_paths, candidates) -> pd.DataFrame:
    """The bitstring is computed here, from the current candidate order: per-mask results do not
    depend on the candidate list, so adding a candidate leaves them valid."""
    rows = []
    for p in result_paths:
        with open(p) as fh:
            r = json.load(fh)
        rows.append({**r, "datasets": SEP.join(r["datasets"]), "bitstring": bitstring(r["mask"], candidates)})
    return rank(pd.DataFrame(rows))


def rank(df: pd.DataFrame) -> pd.DataFrame:
    df = df.sort_values(
        ["accuracy", "macro_f1", "loss", "size", "mask"], ascending=[False, False, True, True, True], kind="mergesort"
    ).reset_index(drop=True)
    df["rank"] = range(1, len(df) + 1)
    return df


def operator_of(row) -> dict:
    """The merge operator a result was scored with (results from before operators: the average)."""
    op = row.get("operator")
    return op if isinstance(op, dict) else {"method": "average", "params": {}}


def select(result_paths, candidates, out_csv: str, out_best: str) -> dict:
    df = gather(result_paths, candidates)
    atomic_replace(lambda tmp: df[COLUMNS].to_csv(tmp, index=False), out_csv)
    runtime.failpoint("select.between_outputs")  # recovery tests: one output written, one not
    top = df.iloc[0]
    best = {
        "mask": top["mask"],
        "datasets": parse_key(top["mask"]),
        "bitstring": top["bitstring"],
        "candidates": list(candidates),
        "val_accuracy": float(top["accuracy"]),
        "val_macro_f1": float(top["macro_f1"]),
        "val_loss": float(top["loss"]),
        "masks_scored": len(df),
        "tie_break": TIE_BREAK,
        "operator": operator_of(top),
    }
    atomic_write_json(best, out_best)
    return best

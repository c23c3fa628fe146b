import json
import random

import pandas as pd
import pytest

from merge2mix.select import TIE_BREAK, rank, select


def row(mask, acc, f1=0.5, loss=1.0):
    names = mask.split("+")
    return {"mask": mask, "datasets": names, "bitstring": "", "size": len(names), "accuracy": acc,
            "macro_f1": f1, "loss": loss, "n": 10}


def test_tie_break_order():
    rows = [
        row("a", 0.8, 0.7, 0.5),
        row("b", 0.9, 0.6, 0.5),        # best accuracy wins outright
        row("c", 0.8, 0.7, 0.4),        # beats a on loss
        row("a+b", 0.8, 0.8, 0.9),      # beats a, c on macro-F1
        row("d+e", 0.8, 0.7, 0.4),      # ties c on everything but size: c (smaller) first
        row("e", 0.8, 0.7, 0.4),        # ties c entirely: key order, c before e
    ]
    df = rank(pd.DataFrame(rows).assign(datasets=lambda d: d["datasets"].map("+".join)))
    assert df["mask"].tolist() == ["b", "a+b", "c", "e", "d+e", "a"]
    assert df["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert TIE_BREAK == "accuracy desc, macro_f1 desc, loss asc, size asc, mask asc"


@pytest.mark.parametrize("seed", range(5))
def test_full_ties_are_broken_by_key_whatever_the_input_order(seed):
    """Rows equal in every score and size come out in key order, so the pick does not depend on the
    order the result files were listed in (a sort without the key would keep the input order)."""
    rows = [row(m, 0.8, 0.7, 0.4) for m in ("q", "c", "x", "a", "m")] + [row("b+z", 0.8, 0.7, 0.4)]
    random.Random(seed).shuffle(rows)
    df = rank(pd.DataFrame(rows).assign(datasets=lambda d: d["datasets"].map("+".join)))
    assert df["mask"].tolist() == ["a", "c", "m", "q", "x", "b+z"]


def test_select_writes_table_and_best(tmp_path):
    paths = []
    for r, bits in [(row("a", 0.5), "10"), (row("b", 0.75), "01"), (row("a+b", 0.75, f1=0.4), "11")]:
        r["bitstring"] = bits
        p = tmp_path / f"{r['mask']}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    best = select(paths, ["a", "b"], tmp_path / "masks.csv", tmp_path / "best.json")
    assert best["mask"] == "b" and best["datasets"] == ["b"] and best["masks_scored"] == 3
    df = pd.read_csv(tmp_path / "masks.csv", dtype={"bitstring": str})
    assert list(df["mask"]) == ["b", "a+b", "a"]
    assert list(df["bitstring"]) == ["01", "11", "10"]
    assert json.loads((tmp_path / "best.json").read_text())["bitstring"] == "01"

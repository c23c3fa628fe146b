"""Bench scripts must not rot: each runs here on a tiny configuration and writes its figures."""

import json
import sys

from conftest import REPO


def test_operators_bench_runs_and_reports_ratios(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    import operators

    out = tmp_path / "ops.json"
    assert operators.main(["--size", "tiny", "--n", "3", "--masks", "3", "--work", str(tmp_path / "pool"), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["masks_timed"] == 3 and res["n"] == 3
    for mode in ("memory", "stream"):
        assert set(res[mode]["per_mask_ms"]) == {"average", "task_arithmetic", "ties"}
        assert res[mode]["ratio_to_average"]["average"] == 1.0 and all(v > 0 for v in res[mode]["per_mask_ms"].values())

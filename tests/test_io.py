"""Result files carry the user's umask (a group on a shared filesystem can read them), the store too."""

import os
import stat
import subprocess
import sys

import pytest

from conftest import REPO

WRITE_ALL = """
import os, sys
sys.path.insert(0, {workflow!r})
import pandas as pd
from merge2mix import io, store
d = sys.argv[1]
io.atomic_write_json({{"a": 1}}, os.path.join(d, "out", "x.json"))
io.atomic_write_text("hello", os.path.join(d, "out", "x.md"))
io.atomic_write_parquet(pd.DataFrame({{"a": [1]}}), os.path.join(d, "out", "x.parquet"))
with open(os.path.join(d, "w.safetensors"), "wb") as fh:
    fh.write(b"weights")
import torch
from merge2mix.checkpoints import save_weights
save_weights({{"w": torch.zeros(2)}}, os.path.join(d, "out", "model.safetensors"))  # safetensors writes 0600 itself
store.put(os.path.join(d, "store"), "k1", os.path.join(d, "out", "model.safetensors"), {{"weights_sha256": "x"}})
print(io.umask())
"""


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_results_and_the_store_carry_the_umask(tmp_path, mask, file_mode, dir_mode):
    code = WRITE_ALL.format(workflow=str(REPO / "workflow"))
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                       preexec_fn=lambda: os.umask(mask))
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip()) == mask  # read without changing it
    files = [tmp_path / "out" / n for n in ("x.json", "x.md", "x.parquet", "model.safetensors")]
    files += [tmp_path / "store" / "k1" / "model.safetensors", tmp_path / "store" / "k1" / "train.json"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == file_mode, f
    for d in (tmp_path / "out", tmp_path / "store" / "k1"):
        assert stat.S_IMODE(d.stat().st_mode) == dir_mode, d
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no temporary left behind

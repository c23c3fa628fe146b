"""The content-addressed fine-tune store: reuse is verified and never ties two outputs to one inode."""

import os

from merge2mix import store
from merge2mix.merge import file_sha256


def _weights(path, payload=b"theta" * 1000):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return str(path)


def test_fetched_output_is_its_own_file(tmp_path):
    # Snakemake touches every output after its job: a fetched deploy/model.safetensors that shared an
    # inode with finetune/<d>/model.safetensors would make the fine-tune look updated and rerun every
    # merge_eval that reads it.
    first = _weights(tmp_path / "run" / "finetune" / "food" / "model.safetensors")
    store.put(str(tmp_path / "store"), "k1", first, {"weights_sha256": file_sha256(first), "steps": 3})
    before = os.stat(first).st_mtime_ns
    out_w, out_j = tmp_path / "run" / "deploy" / "model.safetensors", tmp_path / "run" / "deploy" / "train.json"
    out_w.parent.mkdir(parents=True)
    record = store.fetch(str(tmp_path / "store"), "k1", str(out_w), str(out_j))
    assert record["steps"] == 3 and record["reused_from_store"].endswith("k1")
    assert out_w.read_bytes() == open(first, "rb").read()
    assert os.stat(out_w).st_ino != os.stat(first).st_ino
    os.utime(out_w, ns=(before + 10**12, before + 10**12))  # what Snakemake's touch does
    assert os.stat(first).st_mtime_ns == before


def test_damaged_entry_is_not_reused(tmp_path):
    w = _weights(tmp_path / "a" / "model.safetensors")
    store.put(str(tmp_path / "store"), "k2", w, {"weights_sha256": file_sha256(w)})
    entry = tmp_path / "store" / "k2" / "model.safetensors"
    os.unlink(entry)  # break the link first so the original output stays intact
    entry.write_bytes(b"bitrot" * 10)
    out = tmp_path / "b" / "model.safetensors"
    out.parent.mkdir()
    assert store.fetch(str(tmp_path / "store"), "k2", str(out), str(tmp_path / "b" / "train.json")) is None
    assert not out.exists()
    assert store.fetch(str(tmp_path / "store"), "missing", str(out), str(tmp_path / "b" / "train.json")) is None

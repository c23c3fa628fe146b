"""The content-addressed fine-tune store: reuse is verified and never ties two outputs to one inode."""

import json
import os

import pytest

from merge2mix import store
from merge2mix.job import Job
from merge2mix.checkpoints import file_sha256

pytestmark = pytest.mark.usefixtures("isolated_cwd")  # relative-path writes fail, not leak


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


def test_key_changes_with_every_ingredient_and_only_those(tmp_path):
    """A fine-tune is reused only when theta_0, data, hyper-parameters, seed, task and heads are all the
    same: an edited learning rate or seed must train again, never fetch the old weights."""
    base, other_base = _weights(tmp_path / "b0.safetensors"), _weights(tmp_path / "b1.safetensors", b"other" * 1000)
    h1, h2 = _weights(tmp_path / "h1.safetensors", b"head1"), _weights(tmp_path / "h2.safetensors", b"head2")
    ref = dict(base_weights=base, data_sha256={"books": "aa", "food": "bb"}, hp={"lr": 3e-4, "epochs": 2}, seed=0,
               task={"type": "text_classification", "labels": ["negative", "positive"]}, heads={"books": h1})
    k = store.key(**ref)
    assert len(k) == 32 and k == store.key(**ref)
    # the datasets' names and the order of the data hashes do not matter, their contents do
    assert store.key(**{**ref, "data_sha256": {"x": "bb", "y": "aa"}}) == k
    changed = {
        "base": {"base_weights": other_base},
        "data": {"data_sha256": {"books": "aa", "food": "cc"}},
        "one dataset fewer": {"data_sha256": {"books": "aa"}},
        "lr": {"hp": {"lr": 1e-4, "epochs": 2}},
        "epochs": {"hp": {"lr": 3e-4, "epochs": 3}},
        "seed": {"seed": 1},
        "task": {"task": {"type": "text_classification", "labels": ["positive", "negative"]}},
        "head": {"heads": {"books": h2}},
        "no head": {"heads": None},
    }
    keys = {name: store.key(**{**ref, **edit}) for name, edit in changed.items()}
    assert all(v != k for v in keys.values()), keys
    assert len(set(keys.values())) == len(keys)


def test_finetune_stored_trains_again_when_the_key_differs(tmp_path, monkeypatch):
    from merge2mix import train

    calls = []

    def fake_finetune(job, train_paths, out_weights, out_json, **kw):
        calls.append(job.hp["lr"])
        _weights(tmp_path / out_weights, f"weights trained at lr {job.hp['lr']}".encode())
        return {"weights_sha256": file_sha256(out_weights), "lr": job.hp["lr"]}

    monkeypatch.setattr(train, "finetune", fake_finetune)
    base_dir = tmp_path / "base"
    _weights(base_dir / "model.safetensors")
    def run(lr, out):
        job = Job(base_dir=str(base_dir), task={"type": "text_classification"}, hp={"lr": lr}, seed=0)
        return train.finetune_stored(str(tmp_path / "store"), job, {"books": "unread"}, str(tmp_path / out / "m.safetensors"),
                                     str(tmp_path / out / "train.json"), data_meta={"books": "aa"})

    assert run(1e-3, "a")["lr"] == 1e-3 and "reused_from_store" not in run(1e-4, "b")
    assert run(1e-3, "c")["reused_from_store"] and calls == [1e-3, 1e-4]
    assert (tmp_path / "c" / "m.safetensors").read_bytes() == b"weights trained at lr 0.001"


def test_key_is_stable_across_versions(tmp_path):
    """Stores outlive code: the same ingredients must give the same key in every version, or every
    stored fine-tune silently stops being found. (A deliberate format change bumps "format" and this
    pinned value together.)"""
    base = _weights(tmp_path / "b.safetensors", b"theta")
    head = _weights(tmp_path / "h.safetensors", b"head")
    k = store.key(base_weights=base, data_sha256={"books": "aa", "food": "bb"}, hp={"lr": 0.0003, "epochs": 2},
                  seed=0, task={"type": "text_classification", "labels": ["negative", "positive"]})
    assert k == "6865a0c19f28b8fa5ca6d241178195c7"
    with_head = store.key(base_weights=base, data_sha256={"books": "aa"}, hp={"lr": 0.0003}, seed=1,
                          task={"type": "clip"}, heads={"books": head})
    assert with_head == "71014c432ea9ecd1798a5376af850537"


def test_fetch_needs_both_files_and_records_where_it_came_from(tmp_path):
    w = _weights(tmp_path / "run" / "model.safetensors")
    store.put(str(tmp_path / "store"), "k", w, {"weights_sha256": file_sha256(w), "steps": 3})
    store.put(str(tmp_path / "store"), "k", w, {"weights_sha256": file_sha256(w), "steps": 3})  # again: no error
    out_w, out_j = tmp_path / "out" / "model.safetensors", tmp_path / "out" / "train.json"
    rec = store.fetch(str(tmp_path / "store"), "k", str(out_w), str(out_j))
    assert rec == {"weights_sha256": file_sha256(w), "steps": 3, "reused_from_store": str(tmp_path / "store" / "k")}
    assert json.loads(out_j.read_text()) == rec
    for missing in ("model.safetensors", "train.json"):
        store.put(str(tmp_path / "s2"), "k", w, {"weights_sha256": file_sha256(w)})
        os.unlink(tmp_path / "s2" / "k" / missing)
        assert store.fetch(str(tmp_path / "s2"), "k", str(tmp_path / "x.safetensors"), str(tmp_path / "x.json")) is None


def test_put_copies_when_it_cannot_link(tmp_path, monkeypatch):
    """Another filesystem (os.link fails): the store gets a copy with the same bytes."""
    w = _weights(tmp_path / "run" / "model.safetensors")

    def no_link(src, dst):
        raise OSError("Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    store.put(str(tmp_path / "store"), "k", w, {"weights_sha256": file_sha256(w)})
    entry = tmp_path / "store" / "k" / "model.safetensors"
    assert entry.read_bytes() == open(w, "rb").read() and os.stat(entry).st_ino != os.stat(w).st_ino

"""A content-addressed store of fine-tunes, shared by every run under one results_dir.

A fine-tune is determined by theta_0's bytes, the training data's content, the hyper-parameters, the
seed and the task, not by which target it will serve: two configs with different targets over the
same pool fine-tune each dataset once. The key hashes exactly those; a hit is verified against its
recorded sha256 and copied into the job's declared outputs.

Never a hard link from the store into an output: Snakemake touches every output after its job, so two
declared outputs sharing an inode (a run's finetune/<d> and a deploy of the mixture {d}, both fetched
or one put and one fetched) would make one look freshly updated whenever the other finishes, and
everything downstream of it would rerun. The store itself may share the inode of the output it came
from (`put`): the store is not an output, so only its own mtime moves.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from . import runtime
from .io import atomic_replace, atomic_write_json, read_json
from .checkpoints import file_sha256

log = runtime.log


def key(*, base_weights: str, data_sha256: dict, hp: dict, seed: int, task: dict, heads: dict | None = None) -> str:
    """`heads`: the per-dataset head files a fine-tune trained against (clip, text_label_description):
    a dataset's own `templates:` change its head without changing its data or the task."""
    ident = {"base": file_sha256(base_weights), "data": sorted(data_sha256.values()), "hp": hp, "seed": seed,
             "task": task, "format": 1}
    if heads:
        ident["heads"] = sorted(file_sha256(p) for p in heads.values())
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def _link_or_copy(src: str, dst: str) -> None:
    def link(tmp):
        os.unlink(tmp)
        try:
            os.link(src, tmp)  # no copy of gigabytes when the store is on the same filesystem
        except OSError:
            shutil.copyfile(src, tmp)

    atomic_replace(link, dst)


def _copy(src: str, dst: str) -> None:
    # shutil.copyfile uses the kernel's copy (copy_file_range/sendfile): a reflink on btrfs/XFS.
    atomic_replace(lambda tmp: shutil.copyfile(src, tmp), dst)


def fetch(store_dir: str, k: str, out_weights: str, out_json: str) -> dict | None:
    """Put a stored fine-tune in place of training; None if absent or damaged."""
    w, j = os.path.join(store_dir, k, "model.safetensors"), os.path.join(store_dir, k, "train.json")
    if not (os.path.isfile(w) and os.path.isfile(j)):
        return None
    record = read_json(j)
    if file_sha256(w) != record.get("weights_sha256"):
        log.warning("store entry %s is damaged (sha256 mismatch); training again", k)
        return None
    _copy(w, out_weights)
    record["reused_from_store"] = os.path.join(store_dir, k)
    atomic_write_json(record, out_json)
    log.info("reused fine-tune %s from the store (same theta_0, data, hyper-parameters, seed)", k)
    return record


def put(store_dir: str, k: str, weights: str, record: dict) -> None:
    d = os.path.join(store_dir, k)
    os.makedirs(d, exist_ok=True)
    _link_or_copy(weights, os.path.join(d, "model.safetensors"))
    atomic_write_json(record, os.path.join(d, "train.json"))

"""Hugging Face Hub assets: fetched once on the submit host, read offline by every compute job.

Compute nodes often have no internet. The `fetch_model` / `fetch_dataset` localrules run on the host
Snakemake runs on and put Hub models (snapshot_download) and `hf:` datasets (load_dataset) into the
local Hugging Face cache; the jobs that read them (`init_model`, `prepare_data`) then run with
HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 unless the user set those variables. The cache location is
the user's (HF_HOME); on a cluster it must be on a filesystem the nodes share.
"""

from __future__ import annotations

import os

from . import runtime
from .errors import Merge2MixError, first_line
from .io import atomic_write_json

log = runtime.log


class HubError(Merge2MixError):
    pass


def offline_for_compute_job() -> None:
    """Call first thing in a job script, before transformers/datasets are imported (they read these
    variables at import time). A variable the user set, to anything, is left alone."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")


def model_asset(model_source: str, revision: str | None) -> dict | None:
    """The Hub model to fetch, or None when the model is a local or packaged directory (or weights file)."""
    return None if os.path.exists(model_source) else {"repo_id": model_source, "revision": revision}


def dataset_assets(datasets: dict) -> dict[str, dict]:
    """Each `hf:` dataset source, by dataset name."""
    return {name: ds["hf"] for name, ds in datasets.items() if "hf" in ds}


def fetch_model(asset: dict, out_json: str) -> dict:
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(asset["repo_id"], revision=asset["revision"])
    except Exception as e:  # network, auth, unknown repo: one line naming the model
        raise HubError(f"model.name_or_path: could not fetch '{asset['repo_id']}' from the Hugging Face Hub: "
                       f"{first_line(e)}") from None
    record = {**asset, "snapshot": path, "commit": os.path.basename(path)}
    atomic_write_json(record, out_json)
    log.info("model %s (revision %s) is in the local cache: %s", asset["repo_id"], asset["revision"] or "main", path)
    return record


def fetch_dataset(name: str, spec: dict, out_json: str) -> dict:
    from .data.prepare import load_hf

    try:
        d = load_hf(spec)
    except Exception as e:
        raise HubError(f"dataset {name}: could not fetch hf source '{spec['path']}': {first_line(e)}") from None
    record = {"dataset": name, **spec, "rows": d.num_rows, "fingerprint": d._fingerprint}
    atomic_write_json(record, out_json)
    log.info("dataset %s (%s) is in the local cache: %d rows", name, spec["path"], d.num_rows)
    return record

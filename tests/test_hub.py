"""Hub assets are fetched by localrules on the submit host; the jobs that read them run offline.

No network here: a Hugging Face cache is filled by hand with the tiny model under a Hub id (the layout
snapshot_download writes), and HF_ENDPOINT points at a closed port so any real Hub call fails fast.
"""

import os
import shutil

import pytest

from conftest import FIXTURES, WORKFLOW_ENV, snakemake, tiny_config, write_config
from merge2mix import hub

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(home, repo_id, model_dir):
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def hub_env(home):
    env = {k: v for k, v in WORKFLOW_ENV.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_HOME": str(home), "HF_ENDPOINT": "http://127.0.0.1:9"}


def test_assets_are_hub_ids_and_hf_sources_only(tmp_path):
    assert hub.model_asset(str(tmp_path), None) is None  # a local directory: nothing to fetch
    assert hub.model_asset("org/model", "v1") == {"repo_id": "org/model", "revision": "v1"}
    ds = {"a": {"hf": {"path": "org/data", "split": "train"}}, "b": {"local": {"path": "x.csv"}},
          "c": {"package": {"name": "crowdflower"}}}
    assert hub.dataset_assets(ds) == {"a": {"path": "org/data", "split": "train"}}


def test_offline_for_compute_job_keeps_what_the_user_set(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    hub.offline_for_compute_job()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "0"


def test_fetch_model_failure_is_one_line_naming_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(hub.HubError, match=r"could not fetch 'nobody/no-such-model'") as e:
        hub.fetch_model({"repo_id": "nobody/no-such-model", "revision": None}, str(tmp_path / "m.json"))
    assert "\n" not in str(e.value) and not (tmp_path / "m.json").exists()


def test_hub_model_is_fetched_locally_then_read_offline(tiny_model, tmp_path):
    home = tmp_path / "hf"
    fake_hub_cache(home, "merge2mix-test/tiny-bert", tiny_model)
    cfg = tiny_config(tiny_model, tmp_path / "results")
    cfg["model"] = {"name_or_path": "merge2mix-test/tiny-bert"}
    # an hf: source through a builder that needs no network (csv over a local file)
    cfg["datasets"]["books"] = {**cfg["datasets"]["books"], "hf": {"path": "csv", "data_files": str(FIXTURES / "books.csv")}}
    del cfg["datasets"]["books"]["local"]
    cfg_path = write_config(cfg, tmp_path / "hub.yaml")
    r = snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg_path), "--until", "init_model", "prepare_data",
                  env=hub_env(home))
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert "localrule fetch_model" in log and "localrule fetch_dataset" in log and log.count("rule fetch_dataset") == 1
    assert '"rows": 40' in (tmp_path / "results" / "tiny" / "hub" / "data" / "books.json").read_text()
    assert (tmp_path / "results" / "tiny" / "data" / "books" / "train.parquet").is_file()
    run = tmp_path / "results" / "tiny"
    record = (run / "hub" / "model.json").read_text()
    assert COMMIT in record and "merge2mix-test/tiny-bert" in record
    assert (run / "base" / "model.safetensors").is_file()
    assert "HF_HUB_OFFLINE=1" in (run / "logs" / "init_model.log").read_text()  # the compute job ran offline

    # A Hub id that is not in the cache: fetch_model fails with one line naming it; nothing else runs.
    cfg["model"] = {"name_or_path": "nobody/no-such-model"}
    cfg["results_dir"] = str(tmp_path / "other")
    r = snakemake(tmp_path, "--cores", "2", "--configfile", str(write_config(cfg, tmp_path / "missing.yaml")),
                  "--until", "init_model", env=hub_env(home))
    assert r.returncode != 0
    assert "could not fetch 'nobody/no-such-model' from the Hugging Face Hub" in r.stdout + r.stderr
    assert not (tmp_path / "other" / "tiny" / "base" / "model.safetensors").exists()

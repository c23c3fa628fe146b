"""text_label_description: text datasets with different label sets, each scored through its own frozen
head of class-name embeddings (tiny random BERT), and the topic loaders the demo uses."""

import os

import pandas as pd
import pytest
import torch

from conftest import FIXTURES, REPO
from merge2mix import config as config_mod
from merge2mix import engine, families
from merge2mix import pool as pools
from merge2mix.data.prepare import prepare_dataset
from merge2mix.job import Job
from merge2mix.checkpoints import load_weights
from merge2mix.train import finetune

FAM = families.get("text_label_description")
TASK = {"type": "text_label_description", "templates": ["{}", "a {} review"], "max_length": 16}
HP = {"lr": 0.002, "epochs": 1, "max_steps": 30, "batch_size": 8, "weight_decay": 0.01, "warmup_ratio": 0.1, "max_grad_norm": 1.0}
COLS = {"columns": {"text": "review", "label": "stars"}}
# Three label sets over the fixture reviews: words in the tiny tokenizer's vocabulary.
SOURCES = {"phones": ("phones.csv", {"neg": "broken", "pos": "great"}), "books": ("books.csv", {"neg": "dull", "pos": "lovely"}),
           "food": ("food.jsonl", {"neg": "awful", "pos": "excellent"})}


@pytest.fixture(scope="module")
def world(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("ld")
    FAM.init_base(str(tiny_model), str(root / "base"), TASK, seed=0)
    data, heads = {}, {}
    for name, (fname, lmap) in SOURCES.items():
        out = {s: str(root / name / f"{s}.parquet") for s in ("train", "val", "test")} | {"meta": str(root / name / "meta.json")}
        meta = prepare_dataset(name, {"local": {"path": str(FIXTURES / fname)}, **COLS, "label_map": lmap}, None,
                               {"val_fraction": 0.25, "test_fraction": 0.25}, 0, out)
        data[name], heads[name] = out, str(root / "heads" / f"{name}.safetensors")
        assert meta["labels"] == sorted(lmap.values())
        FAM.build_head(str(root / "base"), meta["labels"], TASK["templates"], heads[name])
    return {"root": root, "base": str(root / "base"), "data": data, "heads": heads}


def by_hand(weights: dict, base_dir: str, head_path: str, split_path: str) -> tuple[float, float]:
    """Accuracy and loss computed here from the definition: mean-pool the last hidden state over real
    tokens, cosine against each class row of the head, times 20, argmax and cross-entropy."""
    from transformers import AutoModel, AutoTokenizer

    from merge2mix.families.heads import load_head

    model = AutoModel.from_pretrained(base_dir).eval()
    model.load_state_dict(weights)
    tok = AutoTokenizer.from_pretrained(base_dir)
    df = pd.read_parquet(split_path)
    head, classes = load_head(head_path)
    b = tok(df["text"].tolist(), padding=True, truncation=True, max_length=TASK["max_length"], return_tensors="pt")
    with torch.no_grad():
        h = model(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    emb = (h * m).sum(1) / m.sum(1)
    logits = 20.0 * torch.nn.functional.normalize(emb, dim=-1) @ torch.nn.functional.normalize(head, dim=-1).T
    gold = torch.tensor([classes.index(label) for label in df["label"]])
    return float((logits.argmax(-1) == gold).float().mean()), float(torch.nn.functional.cross_entropy(logits, gold))


def test_heads_hold_each_datasets_own_classes(world):
    from merge2mix.families.heads import load_head

    h, classes = load_head(world["heads"]["books"])
    assert classes == ["dull", "lovely"] and h.shape == (2, 32)
    assert torch.allclose(h.norm(dim=-1), torch.ones(2), atol=1e-5)
    other, _ = load_head(world["heads"]["food"])
    assert not torch.equal(h, other)


def test_zero_shot_base_scores_the_target_through_its_head(world):
    engine.clear_cache()
    job = Job(base_dir=world["base"], task=TASK, batch_size=8, device="cpu", heads={"phones": world["heads"]["phones"]})
    res = engine.score(job, {"base": os.path.join(world["base"], "model.safetensors")}, world["data"]["phones"]["val"])
    acc, loss = by_hand(load_weights(os.path.join(world["base"], "model.safetensors")), world["base"],
                        world["heads"]["phones"], world["data"]["phones"]["val"])
    assert res["n"] == 15 and res["accuracy"] == pytest.approx(acc) and res["loss"] == pytest.approx(loss, abs=1e-4)


def test_mixture_of_label_sets_trains_the_encoder_and_merges_whole(world, tmp_path):
    d = world["data"]
    job = Job(base_dir=world["base"], task=TASK, hp=HP, device="cpu", batch_size=8, heads=world["heads"])
    rec = finetune(job, {"books": d["books"]["train"], "food": d["food"]["train"]}, str(tmp_path / "m.safetensors"),
                   str(tmp_path / "t.json"))  # job.heads holds every dataset's head: it trains with its members' only
    assert rec["examples_per_dataset"] == {"books": 20, "food": 20} and all(l == l for l in rec["train_loss"])
    loss = rec["train_loss"]
    assert sum(loss[-5:]) < 0.8 * sum(loss[:5]), loss  # it learns across two label sets at once
    base, ft = load_weights(os.path.join(world["base"], "model.safetensors")), load_weights(tmp_path / "m.safetensors")
    assert base.keys() == ft.keys() and not any(k.startswith("classifier") for k in base)  # no head inside the model
    assert sum(not torch.equal(base[k], ft[k]) for k in base) > len(base) // 2
    engine.clear_cache()
    pool = pools.Pool(FAM, world["base"], "cpu", "memory", ["a", "b"])
    assert set(pool.keys) == {k for k, v in base.items() if v.is_floating_point()}  # the whole encoder
    res = engine.score(job.only(["phones"]), {"mix": str(tmp_path / "m.safetensors")}, world["data"]["phones"]["val"])
    acc, loss = by_hand(ft, world["base"], world["heads"]["phones"], world["data"]["phones"]["val"])
    assert res["n"] == 15 and res["accuracy"] == pytest.approx(acc) and res["loss"] == pytest.approx(loss, abs=1e-4)


def test_a_loss_without_heads_is_a_clear_error(world):
    from merge2mix.errors import CheckpointError

    enc = FAM.encode(FAM.load_processor(world["base"]), pd.read_parquet(world["data"]["books"]["val"]), TASK)
    model = FAM.load_model(world["base"])
    assert FAM.mean_embedding(model, enc, 4).shape == (32,)  # embeddings need no heads
    with pytest.raises(CheckpointError, match=r"needs each dataset's head"):
        FAM.forward(model, enc.batch([0, 1]))


def test_topic_loaders_and_demo_config():
    from merge2mix.data import packaged

    bbc = packaged.load("bbc_news")
    assert len(bbc) == 2225 and set(bbc["label"]) == {"business", "entertainment", "politics", "sports", "tech"}
    rec = packaged.load("twenty_newsgroups", "rec")
    assert set(rec["label"]) == {"rec.autos", "rec.motorcycles", "rec.sport.baseball", "rec.sport.hockey"}
    assert packaged.load("reuters", "r8")["label"].nunique() == 8
    cfg = config_mod.load(REPO / "configs" / "demo-topics.yaml")
    assert cfg["task"]["type"] == "text_label_description" and len(config_mod.Plan(cfg).masks) == 31


def test_frozen_shared_head_is_the_label_description_family_over_task_labels(tiny_model, tmp_path):
    """task.head label_description on text_classification: every dataset's classes are task.labels (in
    their order), each dataset's prepared labels index into them, and every frozen head is one matrix."""
    raw = {"target": "phones", "model": {"name_or_path": str(tiny_model)},
           "task": {"type": "text_classification", "labels": ["great", "broken"], "head": "label_description", "max_length": 16},
           "datasets": {n: {"local": {"path": str(FIXTURES / f)}, **COLS, "label_map": m}
                        for n, (f, m) in {"phones": SOURCES["phones"], "books": ("books.csv", {"neg": "broken", "pos": "great"}),
                                          "food": ("food.jsonl", {"neg": "broken", "pos": "great"})}.items()}}
    cfg = config_mod.validate(raw)
    task = cfg["task"]
    assert task["type"] == "text_label_description" and task["head"] == "label_description" and "labels" not in task
    assert task["templates"] == ["This text is about {}."]
    assert all(ds["classes"] == ["great", "broken"] for ds in cfg["datasets"].values())
    assert "classes" not in raw["datasets"]["books"] and raw["task"]["type"] == "text_classification"  # input untouched
    FAM.init_base(str(tiny_model), str(tmp_path / "base"), task, seed=0)
    heads = {}
    for name, ds in cfg["datasets"].items():
        out = {s: str(tmp_path / name / f"{s}.parquet") for s in ("train", "val", "test")} | {"meta": str(tmp_path / name / "m.json")}
        meta = prepare_dataset(name, ds, None, {"val_fraction": 0.25, "test_fraction": 0.25}, 0, out)
        assert set(pd.read_parquet(out["train"])["label"]) == {"great", "broken"}
        assert meta["labels"] == ["great", "broken"]  # task.labels' order, not sorted
        heads[name] = FAM.build_head(str(tmp_path / "base"), meta["labels"], task["templates"], str(tmp_path / f"{name}.st"))
    assert torch.equal(heads["phones"], heads["books"]) and torch.equal(heads["phones"], heads["food"])
    val = str(tmp_path / "phones" / "val.parquet")  # theta_0 is a zero-shot classifier through the frozen head
    job = Job(base_dir=str(tmp_path / "base"), task=task, batch_size=8, device="cpu", heads={"phones": str(tmp_path / "phones.st")})
    res = engine.score(job, {"base": str(tmp_path / "base" / "model.safetensors")}, val)
    acc, _ = by_hand(load_weights(tmp_path / "base" / "model.safetensors"), str(tmp_path / "base"), str(tmp_path / "phones.st"), val)
    assert res["accuracy"] == pytest.approx(acc)


@pytest.mark.parametrize("edit, message", [
    ({"type": "clip"}, r"^config: task\.head: 'label_description' is an option of task\.type text_classification, not clip$"),
    ({"head": "frozen"}, r"^config: task\.head: 'frozen' is not one of \['trained', 'label_description'\]$"),
])
def test_head_option_errors_name_the_key(edit, message):
    raw = {"target": "a", "model": {"name_or_path": "x/y"}, "datasets": {n: {"package": {"loader": "rotten_tomatoes"}} for n in "abc"},
           "task": {"type": "text_classification", "labels": ["negative", "positive"], "head": "label_description", **edit}}
    with pytest.raises(config_mod.ConfigError, match=message):
        config_mod.validate(raw)


def test_the_trained_head_leaves_the_task_as_it_was():
    """task.head: trained (what an absent key meant before the recommended defaults) leaves the task dict
    (part of every store key) as those runs had it: no head key."""
    cfg = config_mod.load(REPO / "bench" / "configs" / "target-airline.yaml")  # the embedded pool with the trained head
    assert "head" not in cfg["task"] and cfg["task"]["type"] == "text_classification" and "classes" not in cfg["datasets"]["apple"]
    default = config_mod.load(REPO / "config.yaml")  # the embedded default uses the frozen head
    assert default["task"]["type"] == "text_label_description" and default["task"]["head"] == "label_description"

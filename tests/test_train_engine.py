"""The fine-tune loop and the merge-eval engine on the tiny random BERT."""

import json
from dataclasses import replace

import pytest
import torch

from conftest import FIXTURES
from merge2mix import engine, families
from merge2mix.data.prepare import prepare_dataset
from merge2mix.errors import CheckpointError
from merge2mix.evaluate import evaluate
from merge2mix.job import Job
from merge2mix.merge import average
from merge2mix.checkpoints import load_weights, save_weights
from merge2mix.train import finetune

TASK = {"type": "text_classification", "labels": ["negative", "positive"], "max_length": 16}
HP = {"lr": 0.01, "epochs": 1, "max_steps": 24, "batch_size": 8, "weight_decay": 0.01, "warmup_ratio": 0.1, "max_grad_norm": 1.0}
FAM = families.get("text_classification")


@pytest.fixture(scope="module")
def world(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    FAM.init_base(str(tiny_model), str(root / "base"), TASK, seed=0)
    data = {}
    for name, fname in [("phones", "phones.csv"), ("books", "books.csv"), ("food", "food.jsonl")]:
        out = {s: str(root / "data" / name / f"{s}.parquet") for s in ("train", "val", "test")} | {"meta": str(root / "data" / name / "meta.json")}
        ds = {"local": {"path": str(FIXTURES / fname)}, "columns": {"text": "review", "label": "stars"},
              "label_map": {"neg": "negative", "pos": "positive"}}
        prepare_dataset(name, ds, TASK["labels"], {"val_fraction": 0.25, "test_fraction": 0.25}, 0, out)
        data[name] = out
    ckpts = {}
    for name in ("books", "food"):
        ckpts[name] = str(root / "ft" / name / "model.safetensors")
        finetune(Job(base_dir=str(root / "base"), task=TASK, hp=HP, device="cpu"), {name: data[name]["train"]}, ckpts[name],
                 str(root / "ft" / name / "train.json"))
    return {"root": root, "base": str(root / "base"), "data": data, "ckpts": ckpts,
            "job": Job(base_dir=str(root / "base"), task=TASK, hp=HP, seed=0, device="cpu", batch_size=16)}


def test_finetune_is_deterministic_on_cpu_and_learns(world):
    root = world["root"]
    again = str(root / "again.safetensors")
    rec = finetune(world["job"], {"books": world["data"]["books"]["train"]}, again, str(root / "again.json"))
    first = json.loads((root / "ft" / "books" / "train.json").read_text())
    assert rec["weights_sha256"] == first["weights_sha256"]  # bit-identical checkpoint
    assert rec["train_loss"] == first["train_loss"]
    assert len(rec["train_loss"]) == rec["steps"] == 24
    assert sum(rec["train_loss"][-5:]) < sum(rec["train_loss"][:5])
    assert rec["hyperparameters"] == HP and rec["examples"] == 20


def test_train_seed_moves_only_the_fine_tune(world, tmp_path):
    """train.seed (in the train block) is the fine-tune's seed in place of the run's: the same
    checkpoint as a run seeded with it, another than the run's seed gives; its record says which."""
    books = {"books": world["data"]["books"]["train"]}
    first = json.loads((world["root"] / "ft" / "books" / "train.json").read_text())
    by_hp = finetune(replace(world["job"], hp={**HP, "seed": 1}), books, str(tmp_path / "a.safetensors"), str(tmp_path / "a.json"))
    by_run = finetune(replace(world["job"], seed=1), books, str(tmp_path / "b.safetensors"), str(tmp_path / "b.json"))
    assert by_hp["weights_sha256"] == by_run["weights_sha256"] != first["weights_sha256"]
    assert by_hp["seed"] == by_run["seed"] == 1 and first["seed"] == 0


def test_finetuned_model_beats_base_on_its_own_domain(world):
    val = world["data"]["books"]["val"]
    base = engine.score(world["job"], {"base": f"{world['base']}/model.safetensors"}, val)
    tuned = engine.score(world["job"], {"books": world["ckpts"]["books"]}, val)
    assert tuned["accuracy"] > base["accuracy"] and tuned["loss"] < base["loss"]


def test_engine_scores_the_average_of_the_mask(world):
    engine.clear_cache()
    ck = world["ckpts"]
    out = world["root"] / "me" / "books+food.json"
    rec = engine.merge_eval("books+food", str(out), world["job"], ck, world["data"]["phones"]["val"])
    assert json.loads(out.read_text())["accuracy"] == rec["accuracy"]
    assert rec["datasets"] == ["books", "food"] and rec["size"] == 2 and rec["n"] == 15
    # Independently: load the average into a fresh model and evaluate it.
    model = FAM.load_model(world["base"])
    model.load_state_dict(average([load_weights(ck["books"]), load_weights(ck["food"])]))
    enc = FAM.encode(FAM.load_processor(world["base"]), __import__("pandas").read_parquet(world["data"]["phones"]["val"]),
                     TASK)
    ref = evaluate(model, enc, FAM.forward, 16)
    assert ref["accuracy"] == rec["accuracy"] and ref["loss"] == pytest.approx(rec["loss"], abs=1e-6)


def test_engine_refuses_a_checkpoint_of_another_architecture(world, tmp_path):
    sd = load_weights(world["ckpts"]["books"])
    sd["classifier.weight"] = torch.zeros(3, sd["classifier.weight"].shape[1])
    save_weights(sd, tmp_path / "odd.safetensors")
    with pytest.raises(CheckpointError, match=r"checkpoint odd .*classifier\.weight' has shape \(3, 32\)"):
        engine.score(world["job"], {"odd": str(tmp_path / "odd.safetensors")}, world["data"]["phones"]["val"])


def test_unloadable_model_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match=r"model '.*nomodel': cannot be loaded"):
        FAM.init_base(str(tmp_path / "nomodel"), str(tmp_path / "out"), TASK, seed=0)


@pytest.mark.parametrize("every, saved", [(5, 15), (4, 16)], ids=["epoch-boundary", "mid-epoch"])
def test_a_killed_finetune_resumes_bit_identical(world, tmp_path, monkeypatch, every, saved):
    """Interrupt training after step 17, rerun: it resumes from the last saved state and ends with the
    same weights and loss curve as an uninterrupted run. 20 examples in batches of 8 are 3 steps an
    epoch: step 15 ends an epoch (the next one draws a fresh shuffle), step 16 is one batch into one,
    so only the mid-epoch case shows that the saved order and position are used."""
    books = {"books": world["data"]["books"]["train"]}
    ref = finetune(world["job"], books, str(tmp_path / "ref.safetensors"), str(tmp_path / "ref.json"))

    real_clip, calls = torch.nn.utils.clip_grad_norm_, {"n": 0}

    def dying_clip(*a, **k):
        calls["n"] += 1
        if calls["n"] == 18:
            raise KeyboardInterrupt  # as if killed mid-step
        return real_clip(*a, **k)

    work = tmp_path / "work"
    kw = dict(job=replace(world["job"], checkpoint_every=every), train_paths=books, out_weights=str(tmp_path / "w.safetensors"),
              out_json=str(tmp_path / "w.json"), work_dir=str(work))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", dying_clip)
    with pytest.raises(KeyboardInterrupt):
        finetune(**kw)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    assert (work / "latest").read_text().strip() == f"step-{saved}" and not (tmp_path / "w.safetensors").exists()
    rec = finetune(**kw)
    assert rec["resumed_from_step"] == saved
    assert rec["weights_sha256"] == ref["weights_sha256"] and rec["train_loss"] == ref["train_loss"]
    assert not work.exists()  # the state is removed once the fine-tune is done


def test_diverging_training_stops_with_a_clear_error(world, tmp_path):
    from merge2mix.errors import Merge2MixError

    with pytest.raises(Merge2MixError, match=r"fine-tune books: loss became (nan|inf) at step \d+ \(lower train\.lr\?\)"):
        finetune(replace(world["job"], hp={**HP, "lr": 1e30, "max_grad_norm": 1e30}), {"books": world["data"]["books"]["train"]},
                 str(tmp_path / "x.safetensors"), str(tmp_path / "x.json"))
    assert not (tmp_path / "x.safetensors").exists()

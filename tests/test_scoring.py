"""engine.score / merge_eval and the evaluation wrappers around them (precision check, batch-size
back-off) on theta_0 of the tiny random BERT and perturbed copies of it: no training, so these run
in a second (mutation testing runs them once per mutant)."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from conftest import FIXTURES
from merge2mix import engine, families
from merge2mix import evaluate as ev
from merge2mix.data.prepare import prepare_dataset
from merge2mix.evaluate import evaluate
from merge2mix.job import Job
from merge2mix.merge import average, merge_state
from merge2mix.checkpoints import load_weights, save_weights

pytestmark = pytest.mark.usefixtures("isolated_cwd")  # relative-path writes fail, not leak

TASK = {"type": "text_classification", "labels": ["negative", "positive"], "max_length": 16}
FAM = families.get("text_classification")


@pytest.fixture(scope="module")
def world(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    FAM.init_base(str(tiny_model), str(root / "base"), TASK, seed=0)
    out = {s: str(root / "phones" / f"{s}.parquet") for s in ("train", "val", "test")} | {"meta": str(root / "phones" / "meta.json")}
    prepare_dataset("phones", {"local": {"path": str(FIXTURES / "phones.csv")}, "columns": {"text": "review", "label": "stars"},
                               "label_map": {"neg": "negative", "pos": "positive"}}, TASK["labels"],
                    {"val_fraction": 0.25, "test_fraction": 0.25}, 0, out)
    base = load_weights(root / "base" / "model.safetensors")
    ckpts = {}
    for i, name in enumerate(("books", "food")):  # stand-ins for fine-tunes: theta_0 moved at random
        g = torch.Generator().manual_seed(i + 1)
        ckpts[name] = str(root / name / "model.safetensors")
        save_weights({k: v + 0.3 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
                      for k, v in base.items()}, ckpts[name])
    return {"base": str(root / "base"), "val": out["val"], "ckpts": ckpts}


def _by_hand(world, state):
    model = FAM.load_model(world["base"])
    model.load_state_dict(state)
    enc = FAM.encode(FAM.load_processor(world["base"]), pd.read_parquet(world["val"]), TASK)
    return evaluate(model, enc, FAM.forward, 4)


def test_score_is_the_evaluation_of_the_merged_model(world):
    engine.clear_cache()
    job = Job(base_dir=world["base"], task=TASK, batch_size=4, device="cpu")
    got = engine.score(job, world["ckpts"], world["val"])
    want = _by_hand(world, average([load_weights(p) for p in world["ckpts"].values()]))
    assert {k: got[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "loss", "n")} == \
        {k: want[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "loss", "n")}
    assert got["batch_size"] == 4 and got["precision"] == "fp32" and got["merge_s"] >= 0 and got["eval_s"] > 0
    base = load_weights(f"{world['base']}/model.safetensors")
    op = {"method": "ties", "params": {"density": 0.5, "lam": 1.0, "power": 0.0}}
    ties = engine.score(job, world["ckpts"], world["val"], operator=op)
    want = _by_hand(world, merge_state("ties", base, [load_weights(world["ckpts"][n]) for n in ("books", "food")], op["params"]))
    assert (ties["accuracy"], ties["loss"]) == (want["accuracy"], want["loss"])
    one = engine.score(job, {"books": world["ckpts"]["books"]}, world["val"])  # the same warm pool, one member
    want = _by_hand(world, load_weights(world["ckpts"]["books"]))
    assert (one["accuracy"], one["loss"]) == (want["accuracy"], want["loss"])


def test_per_example_scores_say_which_examples_each_model_got_right(world):
    job = Job(base_dir=world["base"], task=TASK, batch_size=4, device="cpu")
    got = engine.score(job, {"books": world["ckpts"]["books"]}, world["val"], per_example=True)
    model = FAM.load_model(world["base"])
    model.load_state_dict(load_weights(world["ckpts"]["books"]))
    enc = FAM.encode(FAM.load_processor(world["base"]), pd.read_parquet(world["val"]), TASK)
    want = evaluate(model, enc, FAM.forward, 4, keep_preds=True)
    gold = torch.cat([b["labels"] for b in enc.batches(4, "cpu", order=torch.arange(len(enc)))])
    assert got["correct"] == (want["preds"] == gold).int().tolist()  # split order, one entry per example
    assert len(got["correct"]) == got["n"] and sum(got["correct"]) / got["n"] == pytest.approx(got["accuracy"])
    assert "correct" not in engine.score(job, {"books": world["ckpts"]["books"]}, world["val"])  # off by default


def test_merge_eval_writes_one_record_per_mask(world, tmp_path):
    engine.clear_cache()
    out = tmp_path / "me" / "books+food.json"
    job = Job(base_dir=world["base"], task=TASK, batch_size=4, device="cpu")
    rec = engine.merge_eval("books+food", str(out), job, world["ckpts"], world["val"])
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(rec))
    assert rec["mask"] == "books+food" and rec["datasets"] == ["books", "food"] and rec["size"] == 2 and rec["n"] == 15
    assert rec["operator"] == {"method": "average", "params": {}} and rec["wall_s"] >= rec["eval_s"]
    direct = engine.score(job, world["ckpts"], world["val"])
    assert (rec["accuracy"], rec["loss"]) == (direct["accuracy"], direct["loss"])


def test_a_bundle_reuses_only_results_made_from_the_same_inputs(world, tmp_path):
    """engine.merge_bundle scores its masks in this process and reuses a result file only when its
    inputs_id matches: a rewritten fine-tune or another operator scores the mask again; the pool and
    the memory budget, which only plan memory, do not."""
    import os

    engine.clear_cache()
    job = Job(base_dir=world["base"], task=TASK, batch_size=4, device="cpu")
    ck = world["ckpts"]
    masks = {"books": {"books": ck["books"]}, "books+food": ck, "food": {"food": ck["food"]}}
    res = tmp_path / "merge_eval"
    first = engine.merge_bundle(masks, str(res), str(tmp_path / "b0.json"), job, world["val"])
    assert first["scored"] == 3 and first["reused"] == [] and first["process"] == os.getpid()
    assert json.loads((tmp_path / "b0.json").read_text())["masks"] == json.loads(json.dumps(first["masks"]))
    for key, rec in first["masks"].items():  # what rule merge_eval copies to each mask's file
        assert engine.from_bundle(key, str(tmp_path / "b0.json"), str(res / f"{key}.json")) == rec
        direct = engine.score(job, masks[key], world["val"])
        assert (rec["accuracy"], rec["loss"]) == (direct["accuracy"], direct["loss"])
    again = engine.merge_bundle(masks, str(res), str(tmp_path / "b0.json"), job, world["val"], pool=["books", "food", "x"],
                                budget_bytes=10**9)
    assert again["scored"] == 0 and again["reused"] == ["books", "books+food", "food"] and again["masks"] == first["masks"]
    save_weights(load_weights(ck["food"]), ck["food"])  # the same tensors, a new file: its mtime changed
    again = engine.merge_bundle(masks, str(res), str(tmp_path / "b0.json"), job, world["val"])
    assert again["reused"] == ["books"] and again["scored"] == 2
    ties = {"method": "ties", "params": {"density": 0.5, "lam": 1.0, "power": 0.0}}
    assert engine.inputs_id(job, ck, world["val"], operator=ties) != engine.inputs_id(job, ck, world["val"])
    assert engine.inputs_id(replace(job, batch_size=8), ck, world["val"]) != engine.inputs_id(job, ck, world["val"])
    with pytest.raises(Exception, match="books\\+x: not in its bundle"):
        engine.from_bundle("books+x", str(tmp_path / "b0.json"), str(tmp_path / "no.json"))


def test_warm_caches_are_keyed_by_file_identity(world, tmp_path):
    """The pool and the tokenised split are built once per process and base, and rebuilt when a file
    they came from changes (the cache key holds its size and mtime)."""
    engine.clear_cache()
    s = dict(job=Job(base_dir=world["base"], task=TASK, batch_size=4, device="cpu"), split_path=world["val"],
             checkpoints=world["ckpts"], pool=sorted(world["ckpts"]))
    engine.score(**s)
    pools = [v for k, v in engine._CACHE.items() if k[0] == "pool"]
    splits = [v for k, v in engine._CACHE.items() if k[0] == "split"]
    engine.score(**s)
    assert [v for k, v in engine._CACHE.items() if k[0] == "pool"] == pools and len(pools) == 1
    assert [v for k, v in engine._CACHE.items() if k[0] == "split"] == splits and len(splits) == 1
    engine.score(**s, mode="stream")  # another mode: another pool
    assert len([k for k in engine._CACHE if k[0] == "pool"]) == 2
    val = pd.read_parquet(world["val"]).head(6)
    copy = tmp_path / "val.parquet"
    val.to_parquet(copy)
    six = engine.score(**{**s, "split_path": str(copy)})
    assert six["n"] == 6
    val.head(4).to_parquet(copy)  # the same path, new content
    assert engine.score(**{**s, "split_path": str(copy)})["n"] == 4
    engine.clear_cache()
    assert engine._CACHE == {}


def test_a_warm_process_holds_one_one_off_pool_beside_the_candidates(world, tmp_path):
    """A merge without a named pool (theta_0, the best merge, the deployed model, each single) takes
    the one slot for one-offs: the previous one-off pool is dropped before the next is built, the
    candidates' pool stays warm, and every score is what a fresh process gives."""
    engine.clear_cache()
    job = Job(base_dir=world["base"], task=TASK, batch_size=4, device="cpu")
    ck, val = world["ckpts"], world["val"]
    fresh = {}
    for name, one in [("base", {"base": f"{world['base']}/model.safetensors"}), ("books", {"mixture": ck["books"]}),
                      ("food", {"mixture": ck["food"]}), ("both", ck)]:
        engine.clear_cache()
        fresh[name] = engine.score(job, one, val)
    engine.clear_cache()
    warm = engine.score(job, ck, val, pool=sorted(ck))
    candidates = [v for k, v in engine._CACHE.items() if k[0] == "pool"]
    for name, one in [("base", {"base": f"{world['base']}/model.safetensors"}), ("books", {"mixture": ck["books"]}),
                      ("food", {"mixture": ck["food"]}), ("both", ck)]:
        got = engine.score(job, one, val)
        assert (got["accuracy"], got["loss"]) == (fresh[name]["accuracy"], fresh[name]["loss"]), name
        assert len([k for k in engine._CACHE if k[0] in ("pool", "one_off")]) == 2, name  # models held
        assert len([k for k in engine._CACHE if k[0] == "one_off"]) == 1, name
        assert [v for k, v in engine._CACHE.items() if k[0] == "pool"] == candidates  # still warm, not rebuilt
    assert (warm["accuracy"], warm["loss"]) == (fresh["both"]["accuracy"], fresh["both"]["loss"])
    last = [v for k, v in engine._CACHE.items() if k[0] == "one_off"]  # "both"'s
    engine.score(job, {"mixture": ck["books"]}, val)  # the singles' jobs: one slot, reused while its key holds
    assert [v for k, v in engine._CACHE.items() if k[0] == "one_off"] != last  # a single's replaced it ...
    again = [v for k, v in engine._CACHE.items() if k[0] == "one_off"]
    engine.score(job, {"mixture": ck["food"]}, val)
    assert [v for k, v in engine._CACHE.items() if k[0] == "one_off"] == again  # ... and one pool serves both singles


def test_resolvers():
    assert ev.resolve_precision("auto", "cpu") == "fp32"
    assert ev.resolve_precision("bf16", "cpu") == "bf16" and ev.resolve_precision("fp32", "cuda") == "fp32"
    assert ev.resolve_batch_size(7, "cpu") == 7 and ev.resolve_batch_size("16", "cpu") == 16
    saved = dict(ev._FITS)
    ev._FITS.clear()
    try:
        assert ev.resolve_batch_size("auto", "cpu") == 128
        ev._FITS["cpu"] = 32
        assert ev.resolve_batch_size("auto", "cpu") == 32 and ev.resolve_batch_size(64, "cpu") == 64
    finally:
        ev._FITS.clear()
        ev._FITS.update(saved)


def test_low_precision_scoring_is_checked_against_fp32(world):
    """bf16 autocast (CPU supports it too) is compared with fp32 on a sample and falls back when they
    disagree; fp32 is the default off the GPU and is what the fp32 path computes."""
    job = Job(base_dir=world["base"], task=TASK, batch_size=4, device="cpu")
    s = dict(checkpoints={"books": world["ckpts"]["books"], "food": world["ckpts"]["food"]}, split_path=world["val"])
    fp32 = engine.score(job, **s)
    assert fp32["precision"] == "fp32" and "precision_agreement" not in fp32  # auto on CPU = fp32
    bf16 = engine.score(replace(job, precision={"precision": "bf16", "check_examples": 8, "min_agreement": 0.0}), **s)
    assert bf16["precision"] == "bf16" and bf16["precision_check_n"] == 8 and 0.0 <= bf16["precision_agreement"] <= 1.0
    assert abs(bf16["loss"] - fp32["loss"]) < 0.05  # close, not equal: bf16 keeps 8 mantissa bits
    strict = engine.score(replace(job, precision={"precision": "bf16", "check_examples": 8, "min_agreement": 1.01}), **s)
    assert strict["precision"] == "fp32" and "agreed with fp32" in strict["precision_note"]
    assert (strict["accuracy"], strict["loss"]) == (fp32["accuracy"], fp32["loss"])  # the fallback is plain fp32


def test_eval_batch_backs_off_on_gpu_out_of_memory(world, monkeypatch):
    """A forward pass that runs out of GPU memory above 8 examples (simulated on CPU): `auto` halves
    the batch until it fits, gives the same scores as batch 8, and later masks start from 8."""
    import pandas as pd

    from merge2mix import evaluate as ev

    enc = FAM.encode(FAM.load_processor(world["base"]), pd.read_parquet(world["val"]),
                     TASK)
    model = FAM.load_model(world["base"])
    sizes = []

    def tight_forward(m, b):
        sizes.append(len(b["labels"]))
        if len(b["labels"]) > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return FAM.forward(m, b)

    monkeypatch.setattr(ev, "_FITS", {})
    got = ev.evaluate_checked(model, enc, tight_forward, "auto", "cpu")  # auto on CPU starts at 128
    want = ev.evaluate_checked(model, enc, FAM.forward, 8, "cpu")
    assert got["batch_size"] == 8 and {k: got[k] for k in ("accuracy", "loss", "n")} == {k: want[k] for k in ("accuracy", "loss", "n")}
    assert ev._FITS == {"cpu": 8} and ev.resolve_batch_size("auto", "cpu") == 8
    assert max(sizes) > 8  # it tried bigger batches first
    with pytest.raises(torch.cuda.OutOfMemoryError):  # an explicit size backs off too, down to 1 at most
        ev.evaluate_checked(model, enc, lambda m, b: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("oom")), 4, "cpu")


def test_precision_check_by_hand(world):
    """The check compares bf16 and fp32 predictions on the first `check_examples` examples; agreement
    equal to the minimum keeps bf16 (scored on the whole split), anything below falls back to fp32."""
    model = FAM.load_model(world["base"])
    model.load_state_dict(average([load_weights(p) for p in world["ckpts"].values()]))
    enc = FAM.encode(FAM.load_processor(world["base"]), pd.read_parquet(world["val"]), TASK)
    low = evaluate(model, enc, FAM.forward, 4, "cpu", torch.bfloat16, 8, keep_preds=True)
    ref = evaluate(model, enc, FAM.forward, 4, "cpu", None, 8, keep_preds=True)
    agreement = float((low["preds"] == ref["preds"]).float().mean())
    kept = ev.evaluate_checked(model, enc, FAM.forward, 4, "cpu", "bf16", check_examples=8, min_agreement=agreement)
    whole = evaluate(model, enc, FAM.forward, 4, "cpu", torch.bfloat16)
    assert kept["precision"] == "bf16" and kept["precision_check_n"] == 8 and kept["precision_agreement"] == agreement
    assert (kept["n"], kept["accuracy"], kept["loss"]) == (15, whole["accuracy"], whole["loss"])
    assert "precision_note" not in kept and kept["batch_size"] == 4
    fell = ev.evaluate_checked(model, enc, FAM.forward, 4, "cpu", "bf16", check_examples=8, min_agreement=agreement + 1e-6)
    fp32 = evaluate(model, enc, FAM.forward, 4, "cpu")
    assert fell["precision"] == "fp32" and (fell["n"], fell["loss"]) == (15, fp32["loss"])
    assert fell["precision_note"] == f"bf16 agreed with fp32 on {agreement:.4f} < {agreement + 1e-6} of the check sample"
    plain = ev.evaluate_checked(model, enc, FAM.forward, 4, "cpu", "fp32")
    assert plain == {**fp32, "precision": "fp32", "batch_size": 4}


def test_score_passes_its_settings_down(world, tmp_path):
    """The memory budget reaches the pool (a 1-byte budget: stream mode), the task is part of the
    split's cache key (another max_length re-encodes), the operator is recorded by merge_eval, and
    wall_s is the call's own time."""
    import time

    engine.clear_cache()
    job = Job(base_dir=world["base"], task=TASK, batch_size=4, device="cpu")
    s = dict(checkpoints=world["ckpts"], split_path=world["val"])
    engine.score(job, budget_bytes=1, **s)
    assert [v.mode for k, v in engine._CACHE.items() if k[0] in ("pool", "one_off")] == ["stream"]
    engine.clear_cache()
    engine.score(job, budget_bytes=10**13, **s)
    assert [v.mode for k, v in engine._CACHE.items() if k[0] in ("pool", "one_off")] == ["memory"]
    full = engine.score(job, **s)
    short = engine.score(replace(job, task={**TASK, "max_length": 3}), **s)
    assert short["loss"] != full["loss"]
    op = {"method": "task_arithmetic", "params": {"lam": 0.5, "power": 0.0}}
    t0 = time.perf_counter()
    rec = engine.merge_eval("books+food", str(tmp_path / "m.json"), job, operator=op, **s)
    elapsed = time.perf_counter() - t0
    assert rec["operator"] == op and json.loads((tmp_path / "m.json").read_text())["operator"] == op
    assert rec["eval_s"] <= rec["wall_s"] <= elapsed and rec["merge_s"] + rec["eval_s"] <= rec["wall_s"] + 2e-4


def test_a_family_with_its_own_evaluation_is_scored_through_it(world, monkeypatch):
    """causal_lm scores generatively (families' own `evaluate`); the engine passes it the merged model,
    the encoded split, the batch size, the device and the task, and records dtype and batch size."""
    from types import SimpleNamespace

    calls = []

    def own_evaluate(model, split, batch_size, device, task):
        calls.append((model, split, batch_size, device, task))
        return {"accuracy": 0.25, "macro_f1": 0.25, "balanced_accuracy": 0.25, "loss": 1.5, "n": len(split)}

    fam = SimpleNamespace(**{k: getattr(FAM, k) for k in ("load_model", "load_processor", "encode", "is_merged")},
                          evaluate=own_evaluate)
    monkeypatch.setattr(families, "get", lambda name: fam)
    from merge2mix import task_types  # declared generative, as causal_lm is

    monkeypatch.setitem(task_types.TASK_TYPES, "text_classification",
                        replace(task_types.TASK_TYPES["text_classification"], generative=True))
    engine.clear_cache()
    out = engine.score(Job(base_dir=world["base"], task=TASK, batch_size="auto", device="cpu"), world["ckpts"], world["val"])
    (model, split, bs, dev, task), = calls
    pool = next(v for k, v in engine._CACHE.items() if k[0] in ("pool", "one_off"))
    assert model is pool.model and len(split) == 15 and bs == 128 and dev == torch.device("cpu") and task == TASK
    assert {k: out[k] for k in ("accuracy", "loss", "n", "batch_size", "precision")} == \
        {"accuracy": 0.25, "loss": 1.5, "n": 15, "batch_size": 128, "precision": "float32"}
    engine.clear_cache()


def test_explicit_batch_sizes_back_off_to_one_and_are_not_remembered(monkeypatch):
    sizes = []

    def always_oom(bs):
        sizes.append(bs)
        raise torch.cuda.OutOfMemoryError("oom")

    monkeypatch.setattr(ev, "_FITS", {})
    with pytest.raises(torch.cuda.OutOfMemoryError):
        ev.with_oom_backoff(always_oom, 4, "cpu")
    assert sizes == [4, 2, 1]
    out, bs = ev.with_oom_backoff(lambda b: b * 10, 6, "cpu")
    assert (out, bs) == (60, 6) and ev._FITS == {}  # only `auto` learns what fits
    out, bs = ev.with_oom_backoff(lambda b: b, "auto", "cpu")
    assert bs == 128 and ev._FITS == {"cpu": 128}


def test_default_precision_check_keeps_bf16_when_it_agrees():
    """Defaults (256 check examples, 0.99 agreement): well-separated logits agree in bf16 and fp32."""
    from test_metrics import _forward, _Split

    logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0]] * 10)
    labels = torch.tensor([0, 1] * 10)
    out = ev.evaluate_checked(torch.nn.Identity(), _Split(logits, labels), _forward, 8, "cpu", "bf16")
    assert out["precision"] == "bf16" and out["precision_check_n"] == 20 and out["precision_agreement"] == 1.0


def test_bf16_that_flips_a_near_tie_falls_back_to_fp32():
    """Logits 1.0 and 1.0001 are equal in bf16 (8 mantissa bits): bf16 predicts class 0, fp32 class 1,
    so the check sees the disagreement and scores in fp32."""
    from test_metrics import _Split

    def through_a_linear_layer(model, b):  # a matmul, so autocast computes it in bf16
        z = model(b["logits"])
        return torch.nn.functional.cross_entropy(z.float(), b["labels"]), z

    identity = torch.nn.Linear(2, 2, bias=False)
    torch.nn.init.eye_(identity.weight)
    logits = torch.tensor([[1.0, 1.0001], [4.0, -4.0]] * 5)
    labels = torch.tensor([1, 0] * 5)
    out = ev.evaluate_checked(identity, _Split(logits, labels), through_a_linear_layer, 4, "cpu", "bf16")
    assert out["precision"] == "fp32" and out["precision_agreement"] == 0.5 and out["accuracy"] == 1.0

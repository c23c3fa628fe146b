"""Every merge path of the engine is bit-for-bit the naive average, for every mask of a 4-model pool."""

import random
from itertools import combinations

import pytest
import torch

from merge2mix import engine, families
from merge2mix.errors import CheckpointError
from merge2mix.merge import average, load_weights, save_weights

FAM = families.get("text_classification")
NAMES = ["a", "b", "c", "d"]
MASKS = [m for k in range(1, 5) for m in combinations(NAMES, k)]


@pytest.fixture(scope="module")
def pool_files(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    FAM.init_base(str(tiny_model), str(root / "base"), {"labels": ["negative", "positive"]}, seed=0)
    base = load_weights(root / "base" / "model.safetensors")
    files = {}
    for i, n in enumerate(NAMES):
        g = torch.Generator().manual_seed(i + 1)
        sd = {k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in base.items()}
        files[n] = str(root / f"{n}.safetensors")
        save_weights(sd, files[n])
    return str(root / "base"), files


@pytest.mark.parametrize("mode, max_sums", [("memory", None), ("memory", 1), ("stream", None)])
def test_every_mask_equals_the_naive_average(pool_files, mode, max_sums):
    base_dir, files = pool_files
    pool = engine.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
    if max_sums:
        pool.max_sums = max_sums  # a tiny prefix cache: reuse and eviction both happen
    order = list(MASKS) * 2
    random.Random(0).shuffle(order)
    for mask in order:
        merged = pool.merge({n: files[n] for n in mask}).state_dict()
        naive = average([load_weights(files[n]) for n in sorted(mask)])
        for k, v in naive.items():
            assert torch.equal(merged[k], v), (mode, mask, k)
    assert len(pool.sums) <= pool.max_sums


def test_auto_mode_follows_the_budget(pool_files):
    base_dir, _ = pool_files
    assert engine.Pool(FAM, base_dir, "cpu", mode="auto", pool=NAMES, budget_bytes=10**12).mode == "memory"
    assert engine.Pool(FAM, base_dir, "cpu", mode="auto", pool=NAMES, budget_bytes=10).mode == "stream"


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_bad_members_are_named(pool_files, tmp_path, mode):
    base_dir, files = pool_files
    pool = engine.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
    sd = load_weights(files["a"])
    sd["classifier.bias"] = torch.zeros(3)
    save_weights(sd, tmp_path / "odd.safetensors")
    with pytest.raises(CheckpointError, match=r"checkpoint odd .*'classifier\.bias' has shape \(3,\), base has \(2,\)"):
        pool.merge({"a": files["a"], "odd": str(tmp_path / "odd.safetensors")})
    (tmp_path / "cut.safetensors").write_bytes(open(files["b"], "rb").read()[:1000])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: not a readable safetensors"):
        pool.merge({"cut": str(tmp_path / "cut.safetensors")})
    with pytest.raises(CheckpointError, match="zero datasets"):
        pool.merge({})


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_a_checkpoint_changed_after_training_is_refused(pool_files, tmp_path, mode):
    import json
    import shutil

    base_dir, files = pool_files
    ft = tmp_path / mode / "ft"
    ft.mkdir(parents=True)
    shutil.copy(files["a"], ft / "model.safetensors")
    from merge2mix.merge import file_sha256

    (ft / "train.json").write_text(json.dumps({"weights_sha256": file_sha256(ft / "model.safetensors")}))
    engine.clear_cache()
    pool = engine.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
    pool.merge({"a": str(ft / "model.safetensors")})  # matches: fine
    sd = load_weights(files["b"])
    save_weights(sd, ft / "model.safetensors")  # replaced after training
    engine.clear_cache()
    pool = engine.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
    with pytest.raises(CheckpointError, match=r"sha256 differs from the one recorded at training"):
        pool.merge({"a": str(ft / "model.safetensors")})


def test_without_a_training_record_a_checkpoint_is_merged_unverified(pool_files, tmp_path):
    """No train.json beside the file (theta_0 itself, a checkpoint brought from elsewhere), or one
    without a recorded sha256: nothing to check against, so it is merged as it is; a record with a
    sha256 that differs is refused (the test above). The check's result is cached per file identity."""
    import json
    import shutil

    from merge2mix.merge import file_sha256

    _, files = pool_files
    bare = tmp_path / "bare" / "model.safetensors"
    bare.parent.mkdir()
    shutil.copy(files["a"], bare)
    engine.clear_cache()
    engine.verify_checkpoint(str(bare))  # no record: accepted
    (bare.parent / "train.json").write_text(json.dumps({"steps": 3}))
    engine.clear_cache()
    engine.verify_checkpoint(str(bare))  # a record without weights_sha256: accepted
    (bare.parent / "train.json").write_text(json.dumps({"weights_sha256": "0" * 64}))
    engine.verify_checkpoint(str(bare))  # same file identity: the cached verdict stands
    engine.clear_cache()
    with pytest.raises(CheckpointError, match=r"sha256 differs"):
        engine.verify_checkpoint(str(bare))
    (bare.parent / "train.json").write_text(json.dumps({"weights_sha256": file_sha256(bare)}))
    engine.verify_checkpoint(str(bare))
    with pytest.raises(CheckpointError, match=r"missing\.safetensors: file not found"):
        engine.verify_checkpoint(str(tmp_path / "missing.safetensors"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_low_precision_models_merge_like_the_naive_average(pool_files, tmp_path, mode, dtype):
    """A bf16/fp16 model (the paper-language preset: bf16 + stream): members are summed in fp32 in
    sorted-name order, divided, and cast once into the model's dtype, exactly as merge.average."""
    from types import SimpleNamespace

    base_dir, files = pool_files
    low = {}
    for n, p in files.items():
        low[n] = str(tmp_path / f"{n}.safetensors")
        save_weights({k: v.to(dtype) if v.is_floating_point() else v for k, v in load_weights(p).items()}, low[n])
    fam = SimpleNamespace(load_model=lambda d, dev: FAM.load_model(d, dev).to(dtype), is_merged=FAM.is_merged)
    engine.clear_cache()
    pool = engine.Pool(fam, base_dir, "cpu", mode=mode, pool=NAMES)
    assert not pool.direct or mode == "stream"
    for mask in [("a",), ("a", "c"), ("b", "c", "d"), ("a", "b", "c", "d"), ("a", "c")]:
        merged = pool.merge({n: low[n] for n in mask}).state_dict()
        naive = average([load_weights(low[n]) for n in sorted(mask)])
        for k, v in naive.items():
            assert merged[k].dtype == v.dtype and torch.equal(merged[k], v), (mode, mask, k)


OPERATOR_CASES = [("task_arithmetic", {"lam": 0.7}), ("task_arithmetic", {"lam": 1.0, "power": 0.5}),
                  ("ties", {"density": 0.3}), ("ties", {"density": 0.5, "lam": 1.0, "power": 1.0})]


@pytest.mark.parametrize("method, params", OPERATOR_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_every_operator_equals_its_reference_for_every_mask(pool_files, mode, method, params):
    """The engine's operator path (memory views / streamed tensors) is bit-for-bit merge.merge_state;
    switching operators in one warm pool, and back to the average, leaves no state behind."""
    from merge2mix.merge import merge_state

    base_dir, files = pool_files
    base = load_weights(f"{base_dir}/model.safetensors")
    engine.clear_cache()
    pool = engine.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
    for mask in MASKS:
        merged = pool.merge({n: files[n] for n in mask}, method, params).state_dict()
        want = merge_state(method, base, [load_weights(files[n]) for n in sorted(mask)], params)
        for k, v in want.items():
            assert torch.equal(merged[k], v), (mode, method, mask, k)
    back = pool.merge({n: files[n] for n in NAMES}).state_dict()
    assert all(torch.equal(back[k], v) for k, v in average([load_weights(files[n]) for n in NAMES]).items())


def test_an_unknown_operator_is_one_line(pool_files):
    base_dir, files = pool_files
    pool = engine.Pool(FAM, base_dir, "cpu", mode="memory", pool=NAMES)
    with pytest.raises(CheckpointError, match=r"^merge\.method 'mean' is not one of average, task_arithmetic, ties$"):
        pool.merge({"a": files["a"]}, "mean")

"""Every merge path of the engine is bit-for-bit the naive average, for every mask of a 4-model pool."""

import random
import re
from itertools import combinations

import pytest
import torch

from merge2mix import engine, families
from merge2mix import pool as pools
from merge2mix.errors import CheckpointError
from merge2mix.merge import average
from merge2mix.checkpoints import load_weights, save_weights

pytestmark = pytest.mark.usefixtures("isolated_cwd")  # relative-path writes fail, not leak

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


@pytest.mark.parametrize("mode, max_sums, huge", [("memory", None, False), ("memory", 1, False), ("memory", 1, True),
                                                 ("stream", None, False)])
def test_every_mask_equals_the_naive_average(pool_files, mode, max_sums, huge, monkeypatch):
    base_dir, files = pool_files
    if huge:  # the tiny model's buffers on huge-page-advised memory, as a real model's are on Linux
        monkeypatch.setattr(pools, "HUGE_PAGES_FROM", 0)
    pool = pools.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
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


def test_fp32_buffer_is_a_writable_vector_that_outlives_its_maker():
    """Above HUGE_PAGES_FROM on a Linux CPU the buffer is anonymous mmap memory advised for huge pages
    (pool.fp32_buffer); it must behave as torch.empty's: the right length and dtype, writable, and
    alive for as long as the tensor (the mapping is not freed when the function returns)."""
    n = pools.HUGE_PAGES_FROM + 3
    a, b = pools.fp32_buffer(n, "cpu"), pools.fp32_buffer(n, "cpu")
    assert a.shape == (n,) and a.dtype == torch.float32 and a.data_ptr() != b.data_ptr()
    torch.add(torch.arange(n, dtype=torch.float32), 1.0, out=a)
    b.copy_(a).mul_(2)
    assert a[-1].item() == n and b[0].item() == 2.0 and torch.equal(b, 2 * a)
    assert pools.fp32_buffer(8, "cpu").shape == (8,)  # small: torch.empty's


@pytest.mark.parametrize("method", ["average", "task_arithmetic"])
def test_a_pool_holds_one_row_per_name_when_the_file_behind_it_changes(pool_files, method):
    """The singles' scores go through one pool named ("mixture",), one file after another, in the warm
    process: each file's row replaces the last instead of piling up beyond the memory plan (one row
    per name, plus theta_0's for task arithmetic)."""
    base_dir, files = pool_files
    pool = pools.Pool(FAM, base_dir, "cpu", mode="memory", pool=["mixture"])
    for n in NAMES:
        merged = pool.merge({"mixture": files[n]}, method, {"lam": 1.0} if method == "task_arithmetic" else None).state_dict()
        assert len(pool.rows) == (1 if method == "average" else 2), (n, list(pool.rows))
        if method == "average":
            for k, v in load_weights(files[n]).items():
                assert torch.equal(merged[k], v), (n, k)


def test_auto_mode_follows_the_budget(pool_files):
    base_dir, _ = pool_files
    assert pools.Pool(FAM, base_dir, "cpu", mode="auto", pool=NAMES, budget_bytes=10**12).mode == "memory"
    assert pools.Pool(FAM, base_dir, "cpu", mode="auto", pool=NAMES, budget_bytes=10).mode == "stream"


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_bad_members_are_named(pool_files, tmp_path, mode):
    base_dir, files = pool_files
    pool = pools.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
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
    from merge2mix.checkpoints import file_sha256

    (ft / "train.json").write_text(json.dumps({"weights_sha256": file_sha256(ft / "model.safetensors")}))
    engine.clear_cache()
    pool = pools.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
    pool.merge({"a": str(ft / "model.safetensors")})  # matches: fine
    sd = load_weights(files["b"])
    save_weights(sd, ft / "model.safetensors")  # replaced after training
    engine.clear_cache()
    pool = pools.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
    with pytest.raises(CheckpointError, match=r"sha256 differs from the one recorded at training"):
        pool.merge({"a": str(ft / "model.safetensors")})


def test_without_a_training_record_a_checkpoint_is_merged_unverified(pool_files, tmp_path):
    """No train.json beside the file (theta_0 itself, a checkpoint brought from elsewhere), or one
    without a recorded sha256: nothing to check against, so it is merged as it is; a record with a
    sha256 that differs is refused (the test above). The check's result is cached per file identity."""
    import json
    import shutil

    from merge2mix.checkpoints import file_sha256

    _, files = pool_files
    bare = tmp_path / "bare" / "model.safetensors"
    bare.parent.mkdir()
    shutil.copy(files["a"], bare)
    engine.clear_cache()
    pools.verify_checkpoint(str(bare))  # no record: accepted
    (bare.parent / "train.json").write_text(json.dumps({"steps": 3}))
    engine.clear_cache()
    pools.verify_checkpoint(str(bare))  # a record without weights_sha256: accepted
    (bare.parent / "train.json").write_text(json.dumps({"weights_sha256": "0" * 64}))
    pools.verify_checkpoint(str(bare))  # same file identity: the cached verdict stands
    engine.clear_cache()
    with pytest.raises(CheckpointError) as e:
        pools.verify_checkpoint(str(bare))
    assert str(e.value) == (f"checkpoint {bare}: sha256 differs from the one recorded at training in "
                            f"{bare.parent / 'train.json'} (changed or damaged since; delete it to retrain)")
    (bare.parent / "train.json").write_text(json.dumps({"weights_sha256": file_sha256(bare)}))
    pools.verify_checkpoint(str(bare))
    with pytest.raises(CheckpointError, match=r"missing\.safetensors: file not found"):
        pools.verify_checkpoint(str(tmp_path / "missing.safetensors"))


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
    pool = pools.Pool(fam, base_dir, "cpu", mode=mode, pool=NAMES)
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
    pool = pools.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
    for mask in MASKS:
        merged = pool.merge({n: files[n] for n in mask}, method, params).state_dict()
        want = merge_state(method, base, [load_weights(files[n]) for n in sorted(mask)], params)
        for k, v in want.items():
            assert torch.equal(merged[k], v), (mode, method, mask, k)
    back = pool.merge({n: files[n] for n in NAMES}).state_dict()
    assert all(torch.equal(back[k], v) for k, v in average([load_weights(files[n]) for n in NAMES]).items())


def test_an_unknown_operator_is_one_line(pool_files):
    base_dir, files = pool_files
    with pytest.raises(ValueError) as e:
        pools.Pool(FAM, base_dir, "cpu", mode="fast", pool=NAMES)
    assert str(e.value) == "merge mode 'fast' (one of auto, memory, stream)"
    with pytest.raises(CheckpointError) as e:
        pools.Pool(FAM, base_dir, "cpu", mode="memory", pool=NAMES).merge({})
    assert str(e.value) == "merge: a mask over zero datasets has no average"
    pool = pools.Pool(FAM, base_dir, "cpu", mode="memory", pool=NAMES)
    with pytest.raises(CheckpointError, match=r"^merge\.method 'mean' is not one of average, task_arithmetic, ties$"):
        pool.merge({"a": files["a"]}, "mean")


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_members_that_differ_where_they_must_not_are_named(pool_files, tmp_path, mode):
    """Integer buffers are never merged and must equal theta_0's (a model with one: the tiny BERT plus
    a persistent int buffer); a NaN in a member is refused; a missing file is named."""
    from types import SimpleNamespace

    from safetensors.torch import save_file

    base_dir, files = pool_files

    def with_buffer(model):
        model.register_buffer("step_counts", torch.arange(4), persistent=True)
        return model

    fam = SimpleNamespace(load_model=lambda d, dev: with_buffer(FAM.load_model(d, dev)), is_merged=FAM.is_merged)
    member = {n: str(tmp_path / f"{n}.safetensors") for n in ("a", "b")}
    for n, p in member.items():
        save_weights({**load_weights(files[n]), "step_counts": torch.arange(4)}, p)
    engine.clear_cache()
    pool = pools.Pool(fam, base_dir, "cpu", mode=mode, pool=NAMES)
    assert list(pool.unmerged) == ["step_counts"]
    pool.merge(member)  # equal buffers: fine
    moved = {**load_weights(member["a"]), "step_counts": torch.arange(4) + 1}
    save_weights(moved, tmp_path / "moved.safetensors")
    with pytest.raises(CheckpointError) as e:
        pool.merge({"b": member["b"], "moved": str(tmp_path / "moved.safetensors")})
    assert str(e.value) == (f"checkpoint moved ({tmp_path / 'moved.safetensors'}): non-mergeable tensor 'step_counts' "
                            "differs from the base model")
    sd = load_weights(member["a"])
    key = pool.keys[0]
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    save_file(sd, str(tmp_path / "nan.safetensors"))  # raw: load_weights would refuse to write-read it
    with pytest.raises(CheckpointError, match=rf"nan\.safetensors: tensor '{re.escape(key)}' contains NaN or inf"):
        pool.merge({"nan": str(tmp_path / "nan.safetensors")})
    with pytest.raises(CheckpointError) as e:
        pool.merge({"gone": str(tmp_path / "gone.safetensors")})
    assert str(e.value) == f"checkpoint {tmp_path / 'gone.safetensors'}: file not found"


def test_available_memory_reads_memavailable_else_physical_pages(monkeypatch):
    import io
    import os

    meminfo = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   12345678 kB\n"
    monkeypatch.setattr(pools, "open", lambda path, *a, **k: io.StringIO(meminfo) if path == "/proc/meminfo" else None,
                        raising=False)
    assert pools.available_memory() == 12345678 * 1024

    def no_proc(path, *a, **k):
        raise OSError("no /proc here")

    monkeypatch.setattr(pools, "open", no_proc, raising=False)
    pages = {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    assert pools.available_memory() == 1000 * 4096


def test_prefix_sums_are_cached_reused_and_evicted_oldest_first(pool_files):
    """The memory mode's speed contract: a mask caches the running sums of its sorted-name prefixes
    (not its own sum when it ends in the last pool member: nothing extends it), a later mask starts
    from the longest cached prefix, and beyond max_sums the sums least recently stored or completed
    go first, their buffers kept for reuse. Every merge stays the naive average."""
    base_dir, files = pool_files
    engine.clear_cache()
    pool = pools.Pool(FAM, base_dir, "cpu", mode="memory", pool=NAMES, budget_bytes=10**12)
    fid = {n: pools.file_id(files[n]) for n in NAMES}

    def ids(names, kind="theta"):
        return (kind, *(fid[n] for n in names))

    def merge(names):
        merged = pool.merge({n: files[n] for n in names}).state_dict()
        naive = average([load_weights(files[n]) for n in sorted(names)])
        assert all(torch.equal(merged[k], v) for k, v in naive.items()), names

    merge("abc")
    assert list(pool.sums) == [ids("ab"), ids("abc")]
    merge("abd")  # ends in the last member: starts from a+b, stores nothing
    assert list(pool.sums) == [ids("ab"), ids("abc")]
    merge("bc")
    merge("a")  # one member: nothing to sum
    assert list(pool.sums) == [ids("ab"), ids("abc"), ids("bc")] and pool.free == []
    pool.max_sums = 2
    merge("ac")
    assert list(pool.sums) == [ids("bc"), ids("ac")] and len(pool.free) == 2
    kept = {b.data_ptr() for b in pool.free}
    merge("abc")  # recomputed into the two kept buffers
    assert list(pool.sums) == [ids("ab"), ids("abc")] and pool.free != []
    assert {pool.sums[ids("ab")].data_ptr(), pool.sums[ids("abc")].data_ptr()} == kept
    merge("abcd")  # from the cached a+b+c, one add straight into the model
    assert list(pool.sums) == [ids("ab"), ids("abc")]
    # Task arithmetic sums task vectors under keys of their own, the same way.
    from merge2mix.merge import merge_state

    pool.max_sums = 10
    base = load_weights(f"{base_dir}/model.safetensors")
    for names in ("abc", "abd", "ab"):
        merged = pool.merge({n: files[n] for n in names}, "task_arithmetic", {"lam": 1.0, "power": 0.5}).state_dict()
        want = merge_state("task_arithmetic", base, [load_weights(files[n]) for n in names], {"lam": 1.0, "power": 0.5})
        assert all(torch.equal(merged[k], v) for k, v in want.items()), names
    assert list(pool.sums)[-2:] == [ids("abc", "tau"), ids("ab", "tau")] and ids("abd", "tau") not in pool.sums

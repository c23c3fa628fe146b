"""Mixture weights (merge2mix.mixtures): keys, the weighted merge, the weighted sampler, and a weighted
fine-tune that resumes bit-identical."""

import random
from dataclasses import replace

import numpy as np
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from merge2mix import engine, mixtures
from merge2mix import pool as pools
from merge2mix.errors import ConfigError
from merge2mix.merge import merge_state
from merge2mix.checkpoints import load_weights
from test_engine_paths import FAM, NAMES, pool_files  # noqa: F401  (the tiny pool fixture)
from test_train_engine import HP, TASK, world  # noqa: F401  (the tiny fine-tune fixture)

NAME = st.sampled_from(["airline", "apple", "bbc", "ng_comp", "rt_movies"])


def test_keys_are_readable_rounded_on_the_simplex_and_order_free():
    assert mixtures.weights_key({"b": 2, "a": 6}) == "a@0.75+b@0.25"
    assert mixtures.weights_key({"a": 1, "b": 1, "c": 1}) == "a+b+c"  # equal weights: the mask itself
    assert mixtures.weights_key({"a": 0.3, "b": 0.3, "c": 0.4}) == "a@0.30+b@0.30+c@0.40"
    assert mixtures.weights_key({"a": 0.996, "b": 0.004}) == "a"  # b rounds to 0 and drops out
    assert mixtures.normalize({"a": 1, "b": 1, "c": 1}) == {"a": 0.34, "b": 0.33, "c": 0.33}  # largest remainder, ties by name
    assert mixtures.parse_weights_key("a@0.75+b@0.25") == {"a": 0.75, "b": 0.25}
    assert mixtures.parse_weights_key("a+b") == {"a": 0.5, "b": 0.5}
    for bad, msg in [({"a": -1, "b": 2}, "weight of 'a' is -1"), ({"a": 0}, "sum to 0"), ({}, "at least one"),
                     ({"a": float("nan")}, "weight of 'a' is nan")]:
        with pytest.raises(ConfigError, match=msg):
            mixtures.weights_key(bad)
    for bad in ("b@0.25+a@0.75", "a@0.70+b@0.20", "a@0.50+b@0.50", "a@0.7+b@0.3x", "a@@0.5"):
        with pytest.raises(ConfigError, match=r"^mixture: '"):
            mixtures.parse_weights_key(bad)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(NAME, st.floats(0.01, 10), min_size=1, max_size=5), st.randoms())
def test_a_key_names_exactly_the_rounded_vector_whatever_the_order(w, rnd):
    items = list(w.items())
    rnd.shuffle(items)
    key = mixtures.weights_key(dict(items))
    assert key == mixtures.weights_key(w)
    back = mixtures.parse_weights_key(key)
    assert sum(back.values()) == pytest.approx(1.0) and mixtures.weights_key(back) == key
    if "@" in key:
        assert back == mixtures.normalize(w)


def test_scale_makes_equal_weights_the_operators_mask_merge():
    w = {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}
    assert mixtures.scale({"method": "average", "params": {}}, w) == 1.0
    ta = {"method": "task_arithmetic", "params": {"lam": 0.8, "power": 0.5}}
    assert mixtures.scale(ta, w) * 0.25 == pytest.approx(0.8 * 4**-0.5)  # s(w) w_i = lambda(k)
    assert mixtures.effective_size({"a": 0.9, "b": 0.1}) == pytest.approx(1 / 0.82)
    with pytest.raises(ConfigError, match="ties has no weighted form"):
        mixtures.scale({"method": "ties", "params": {}}, w)


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_weighted_merge_equals_its_reference_and_equal_weights_are_the_mask(pool_files, mode):  # noqa: F811
    base_dir, files = pool_files
    base = load_weights(f"{base_dir}/model.safetensors")
    sds = {n: load_weights(files[n]) for n in NAMES}
    engine.clear_cache()
    pool = pools.Pool(FAM, base_dir, "cpu", mode=mode, pool=NAMES)
    for op in ({"method": "average", "params": {}}, {"method": "task_arithmetic", "params": {"lam": 1.0, "power": 0.5}}):
        w = {"a": 0.6, "c": 0.3, "d": 0.1}
        got = pool.merge_weighted({n: files[n] for n in w}, w, op).state_dict()
        want = merge_state("weighted", base, [sds[n] for n in sorted(w)],
                           {"weights": [w[n] for n in sorted(w)], "scale": mixtures.scale(op, w)})
        assert all(torch.equal(got[k], v) for k, v in want.items()), op
        if op["method"] == "average":  # the paper's average with weights is sum_i w_i theta_i
            assert all(torch.allclose(got[k], sum(w[n] * sds[n][k].float() for n in w), atol=1e-6)
                       for k, v in base.items() if v.is_floating_point())
        eq = {"a": 1 / 3, "b": 1 / 3, "d": 1 / 3}
        got = pool.merge_weighted({n: files[n] for n in eq}, eq, op).state_dict()
        mask = merge_state(op["method"], base, [sds[n] for n in sorted(eq)], op["params"])
        assert all(torch.equal(got[k], v) for k, v in mask.items()), op  # bit for bit the mask's merge
        formula = merge_state("weighted", base, [sds[n] for n in sorted(eq)],
                              {"weights": [1 / 3] * 3, "scale": mixtures.scale(op, eq)})
        assert all(torch.allclose(formula[k], v, atol=1e-6) for k, v in mask.items())  # and the formula agrees


def test_an_epoch_draws_each_dataset_in_proportion_without_early_repeats():
    sizes = {"a": 50, "b": 30, "c": 20}
    w = {"a": 0.2, "b": 0.5, "c": 0.3}
    assert mixtures.allocate(w, 101) == {"a": 20, "b": 51, "c": 30} and sum(mixtures.allocate(w, 7).values()) == 7
    order = mixtures.epoch_order(sizes, w, 400, torch.Generator().manual_seed(0))
    src = ["a" if i < 50 else "b" if i < 80 else "c" for i in order.tolist()]
    assert Counter(src) == {"a": 80, "b": 200, "c": 120}  # the empirical ratios are w
    per = Counter(order.tolist())
    # b is drawn 200 times from 30 examples: every example 6 or 7 times (whole passes, then a partial one)
    assert {per[i] for i in range(50, 80)} == {6, 7} and all(per[i] == 6 for i in range(80, 100))  # c: 6 whole passes
    assert {per[i] for i in range(50)} == {1, 2}  # a: one pass, then 30 of a fresh one
    small = mixtures.epoch_order(sizes, w, 60, torch.Generator().manual_seed(1))
    assert len(set(small.tolist())) == 60  # under each dataset's size: no example twice
    assert torch.equal(small, mixtures.epoch_order(sizes, w, 60, torch.Generator().manual_seed(1)))  # seeded
    assert src[:20] != sorted(src[:20]) or src[20:40] != sorted(src[20:40])  # shuffled across datasets
    with pytest.raises(ConfigError, match="'z', which is not among"):
        mixtures.epoch_order(sizes, {"z": 1.0}, 10, torch.Generator())


def test_a_weighted_finetune_follows_its_weights_and_resumes_bit_identical(world, tmp_path, monkeypatch):  # noqa: F811
    from merge2mix.job import Job
    from merge2mix.train import finetune

    paths = {n: world["data"][n]["train"] for n in ("books", "food")}
    job = Job(base_dir=world["base"], task=TASK, hp={**HP, "max_steps": 12}, seed=0, device="cpu")
    base = dict(job=job, train_paths=paths, weights={"books": 0.75, "food": 0.25}, budget=32)
    ref = finetune(out_weights=str(tmp_path / "ref.safetensors"), out_json=str(tmp_path / "ref.json"), **base)
    assert ref["drawn_per_epoch"] == {"books": 24, "food": 8} and ref["examples_per_epoch"] == 32
    plain = finetune(out_weights=str(tmp_path / "p.safetensors"), out_json=str(tmp_path / "p.json"),
                     **{**base, "weights": None, "budget": None})
    assert plain["weights_sha256"] != ref["weights_sha256"] and "drawn_per_epoch" not in plain

    real_clip, calls = torch.nn.utils.clip_grad_norm_, {"n": 0}

    def dying_clip(*a, **k):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real_clip(*a, **k)

    work = tmp_path / "work"
    kw = dict(out_weights=str(tmp_path / "w.safetensors"), out_json=str(tmp_path / "w.json"), work_dir=str(work),
              **{**base, "job": replace(job, checkpoint_every=6)})  # 32 examples / batch 8 = 4 steps an epoch: step 6 is mid-epoch
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", dying_clip)
    with pytest.raises(KeyboardInterrupt):
        finetune(**kw)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    rec = finetune(**kw)
    assert rec["resumed_from_step"] == 6 and rec["weights_sha256"] == ref["weights_sha256"]
    assert rec["train_loss"] == ref["train_loss"]
    with pytest.raises(Exception, match=r"weights on \['books'\], data of \['books', 'food'\]"):
        finetune(out_weights=str(tmp_path / "x.safetensors"), out_json=str(tmp_path / "x.json"),
                 **{**base, "weights": {"books": 1.0}})


def planted_weights(w: dict) -> float:
    """A separable concave score with its optimum inside the simplex: a=0.5, b=0.3, c=0.2, d=0."""
    peak = {"a": 0.5, "b": 0.3, "c": 0.2, "d": 0.0}
    return -sum((w.get(n, 0.0) - p) ** 2 for n, p in peak.items())


def test_weight_search_design_fit_and_optimum():
    from merge2mix import weight_search as ws

    keys = ws.design(["a+b+c", "a+b", "d"], per_mask=5, seed=0)
    assert len(keys) == 10 and len(set(keys)) == 10 and keys == ws.design(["a+b+c", "a+b", "d"], per_mask=5, seed=0)
    assert all(set(mixtures.parse_weights_key(k)) <= {"a", "b", "c"} for k in keys)
    # A planted function in the surrogate's family (piecewise linear on GRID, separable) is recovered.
    g = {"a": [0, 0.4, 0.5, 0.45, 0.3], "b": [0, 0.2, 0.1, 0.0, -0.1], "c": [0, 0.1, 0.15, 0.1, 0.0]}
    f = lambda k: 1.0 + sum(float(np.interp(v, ws.GRID, g[n])) for n, v in mixtures.parse_weights_key(k).items())  # noqa: E731
    many = ws.design(["a+b+c", "a+b", "a+c", "b+c"], per_mask=25, seed=1) + ["a", "b", "c", "a+b", "a+c", "b+c", "a+b+c"]
    model = ws.fit(many, [f(k) for k in many], ["a", "b", "c"], alpha=1e-8)
    assert model["rmse"] < 1e-6 and np.allclose(ws.predict(model, many), [f(k) for k in many], atol=1e-6)
    best = ws.optimum(model)
    grid = [{"a": i / 20, "b": j / 20, "c": (20 - i - j) / 20} for i in range(21) for j in range(21 - i)]
    top = max(f(mixtures.weights_key(x)) for x in grid)
    assert f(mixtures.weights_key(best)) >= top - 1e-6  # the MILP's optimum is the function's
    capped = ws.optimum(model, c={"exclude": ["c"], "max_datasets": 2}, cap=0.6)
    assert "c" not in capped and max(capped.values()) <= 0.6 + 1e-9 and sum(capped.values()) == pytest.approx(1)
    assert ws.optimum(model, cap=0.2) is None  # three datasets of at most 0.2 cannot sum to 1
    sizes = {"a": 500, "b": 300, "c": 300}
    within = ws.optimum(model, c={"budget": {"examples": 700}}, sizes=sizes)  # a with anything breaks it
    assert within is not None and sum(sizes[n] for n in within) <= 700 and "a" not in within


def test_weight_search_finds_the_planted_optimum_at_a_small_budget():
    from merge2mix import weight_search as ws

    score = lambda k: planted_weights(mixtures.parse_weights_key(k))  # noqa: E731
    res = ws.weight_search(["a+b+c", "a+b", "a+c"], score, budget=30, settings={"per_mask": 6, "seed": 0})
    assert len(res["scored"]) <= 30 and res["rounds"][-1]["round"] >= 1
    assert res["best_score"] >= -0.01  # within 0.1 in weight of the peak (0.5, 0.3, 0.2)
    assert res["best_score"] > max(score(m) for m in ["a+b+c", "a+b", "a+c"])  # better than every mask
    c = {"must_include": ["c"], "max_datasets": 2}
    kept = ws.weight_search(["a+c", "b+c"], score, budget=20, settings={"per_mask": 4, "seed": 0}, c=c)
    assert kept["weights"]["c"] >= ws.MIN_WEIGHT and len(kept["weights"]) <= 2
    assert all("c" in mixtures.parse_weights_key(r["proposed"]) for r in kept["rounds"][1:] if r["proposed"])


def test_weight_search_breaks_ties_as_select_and_search_do():
    """Equal scores: fewer datasets first, then the smallest key (it took the largest)."""
    from merge2mix import search, weight_search

    scored = {"a+b": 0.8, "a@0.30+b@0.70": 0.8, "b": 0.8, "c": 0.8, "a@0.20+b@0.80": 0.7}
    assert weight_search._best(scored, None, None) == "b"
    assert weight_search._best({k: v for k, v in scored.items() if "+" in k}, None, None) == "a+b"  # "+" < "@"
    assert weight_search._best({"a@0.40+b@0.60": 0.8, "a@0.30+b@0.70": 0.8}, None, None) == "a@0.30+b@0.70"
    assert search._best({"b": 0.8, "a": 0.8, "a+b": 0.8}) == "a"  # the same rule in the subset search

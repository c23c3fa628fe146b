"""merge2mix.search: the surrogate's features and fit, the ILP's top-M against brute force, the search
loop and its baselines, on planted score functions."""

from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from merge2mix import constraints, search
from merge2mix.masks import mask_key

CANDS = ["a", "b", "c", "d", "e"]
ALL = [list(m) for k in range(1, 6) for m in combinations(CANDS, k)]


def planted(seed=0, n=len(CANDS)):
    """A random function in the surrogate's own family: per-dataset, pairwise and size effects."""
    rng = np.random.default_rng(seed)
    cands = CANDS[:n]
    lin = dict(zip(cands, rng.normal(0, 1, n)))
    pair = {p: rng.normal(0, 0.5) for p in combinations(cands, 2)}
    size = dict(zip(range(1, n + 1), rng.normal(0, 1, n)))

    def f(key):
        m = key.split("+")
        return sum(lin[c] for c in m) + sum(v for (i, j), v in pair.items() if i in m and j in m) + size[len(m)]
    return f


def test_features_by_hand():
    X, names = search.features([["a"], ["b", "d"], CANDS], CANDS)
    assert len(names) == 5 + 10 + 5 and names[5] == "a*b" and names[-1] == "size=5"
    row = dict(zip(names, X[1]))
    assert {k for k, v in row.items() if v} == {"b", "d", "b*d", "size=2"}
    assert X[2].sum() == 5 + 10 + 1 and X[0].sum() == 2


def test_ridge_recovers_a_planted_function():
    f = planted(1)
    model = search.fit(ALL, [f(mask_key(m)) for m in ALL], CANDS, alpha=1e-8)
    np.testing.assert_allclose(search.predict(model, ALL), [f(mask_key(m)) for m in ALL], atol=1e-5)
    assert model["rmse"] < 1e-5 and model["n"] == 31


@st.composite
def cases(draw):
    seed = draw(st.integers(0, 10_000))
    seen = draw(st.lists(st.sampled_from([mask_key(m) for m in ALL]), max_size=12, unique=True))
    c = {}
    if draw(st.booleans()):
        c["max_datasets"] = draw(st.integers(1, 5))
    if draw(st.booleans()):
        c["exclude"] = draw(st.lists(st.sampled_from(CANDS), max_size=2, unique=True))
    if draw(st.booleans()):
        c["at_most_one_of"] = [draw(st.lists(st.sampled_from(CANDS), min_size=2, max_size=3, unique=True))]
    return seed, seen, c, draw(st.integers(1, 6))


@settings(max_examples=60, deadline=None)
@given(cases())
def test_top_m_with_no_good_cuts_equals_brute_force(case):
    """The ILP's top M unscored allowed masks under a fitted model are brute force's top M (compared by
    predicted value: equal values may come in either order)."""
    seed, seen, c, m = case
    rng = np.random.default_rng(seed)
    model = {"intercept": 0.3, "candidates": CANDS, "alpha": 0.0, "rmse": 0.0, "n": 0,
             "weights": dict(zip(search.features([CANDS], CANDS)[1], rng.normal(0, 1, 20)))}
    props = search.propose(model, [k.split("+") for k in seen], m, c)
    pool = [x for x in ALL if mask_key(x) not in seen and constraints.allows(x, c)]
    values = sorted(search.predict(model, pool), reverse=True)[:m] if pool else []
    assert len(props) == len(values) == min(m, len(pool))
    assert len(set(props)) == len(props) and not set(props) & set(seen)
    assert all(constraints.allows(p.split("+"), c) for p in props)
    if props:
        np.testing.assert_allclose(search.predict(model, [p.split("+") for p in props]), values, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_search_finds_the_planted_best_and_beats_random_at_the_same_budget(seed):
    f = planted(seed)
    truth = max(ALL, key=lambda m: f(mask_key(m)))
    res = search.surrogate_search(CANDS, f, budget=24, settings={"per_round": 3, "patience": 3})
    assert res["best"] == mask_key(truth) and res["best_score"] == f(mask_key(truth))
    assert len(res["scored"]) <= 24 and res["rounds"][0]["proposed"][:5] == CANDS  # singles, then the pairs
    assert all(res["scored"][k] == f(k) for k in res["scored"])
    rnd = search.random_search(CANDS, f, budget=len(res["scored"]), seed=seed)
    assert len(rnd["scored"]) == len(res["scored"]) and rnd["best_score"] <= res["best_score"]


def test_greedy_adds_the_best_dataset_until_none_helps():
    weights = {"a": 0.5, "b": 0.3, "c": -0.2, "d": 0.1, "e": -1.0}
    f = lambda key: sum(weights[c] for c in key.split("+"))  # noqa: E731  additive: greedy is exact here
    res = search.greedy_search(CANDS, f, budget=31)
    assert res["best"] == "a+b+d" and res["path"] == ["a", "b", "d"]
    assert len(res["scored"]) == 5 + 4 + 3 + 2  # each step tries every remaining dataset
    capped = search.greedy_search(CANDS, f, budget=31, c={"exclude": ["a"], "max_datasets": 1})
    assert capped["best"] == "b"
    at_least = search.greedy_search(CANDS, f, budget=31, c={"min_datasets": 4})
    assert at_least["path"] == ["a", "b", "d"] and at_least["best"] == "a+b+c+d"  # the best scored mask of 4 or more
    assert search.greedy_search(CANDS, f, budget=31, c={"min_datasets": 5})["best"] is None  # the path never got there


def test_searches_respect_constraints():
    f = planted(3)
    c = {"must_include": ["c"], "max_datasets": 3}
    res = search.surrogate_search(CANDS, f, budget=10, settings={"per_round": 2}, c=c)
    assert all(constraints.allows(k.split("+"), c) for k in res["scored"])
    brute = max((m for m in ALL if constraints.allows(m, c)), key=lambda m: f(mask_key(m)))
    assert res["best_score"] <= f(mask_key(brute))
    rnd = search.random_search(CANDS, f, budget=5, seed=1, c=c)
    assert all(constraints.allows(k.split("+"), c) for k in rnd["scored"])


def test_round_zero_design_keeps_every_single_and_samples_pairs():
    full = search.design(CANDS, None, 0)
    assert full == [*CANDS, *(mask_key(p) for p in combinations(CANDS, 2))]
    small = search.design(CANDS, 8, seed=1)
    assert small[:5] == CANDS and len(set(small)) == 8 and all(len(k.split("+")) == 2 for k in small[5:])
    assert small == search.design(CANDS, 8, seed=1) and {*search.design(CANDS, 8, seed=2)} != {*small}  # seeded
    assert sorted(search.design(CANDS, 3, seed=0)) == sorted(set(search.design(CANDS, 3, seed=0)) & set(CANDS))  # singles only
    c = {"exclude": ["a"]}
    assert all("a" not in k.split("+") for k in search.design(CANDS, 6, seed=0, c=c)) and "b" in search.design(CANDS, 6, 0, c)


def test_patience_none_spends_the_budget_and_a_proposer_replaces_the_ilp():
    """On a flat score the incumbent never improves: patience 2 stops after two rounds, patience None
    scores the whole budget; a `proposer` is asked for each round's masks in place of `propose`."""
    cands = list("abcde")
    flat = lambda key: 0.5  # noqa: E731
    stopped = search.surrogate_search(cands, flat, 25, {"per_round": 2, "patience": 2})
    assert len(stopped["scored"]) == 15 + 2 * 2  # round 0 (5 singles + 10 pairs), then two stale rounds
    spent = search.surrogate_search(cands, flat, 25, {"per_round": 2, "patience": None})
    assert len(spent["scored"]) == 25
    asked = []

    def proposer(model, seen, m):
        asked.append((len(seen), m))
        return [k for k in (mask_key(x) for r in (3, 4, 5) for x in combinations(cands, r)) if k not in {mask_key(s) for s in seen}][:m]

    res = search.surrogate_search(cands, flat, 20, {"per_round": 3, "patience": None}, proposer=proposer)
    assert asked == [(15, 3), (18, 2)] and len(res["scored"]) == 20
    assert set(res["scored"]) - {mask_key(x) for r in (1, 2) for x in combinations(cands, r)} == {"a+b+c", "a+b+d", "a+b+e", "a+c+d", "a+c+e"}


def test_random_masks_are_distinct_allowed_untaken_and_seeded():
    import random

    taken = {"a", "b", "a+b"}
    c = {"exclude": ["e"], "max_datasets": 3}
    got = search.random_masks(CANDS, 10, random.Random(4), taken, c)
    assert len(got) == len(set(got)) == 10 and not set(got) & taken
    assert all(constraints.allows(k.split("+"), c) for k in got)
    assert got == search.random_masks(CANDS, 10, random.Random(4), taken, c)
    allowed = [k for k in map(mask_key, ALL) if constraints.allows(k.split("+"), c) and k not in taken]
    assert sorted(search.random_masks(CANDS, 100, random.Random(0), taken, c)) == sorted(allowed)  # fewer when they run out


def test_explore_draws_its_share_of_each_round_at_random_among_allowed_unscored_masks():
    """explore 0.5 with 4 masks a round: 2 are the fit's top unscored masks (propose), 2 seeded random
    allowed unscored ones; explore 0 is the plain search; the workflow's round_step does the same from
    its files, seeded by the run's seed and the round, and with patience None it spends max_masks."""
    import random

    f = planted(3)
    c = {"exclude": ["e"]}
    plain = search.surrogate_search(CANDS, f, 15, {"per_round": 4, "patience": None}, c=c)
    assert plain == search.surrogate_search(CANDS, f, 15, {"per_round": 4, "patience": None, "explore": 0.0}, c=c)
    res = search.surrogate_search(CANDS, f, 15, {"per_round": 4, "patience": None, "explore": 0.5, "seed": 7}, c=c)
    assert res == search.surrogate_search(CANDS, f, 15, {"per_round": 4, "patience": None, "explore": 0.5, "seed": 7}, c=c)
    assert [len(r["proposed"]) for r in res["rounds"]] == [10, 4, 1]  # the last round's one mask: int(0.5 * 1) = 0 explore
    rng = random.Random("explore:7")
    scored = {k: f(k) for k in res["rounds"][0]["proposed"]}
    for rnd in res["rounds"][1:]:
        model = search.fit([k.split("+") for k in scored], list(scored.values()), CANDS)
        top = search.propose(model, [k.split("+") for k in scored], 2, c)
        assert rnd["proposed"] == top + search.random_masks(CANDS, len(rnd["proposed"]) - len(top), rng, set(scored) | set(top), c)
        scored |= {k: f(k) for k in rnd["proposed"]}
    assert len(res["scored"]) == 15 and all("e" not in k.split("+") for k in res["scored"])  # every allowed mask


def test_round_step_spends_the_budget_without_patience_and_explores_seeded_by_round(tmp_path):
    """The workflow's round: patience None keeps proposing on a flat score (patience 1 stops); explore
    0.5 of 4 proposals is 2 from the fit and 2 random masks seeded by (seed, round)."""
    import json
    import random

    paths = []
    (tmp_path / "merge_eval").mkdir()
    for k in search.design(CANDS, None, 0):
        p = tmp_path / "merge_eval" / f"{k}.json"
        p.write_text(json.dumps({"mask": k, "accuracy": 0.5}))
        paths.append(str(p))
    base = {"per_round": 4, "alpha": 0.01, "max_masks": 31, "seed": 3}
    prev = tmp_path / "round_0.json"
    prev.write_text(json.dumps({"round": 0, "best_score": 0.5, "stale": 0}))
    kw = {"result_paths": paths, "previous": str(prev), "candidates": CANDS, "metric": "accuracy", "c": None, "constraints_path": None}
    assert search.round_step(**kw, settings={**base, "patience": 1, "explore": 0.0}, out_json=str(tmp_path / "a.json"))["done"]
    out = search.round_step(**kw, settings={**base, "patience": None, "explore": 0.5}, out_json=str(tmp_path / "b.json"))
    assert out["round"] == 1 and out["stale"] == 1 and not out["done"] and len(out["proposed"]) == 4
    scored = {k: 0.5 for k in search.design(CANDS, None, 0)}
    model = search.fit([k.split("+") for k in scored], list(scored.values()), CANDS)
    top = search.propose(model, [k.split("+") for k in scored], 2)
    assert out["proposed"] == top + search.random_masks(CANDS, 2, random.Random("explore:3:1"), set(scored) | set(top))


def test_round_zero_is_never_empty_when_the_constraints_rule_out_singles_and_pairs(tmp_path):
    """min_datasets: 3 validates, but allows no single or pair: round 0 is then the smallest allowed
    masks (triples first), seeded, each allowed; the workflow's first round runs on them (it crashed
    with 'min() arg is an empty sequence')."""
    import json

    c = {"min_datasets": 3}
    d = search.design(CANDS, None, 0, c)
    assert len(d) == 2 * len(CANDS) and len(set(d)) == len(d)
    assert all(constraints.allows(k.split("+"), c) for k in d)
    triples = [k for k in d if len(k.split("+")) == 3]
    assert len(triples) == 10 and d[:10] == triples  # all C(5, 3) triples before anything larger
    assert search.design(CANDS, 4, 0, c) == search.design(CANDS, 4, 0, c) and len(search.design(CANDS, 4, 0, c)) == 4
    must = {"must_include": ["a", "b", "c"]}
    assert search.design(CANDS, None, 0, must)[0] == "a+b+c"
    (tmp_path / "m").mkdir()
    paths = []
    for i, k in enumerate(d):
        paths.append(tmp_path / "m" / f"{k}.json")
        paths[-1].write_text(json.dumps({"mask": k, "accuracy": 0.5 + 0.01 * (i % 3)}))
    out = search.round_step(result_paths=list(map(str, paths)), previous=None, candidates=CANDS, metric="accuracy",
                            settings={"per_round": 4, "alpha": 0.01, "max_masks": 20, "seed": 0, "patience": 2, "explore": 0.0},
                            c=c, constraints_path=None, out_json=str(tmp_path / "r0.json"))
    assert out["best"] in d and len(out["proposed"]) == 4
    assert all(constraints.allows(k.split("+"), c) and k not in d for k in out["proposed"])


def test_the_incumbent_is_the_best_mask_the_constraints_allow(tmp_path):
    """A mask over the budget may be scored (the workflow plans round 0 before the sizes are known)
    but is never the incumbent: round_step reads the budget's sizes from constraints.json."""
    import json

    c = {"budget": {"examples": 250}}
    sizes = {"a": 100, "b": 100, "c": 200, "d": 50, "e": 50}
    (tmp_path / "constraints.json").write_text(json.dumps({"constraints": c, "sizes": sizes}))
    scores = {"a+c": 0.95, "c": 0.9, "a+b": 0.8, "d": 0.7, "a": 0.6}  # a+c is 300 examples: over
    paths = []
    for k, v in scores.items():
        paths.append(str(tmp_path / f"{k}.json"))
        (tmp_path / f"{k}.json").write_text(json.dumps({"mask": k, "accuracy": v}))
    out = search.round_step(result_paths=paths, previous=None, candidates=CANDS, metric="accuracy",
                            settings={"per_round": 2, "alpha": 0.01, "max_masks": 31, "seed": 0, "patience": 2, "explore": 0.0},
                            c=c, constraints_path=str(tmp_path / "constraints.json"), out_json=str(tmp_path / "r.json"))
    assert out["best"] == "c" and out["best_score"] == 0.9
    assert all(sum(sizes[n] for n in k.split("+")) <= 250 for k in out["proposed"])
    # the bench loop: round 0 within the budget when the sizes are known, the best within it
    f = {**{mask_key(m): 0.1 * len(m) for m in ALL}}
    r = search.surrogate_search(CANDS, f.get, budget=12, c=c, sizes=sizes)
    assert all(sum(sizes[n] for n in k.split("+")) <= 250 for k in r["rounds"][0]["proposed"])
    assert sum(sizes[n] for n in r["best"].split("+")) <= 250

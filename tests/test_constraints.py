"""select.constraints: what a chosen mixture may be, checked with PuLP/CBC against brute force."""

import json
from itertools import combinations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from merge2mix import config as config_mod
from merge2mix import constraints
from merge2mix.errors import ConfigError, Merge2MixError
from merge2mix.select import select

pytestmark = pytest.mark.usefixtures("isolated_cwd")

CANDS = ["a", "b", "c", "d", "e"]
SIZES = {"a": 100, "b": 250, "c": 40, "d": 400, "e": 90}


def every_mask(cands):
    return [list(m) for k in range(1, len(cands) + 1) for m in combinations(cands, k)]


@st.composite
def constraint_sets(draw):
    c = {}
    if draw(st.booleans()):
        c["max_datasets"] = draw(st.integers(1, 5))
    if draw(st.booleans()):
        c["min_datasets"] = draw(st.integers(1, 5))
    if draw(st.booleans()):
        c["must_include"] = draw(st.lists(st.sampled_from(CANDS), max_size=2, unique=True))
    if draw(st.booleans()):
        c["exclude"] = draw(st.lists(st.sampled_from(CANDS), max_size=3, unique=True))
    if draw(st.booleans()):
        c["at_most_one_of"] = draw(st.lists(st.lists(st.sampled_from(CANDS), min_size=2, max_size=3, unique=True), max_size=2))
    if draw(st.booleans()):
        c["budget"] = {"examples": draw(st.integers(30, 900))}
    return c


@settings(max_examples=150, deadline=None)
@given(constraint_sets())
def test_the_ilp_agrees_with_brute_force(c):
    """CBC finds a mask exactly when one of the 31 satisfies the constraints (budget included), and
    the mask it finds does."""
    brute = [m for m in every_mask(CANDS) if constraints.allows(m, c, SIZES)]
    found = constraints.feasible_mask(CANDS, c, SIZES)
    assert (found is None) == (not brute)
    if found is not None:
        assert constraints.allows(found, c, SIZES) and found in brute


def test_allows_each_constraint_by_hand():
    allows = constraints.allows
    assert allows(["a", "b"], None) and allows(["a", "b"], {})
    assert not allows(["a", "b", "c"], {"max_datasets": 2}) and allows(["a", "b"], {"max_datasets": 2})
    assert not allows(["a"], {"min_datasets": 2}) and allows(["a", "b"], {"min_datasets": 2})
    assert not allows(["b"], {"must_include": ["a"]}) and allows(["a", "b"], {"must_include": ["a"]})
    assert not allows(["a", "b"], {"exclude": ["b"]}) and allows(["a"], {"exclude": ["b"]})
    assert not allows(["a", "b"], {"at_most_one_of": [["b", "a", "c"]]}) and allows(["a", "d"], {"at_most_one_of": [["a", "b"]]})
    budget = {"budget": {"examples": 140}}
    assert allows(["a", "c"], budget, SIZES) and not allows(["a", "e"], budget, SIZES)  # 140 <= 140 < 190
    assert allows(["a", "e"], budget)  # no sizes yet: the budget is checked on data


@pytest.mark.parametrize("c, message", [
    ({"exclude": ["z"]}, r"^config: select\.constraints\.exclude: 'z' is not a candidate \(a, b, c, d, e\)$"),
    ({"at_most_one_of": [["a", "q"]]}, r"^config: select\.constraints\.at_most_one_of\[0\]: 'q' is not a candidate"),
    ({"must_include": ["a", "b"], "exclude": ["b"]}, r"^config: select\.constraints: b both in must_include and in exclude$"),
    ({"min_datasets": 3, "max_datasets": 2}, r"^config: select\.constraints: min_datasets 3 > max_datasets 2$"),
    ({"must_include": ["a", "b", "c"], "max_datasets": 2}, r"must_include names 3 datasets, max_datasets is 2$"),
    ({"must_include": ["a", "b"], "at_most_one_of": [["c", "d"], ["a", "e", "b"]]},
     r"^config: select\.constraints\.at_most_one_of\[1\]: must_include needs a and b, the group allows one$"),
    ({"min_datasets": 3, "exclude": ["a", "b", "c"]}, r"^config: select\.constraints: no mixture of the candidates satisfies them"),
    ({"min_datasets": 2, "at_most_one_of": [["a", "b", "c", "d", "e"]]}, r"no mixture of the candidates satisfies them"),
])
def test_contradictions_are_one_line_config_errors(c, message):
    raw = {"run": "r", "target": "t", "model": {"name_or_path": "x/y"}, "task": {"labels": ["negative", "positive"]},
           "datasets": {n: {"package": {"loader": "rotten_tomatoes"}} for n in ["t", *CANDS]}, "select": {"constraints": c}}
    with pytest.raises(ConfigError, match=message):
        config_mod.validate(raw)


def test_membership_constraints_leave_unscorable_masks_out_of_the_plan():
    raw = {"run": "r", "target": "t", "model": {"name_or_path": "x/y"}, "task": {"labels": ["negative", "positive"]},
           "datasets": {n: {"package": {"loader": "rotten_tomatoes"}} for n in ["t", *CANDS]},
           "select": {"constraints": {"must_include": ["a"], "max_datasets": 3, "budget": {"examples": 10}}}}
    plan = config_mod.Plan(config_mod.validate(raw))
    expected = [m for m in every_mask(CANDS) if "a" in m and len(m) <= 3]
    assert sorted(plan.masks) == sorted("+".join(m) for m in expected) and len(plan.masks) == 11
    assert plan.budget == {"examples": 10}
    raw["select"] = {}
    assert len(config_mod.Plan(config_mod.validate(raw)).masks) == 31 and config_mod.Plan(config_mod.validate(raw)).constraints is None


def _metas(tmp_path):
    paths = []
    for n, rows in SIZES.items():
        p = tmp_path / f"{n}.json"
        p.write_text(json.dumps({"name": n, "rows": {"train": rows, "val": 1, "test": 1}}))
        paths.append(str(p))
    return paths


def test_budget_checked_on_the_data_before_training(tmp_path):
    c = {"must_include": ["b"], "budget": {"examples": 300}}
    out = constraints.check_data(c, CANDS, _metas(tmp_path), str(tmp_path / "c.json"))
    assert out["train_examples"] == out["sizes"] == SIZES and out["unit"] == "examples"
    assert constraints.allows(out["a_feasible_mask"], c, SIZES)
    assert json.loads((tmp_path / "c.json").read_text()) == out
    with pytest.raises(Merge2MixError, match=r"^config: select\.constraints\.budget\.examples: 200 admits no allowed "
                                             r"mixture \(the smallest, b, has 250 train examples\)$"):
        constraints.check_data({"must_include": ["b"], "budget": {"examples": 200}}, CANDS, _metas(tmp_path), str(tmp_path / "x.json"))
    with pytest.raises(Merge2MixError, match=r"39 admits no allowed mixture \(the smallest, c, has 40 train examples\)"):
        constraints.check_data({"budget": {"examples": 39}}, CANDS, _metas(tmp_path), str(tmp_path / "x.json"))
    assert not (tmp_path / "x.json").exists()


@settings(max_examples=40, deadline=None)
@given(constraint_sets(), st.randoms(use_true_random=False))
def test_constrained_pick_is_the_best_allowed_mask_of_the_full_ranking(tmp_path_factory, c, rnd):
    """select with constraints.json picks the first allowed mask of the unconstrained ranking."""
    if constraints.feasible_mask(CANDS, c, SIZES) is None:
        return
    tmp = tmp_path_factory.mktemp("sel")
    paths = []
    for m in every_mask(CANDS):
        key = "+".join(m)
        r = {"mask": key, "datasets": m, "size": len(m), "accuracy": round(rnd.random(), 2), "macro_f1": 0.5,
             "balanced_accuracy": 0.5, "loss": 1.0, "n": 10}
        (tmp / f"{key}.json").write_text(json.dumps(r))
        paths.append(tmp / f"{key}.json")
    (tmp / "constraints.json").write_text(json.dumps({"constraints": c, "sizes": SIZES}))
    full = select(paths, CANDS, tmp / "all.csv", tmp / "all.json")
    best = select(paths, CANDS, tmp / "m.csv", tmp / "b.json", constraints_path=str(tmp / "constraints.json"))
    ranking = pd.read_csv(tmp / "all.csv")["mask"].tolist()
    assert best["mask"] == next(m for m in ranking if constraints.allows(m.split("+"), c, SIZES))
    assert best["constraints"] == c and "constraints" not in full
    table = pd.read_csv(tmp / "m.csv")
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert all(constraints.allows(m.split("+"), c, SIZES) for m in table["mask"])


def test_tokens_budget_counts_what_training_sees(tiny_model, tmp_path):
    """token_counts: the tokenizer's ids per text, truncated at max_length, summed (by hand here); a
    tokens budget is checked on those counts, and its error names the unit."""
    from transformers import AutoTokenizer

    texts = {"a": ["good phone", "a very long review " * 20], "b": ["bad"], "c": ["fine", "ok", "meh"]}
    paths = {}
    for n, t in texts.items():
        paths[n] = str(tmp_path / f"{n}.parquet")
        pd.DataFrame({"text": t, "label": ["x"] * len(t)}).to_parquet(paths[n])
    counts = constraints.token_counts(str(tiny_model), paths, max_length=16)
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    assert counts == {n: sum(min(16, len(tok(x)["input_ids"])) for x in t) for n, t in texts.items()}
    assert counts["a"] == len(tok("good phone")["input_ids"]) + 16  # the long one is cut at 16
    metas = []
    for n in texts:
        (tmp_path / f"{n}.json").write_text(json.dumps({"name": n, "rows": {"train": len(texts[n])}}))
        metas.append(str(tmp_path / f"{n}.json"))
    c = {"budget": {"tokens": counts["b"] + counts["c"]}}
    out = constraints.check_data(c, list(texts), metas, str(tmp_path / "ok.json"), tokens=counts)
    assert out["unit"] == "tokens" and out["sizes"] == counts and out["train_examples"] == {"a": 2, "b": 1, "c": 3}
    assert constraints.allows(["b", "c"], c, counts) and not constraints.allows(["a", "b"], c, counts)
    with pytest.raises(Merge2MixError, match=rf"budget\.tokens: {counts['b'] - 1} admits no allowed mixture \(the smallest, b, "
                                             rf"has {counts['b']} train tokens\)$"):
        constraints.check_data({"budget": {"tokens": counts["b"] - 1}}, list(texts), metas, str(tmp_path / "x.json"), tokens=counts)


def test_a_tokens_budget_needs_a_text_family_and_one_unit():
    raw = {"run": "r", "target": "t", "model": {"name_or_path": "x/y"}, "task": {"type": "image_classification", "labels": ["0", "1"]},
           "datasets": {n: {"package": {"loader": "mnist_5k", "domain": "plain"}} for n in ("t", "a", "b")},
           "select": {"constraints": {"budget": {"tokens": 100}}}}
    with pytest.raises(ConfigError, match=r"^config: select\.constraints\.budget\.tokens: counts tokens of text; task\.type "
                                          r"image_classification takes budget\.examples$"):
        config_mod.validate(raw)
    raw["select"]["constraints"]["budget"] = {"tokens": 100, "examples": 5}
    with pytest.raises(ConfigError, match=r"^config: select\.constraints\.budget: .*(too many|more than 1) propert"):
        config_mod.validate(raw)

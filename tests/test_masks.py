import pytest
from hypothesis import given
from hypothesis import strategies as st

from merge2mix.errors import ConfigError
from merge2mix.masks import bitstring, bundles, enumerate_masks, mask_key, parse_key

pytestmark = pytest.mark.usefixtures("isolated_cwd")  # relative-path writes fail, not leak

names = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=6, unique=True)


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_enumerates_every_nonempty_subset_once(n):
    cands = [f"d{i}" for i in range(n)]
    masks = enumerate_masks(cands)
    assert len(masks) == 2**n - 1
    assert len({frozenset(m) for m in masks}) == 2**n - 1
    assert all(m for m in masks)


def test_key_is_sorted_names():
    assert mask_key(["selfdriving", "airline"]) == "airline+selfdriving"
    assert parse_key("airline+selfdriving") == ["airline", "selfdriving"]


@given(names, st.randoms())
def test_key_round_trips_and_ignores_order(ns, rnd):
    shuffled = list(ns)
    rnd.shuffle(shuffled)
    assert mask_key(shuffled) == mask_key(ns)
    assert parse_key(mask_key(ns)) == sorted(ns)


@given(names)
def test_adding_a_candidate_keeps_existing_keys(ns):
    before = {mask_key(m) for m in enumerate_masks(ns)}
    after = {mask_key(m) for m in enumerate_masks([*ns, "zz_new"])}
    assert before <= after
    assert len(after) == 2 * len(before) + 1


def test_bitstring_follows_config_order():
    assert bitstring("a+c", ["c", "b", "a"]) == "101"
    assert bitstring("b", ["c", "b", "a"]) == "010"


@pytest.mark.parametrize("bad, message", [
    ([], "mask: a mask must contain at least one dataset"),
    (["b", "a+b"], "mask: invalid dataset name 'a+b' (no '+' or '/')"),
    (["a/b"], "mask: invalid dataset name 'a/b' (no '+' or '/')"),
    (["a", ""], "mask: invalid dataset name '' (no '+' or '/')"),
])
def test_bad_keys(bad, message):
    with pytest.raises(ConfigError) as e:
        mask_key(bad)
    assert str(e.value) == message


def test_non_canonical_key_and_unknown_member():
    for bad in ("b+a", "a+a"):
        with pytest.raises(ConfigError) as e:
            parse_key(bad)
        assert str(e.value) == f"mask: '{bad}' is not a canonical mask key (sorted, unique names joined by '+')"
    with pytest.raises(ConfigError, match=r"^mask: invalid dataset name '' \(no '\+' or '/'\)$"):
        parse_key("a++b")
    with pytest.raises(ConfigError) as e:
        bitstring("a+y+z", ["a", "b"])
    assert str(e.value) == "mask: 'a+y+z' names datasets that are not candidates: y, z"
    with pytest.raises(ConfigError) as e:
        enumerate_masks(["a", "b", "a"])
    assert str(e.value) == "mask: duplicate candidate names"


def test_enumeration_order_is_by_size_then_config_order():
    assert enumerate_masks(["c", "a", "b"]) == [("c",), ("a",), ("b",), ("c", "a"), ("c", "b"), ("a", "b"), ("c", "a", "b")]
    assert enumerate_masks(iter(["x", "y"])) == [("x",), ("y",), ("x", "y")]  # any iterable


def test_bundles_cut_the_binary_order_and_appending_a_candidate_only_adds_bundles():
    cands = ["a", "b", "c", "d"]
    keys = [mask_key(m) for m in enumerate_masks(cands)]
    got = bundles(keys, cands, 4)
    assert got["b0"] == ["a", "b", "a+b"] and sorted(got["b3"]) == ["a+b+c+d", "a+c+d", "b+c+d", "c+d"]  # 12-15
    assert sorted(got) == ["b0", "b1", "b2", "b3"] and sorted(k for v in got.values() for k in v) == sorted(keys)
    for size in (1, 2, 4, 8, 16):
        more = bundles([mask_key(m) for m in enumerate_masks(cands + ["e", "f"])], cands + ["e", "f"], size)
        before = bundles(keys, cands, size)
        assert {b: sorted(v) for b, v in more.items() if b in before} == {b: sorted(v) for b, v in before.items()}
        assert all("e" in k or "f" in k for b, v in more.items() if b not in before for k in v)
    assert bundles(["b+c"], ["c", "b"], 32) == {"b0": ["b+c"]}  # by config order, not by name

import pytest
from hypothesis import given
from hypothesis import strategies as st

from merge2mix.errors import ConfigError
from merge2mix.masks import bitstring, enumerate_masks, mask_key, parse_key

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


@pytest.mark.parametrize("bad, match", [
    ([], "at least one dataset"),
    (["a+b"], "invalid dataset name"),
    (["a/b"], "invalid dataset name"),
])
def test_bad_keys(bad, match):
    with pytest.raises(ConfigError, match=match):
        mask_key(bad)


def test_non_canonical_key_and_unknown_member():
    with pytest.raises(ConfigError, match="not a canonical"):
        parse_key("b+a")
    with pytest.raises(ConfigError, match="not candidates"):
        bitstring("a+z", ["a", "b"])
    with pytest.raises(ConfigError, match="duplicate"):
        enumerate_masks(["a", "a"])

"""Subset masks: enumeration and the stable key that names a mask's result file.

A mask is identified by the *sorted set* of dataset names it contains, joined with '+'
(e.g. 'airline+selfdriving'). Reordering the config or adding a dataset leaves every existing
key, and so every cached result, unchanged. The bitstring (in config order) is only for display.
"""

from __future__ import annotations

from itertools import combinations

from .errors import ConfigError

SEP = "+"


def mask_key(names) -> str:
    names = sorted(set(names))
    if not names:
        raise ConfigError("mask: a mask must contain at least one dataset")
    for n in names:
        if not n or SEP in n or "/" in n:
            raise ConfigError(f"mask: invalid dataset name '{n}' (no '{SEP}' or '/')")
    return SEP.join(names)


def parse_key(key: str) -> list[str]:
    names = key.split(SEP)
    if mask_key(names) != key:
        raise ConfigError(f"mask: '{key}' is not a canonical mask key (sorted, unique names joined by '{SEP}')")
    return names


def enumerate_masks(candidates) -> list[tuple[str, ...]]:
    """Every non-empty subset of `candidates` (2^N - 1), by size, then in config order."""
    candidates = list(candidates)
    if len(set(candidates)) != len(candidates):
        raise ConfigError("mask: duplicate candidate names")
    return [c for k in range(1, len(candidates) + 1) for c in combinations(candidates, k)]


def bitstring(key: str, candidates) -> str:
    """'1' where candidates[i] is in the mask; candidates in config order."""
    members = set(parse_key(key))
    unknown = members - set(candidates)
    if unknown:
        raise ConfigError(f"mask: '{key}' names datasets that are not candidates: {', '.join(sorted(unknown))}")
    return "".join("1" if c in members else "0" for c in candidates)


def bundles(keys, candidates, size: int) -> dict[str, list[str]]:
    """Masks grouped `size` to a cluster job (rule merge_bundle): a mask read as a binary number over
    the candidates in config order (candidate i is bit i) goes to bundle b<number // size>. Appending a
    candidate adds masks from 2^N upwards only, so with a power-of-two size the existing bundles keep
    exactly their masks and are not run again."""
    index = {c: i for i, c in enumerate(candidates)}
    out: dict[str, list[str]] = {}
    for key in keys:
        number = sum(1 << index[n] for n in parse_key(key))
        out.setdefault(f"b{number // size}", []).append(key)
    return out

"""Mixture weights (issue "Mixture weights, not only subsets"): a weight vector w on the simplex over
the candidates, its stable key, the merge scale s(w), and the seeded sampler a weighted fine-tune
draws its epochs from. Light: torch is imported only by the sampler.

A mask is the special case of equal weights on its members, and it keeps its mask key: equal
weights name the same result file as the mask, so a mask scored once is never scored again and the
"weighted" merge of equal weights is the mask's merge, bit for bit.

Key: members in sorted-name order, each with its weight in `DECIMALS` decimals, e.g.
`airline@0.60+rt_movies@0.40`. Weights are rounded on the simplex first (largest remainder, so the
rounded weights still sum to 1) and a weight that rounds to 0 drops its dataset; the key therefore
names exactly the vector that is scored and trained, and reordering the candidates changes nothing.
"""

from __future__ import annotations

import math
import re

from .errors import ConfigError
from .masks import SEP, mask_key, parse_key

AT = "@"
DECIMALS = 2
_KEY = re.compile(rf"^[^{re.escape(SEP)}{AT}/]+{AT}(0|1)\.\d+$")


def normalize(weights: dict[str, float], decimals: int = DECIMALS) -> dict[str, float]:
    """w / sum(w), rounded to `decimals` on the simplex (largest remainder: the rounded weights sum to
    exactly 10^decimals units), zeros dropped, names sorted. One-line errors for bad vectors."""
    if not weights:
        raise ConfigError("mixture: a weight vector needs at least one dataset")
    bad = [n for n, v in weights.items() if not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v)]
    if bad:
        raise ConfigError(f"mixture: weight of '{bad[0]}' is {weights[bad[0]]!r} (weights are finite numbers >= 0)")
    total = float(sum(weights.values()))
    if total <= 0:
        raise ConfigError("mixture: the weights sum to 0")
    unit = 10**decimals
    raw = {n: unit * v / total for n, v in sorted(weights.items())}
    units = {n: math.floor(r) for n, r in raw.items()}
    left = unit - sum(units.values())
    for n in sorted(raw, key=lambda n: (-(raw[n] - units[n]), n))[:left]:  # largest remainders, ties by name
        units[n] += 1
    out = {n: u / unit for n, u in units.items() if u > 0}
    mask_key(out)  # names valid for a key
    return out


def is_mask(weights: dict[str, float]) -> bool:
    """Equal non-zero weights (before rounding: thirds are a mask, 0.34/0.33/0.33 is not)."""
    vals = [v for v in weights.values() if v > 0]
    return bool(vals) and max(vals) - min(vals) <= 1e-9 * max(vals)


def weights_key(weights: dict[str, float], decimals: int = DECIMALS) -> str:
    """The stable key of a weight vector; equal weights give the mask key."""
    w = normalize(weights, decimals)
    if is_mask(weights) or is_mask(w):  # equal before or after rounding (a weight that rounds to 0 drops out)
        return mask_key(w)
    return SEP.join(f"{n}{AT}{v:.{decimals}f}" for n, v in w.items())


def parse_weights_key(key: str) -> dict[str, float]:
    """The weight vector a key names (a mask key: equal weights). Refuses keys not in canonical form."""
    if AT not in key:
        names = parse_key(key)
        return {n: 1 / len(names) for n in names}
    parts = key.split(SEP)
    if not all(_KEY.match(p) for p in parts):
        raise ConfigError(f"mixture: '{key}' is not a weights key (name{AT}weight joined by '{SEP}')")
    w = {p.split(AT)[0]: float(p.split(AT)[1]) for p in parts}
    decimals = len(parts[0].split(".")[-1])
    if weights_key(w, decimals) != key:
        raise ConfigError(f"mixture: '{key}' is not canonical (sorted names, weights on the simplex in {decimals} decimals)")
    return w


def effective_size(w: dict[str, float]) -> float:
    """1 / sum(w_i^2): k for equal weights on k datasets, less when the weight is concentrated."""
    return 1.0 / sum(v * v for v in w.values())


def scale(operator: dict, w: dict[str, float]) -> float:
    """s(w) in theta_0 + s(w) * sum_i w_i tau_i, chosen so that equal weights reproduce the operator's
    mask merge: the average gives s = 1 (sum w_i theta_i); task arithmetic lambda(k) * sum tau_i gives
    s = lam * k^(1 - power), with k the effective size. TIES has no weighted form here."""
    method, p = operator["method"], operator.get("params", {})
    if method == "average":
        return 1.0
    if method == "task_arithmetic":
        return p.get("lam", 1.0) * effective_size(w) ** (1.0 - p.get("power", 0.0))
    raise ConfigError(f"mixture weights: merge.method {method} has no weighted form (average or task_arithmetic)")


def allocate(weights: dict[str, float], budget: int) -> dict[str, int]:
    """Examples per dataset for one epoch of `budget` examples: round(w_i * budget) by largest
    remainder, so the counts sum to the budget exactly."""
    raw = {n: v * budget for n, v in sorted(weights.items())}
    out = {n: math.floor(r) for n, r in raw.items()}
    for n in sorted(raw, key=lambda n: (-(raw[n] - out[n]), n))[: budget - sum(out.values())]:
        out[n] += 1
    return out


def epoch_order(sizes: dict[str, int], weights: dict[str, float], budget: int, gen):
    """One epoch's example indices into the union (datasets concatenated in sorted-name order, as
    train.mixture_frame builds it): allocate(w, budget) examples from each dataset - without
    replacement up to its size, and beyond it whole reshuffled passes again (upsampling repeats an
    example only after every example of its dataset was drawn) - then shuffled together. Seeded by
    `gen` (a torch.Generator), whose state the fine-tune saves for resume."""
    import torch

    offsets, start = {}, 0
    for n in sorted(sizes):
        offsets[n], start = start, start + sizes[n]
    parts = []
    for n, count in allocate(weights, budget).items():
        if n not in sizes:
            raise ConfigError(f"mixture: weight on '{n}', which is not among the datasets trained on")
        draws = [torch.randperm(sizes[n], generator=gen) for _ in range(math.ceil(count / sizes[n]))] if count else []
        if draws:
            parts.append(offsets[n] + torch.cat(draws)[:count])
    order = torch.cat(parts)
    return order[torch.randperm(len(order), generator=gen)]

"""The merging math: the average, the merge operators over task vectors tau_i = theta_i - theta_0, and
`merge_state`, the plain reference every engine path is tested against. Reading and writing weights
is merge2mix.checkpoints. Knows nothing of Snakemake.

merge(theta_1..theta_k) = mean_i theta_i = theta_0 + mean_i (theta_i - theta_0): the Merge to Mix
surrogate for a model fine-tuned on the union of those datasets. Accumulation is in fp32.
"""

from __future__ import annotations

import math

import torch

from .errors import CheckpointError


def average(state_dicts: list[dict], merged=lambda name, t: t.is_floating_point()) -> dict:
    """Element-wise mean of state dicts (fp32 accumulation, cast back). Tensors that are not merged
    (integer buffers) must be identical and are taken from the first."""
    if not state_dicts:
        raise CheckpointError("merge: a mask over zero datasets has no average")
    first = state_dicts[0]
    out = {}
    for k, t in first.items():
        if merged(k, t):
            acc = t.to(torch.float32, copy=True)  # first + second + ... in this order, in fp32
            for sd in state_dicts[1:]:
                acc += sd[k].to(torch.float32)
            out[k] = (acc / len(state_dicts)).to(t.dtype)
        else:
            for sd in state_dicts[1:]:
                if not torch.equal(sd[k], t):
                    raise CheckpointError(f"merge: non-mergeable tensor '{k}' differs between checkpoints")
            out[k] = t.clone()
    return out


# -- Merge operators ------------------------------------------------------------------------------
# Each takes theta_0's tensor and the members' tensors (fp32, same shape, members in sorted-name
# order) and returns the merged tensor. The engine calls them tensor by tensor in both of its modes;
# `merge_state` applies one to whole state dicts (the plain reference the engine is tested against).
OPERATORS: dict = {}


def operator(name: str):
    def register(fn):
        OPERATORS[name] = fn
        return fn

    return register


def size_scale(k: int, lam: float = 1.0, power: float = 0.0) -> float:
    """lambda(k) = lam * k^-power: power 0 is plain task arithmetic (the sum of task vectors times
    lam), power 1 with lam 1 is the average, power 0.5 lies between."""
    return lam * k ** -power


@operator("average")
def op_average(base: torch.Tensor, members: list[torch.Tensor], **_) -> torch.Tensor:
    """The paper's merge: the mean of the members (theta_0 + the mean task vector)."""
    acc = members[0].clone()
    for t in members[1:]:
        acc += t
    return acc / len(members)


@operator("task_arithmetic")
def op_task_arithmetic(base, members, lam: float = 1.0, power: float = 0.0, **_) -> torch.Tensor:
    """theta_0 + lambda(k) * sum_i (theta_i - theta_0) (Ilharco et al., 2023)."""
    acc = members[0] - base
    for t in members[1:]:
        acc += t - base
    return base + size_scale(len(members), lam, power) * acc


@operator("ties")
def op_ties(base, members, density: float = 0.2, lam: float = 1.0, power: float = 0.0, **_) -> torch.Tensor:
    """TIES-Merging (Yadav et al., 2023), per tensor: keep each task vector's `density` fraction of
    largest-magnitude entries, elect each entry's sign by the summed trimmed mass, average the
    entries that agree with it (disjoint mean; none agreeing gives 0), scale by lambda(k)."""
    taus = torch.stack([t - base for t in members]).reshape(len(members), -1)
    keep = max(1, math.ceil(density * taus.shape[1]))
    kept = torch.zeros_like(taus, dtype=torch.bool).scatter_(1, taus.abs().topk(keep, dim=1).indices, True)
    trimmed = taus * kept
    sign = torch.sign(trimmed.sum(0))
    agree = (torch.sign(trimmed) == sign) & kept & (sign != 0)
    merged = (trimmed * agree).sum(0) / agree.sum(0).clamp(min=1)
    return base + size_scale(len(members), lam, power) * merged.view_as(base)


def op_weighted(base, members, weights: list[float], scale: float = 1.0, **_) -> torch.Tensor:
    """theta_0 + scale * sum_i w_i (theta_i - theta_0), members and weights in sorted-name order (a
    mixture's weight vector: merge2mix.mixtures, which also gives the scale). Not a config operator."""
    acc = weights[0] * (members[0] - base)
    for w, t in zip(weights[1:], members[1:]):
        acc += w * (t - base)
    return base + scale * acc


def merge_state(method: str, base: dict, state_dicts: list[dict], params: dict | None = None,
                merged=lambda name, t: t.is_floating_point()) -> dict:
    """One operator over whole state dicts: merged tensors in fp32, cast back to theta_0's dtype;
    the others (integer buffers) must equal theta_0's. The reference for the engine's two modes."""
    if not state_dicts:
        raise CheckpointError("merge: a mask over zero datasets has no average")
    op, out = (op_weighted if method == "weighted" else OPERATORS[method]), {}
    for k, t in base.items():
        if merged(k, t):
            out[k] = op(t.float(), [sd[k].float() for sd in state_dicts], **(params or {})).to(t.dtype)
        else:
            for sd in state_dicts:
                if not torch.equal(sd[k], t):
                    raise CheckpointError(f"merge: non-mergeable tensor '{k}' differs between checkpoints")
            out[k] = t.clone()
    return out

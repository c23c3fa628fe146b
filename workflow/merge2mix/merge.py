"""The merging math (the average, the merge operators over task vectors tau_i = theta_i - theta_0, and
`merge_state`, the plain reference every engine path is tested against) and safetensors weight IO.
Knows nothing of Snakemake.

merge(theta_1..theta_k) = mean_i theta_i = theta_0 + mean_i (theta_i - theta_0): the Merge to Mix
surrogate for a model fine-tuned on the union of those datasets. Accumulation is in fp32.
"""

from __future__ import annotations

import hashlib
import json
import math

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError
from .io import atomic_replace


def save_weights(state: dict, path, metadata: dict | None = None) -> str:
    """Write a state dict as safetensors, atomically; returns the file's sha256."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    # One metadata key: safetensors writes a multi-key header in hash order, which would make the
    # file bytes (and the recorded sha256) differ between identical runs.
    meta = {"merge2mix": json.dumps(metadata, sort_keys=True)} if metadata else None
    atomic_replace(lambda tmp: save_file(tensors, tmp, metadata=meta), path)
    return file_sha256(path)


def load_weights(path, device="cpu") -> dict:
    """Read a safetensors checkpoint (never pickle); reject truncated files and non-finite values."""
    try:
        sd = load_file(str(path), device=str(device))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: file not found") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({e})") from None
    for k, v in sd.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"checkpoint {path}: tensor '{k}' contains NaN or inf")
    return sd


def file_sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while b := fh.read(chunk):
            h.update(b)
    return h.hexdigest()


def check_compatible(reference: dict, other: dict, name: str) -> None:
    """Same tensor names and shapes (values: tensors or shape tuples), or a one-line CheckpointError naming `name`."""
    if reference.keys() != other.keys():
        missing = sorted(reference.keys() - other.keys())
        extra = sorted(other.keys() - reference.keys())
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise CheckpointError(f"checkpoint {name}: architecture does not match the base model ({what})")
    for k, v in reference.items():
        want, got = tuple(getattr(v, "shape", v)), tuple(getattr(other[k], "shape", other[k]))
        if got != want:
            raise CheckpointError(f"checkpoint {name}: tensor '{k}' has shape {got}, base has {want}")


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

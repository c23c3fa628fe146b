"""Checkpoint IO: safetensors only (never pickle), atomic writes, sha256 of files, and the check that a
checkpoint has the base model's tensor names and shapes. No merging math (merge2mix.merge)."""

from __future__ import annotations

import json

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError
from .io import atomic_replace, file_sha256  # noqa: F401  (file_sha256: its callers import it from here)


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

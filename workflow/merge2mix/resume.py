"""Training state for resumable fine-tunes, without pickle: tensors in safetensors, the rest in JSON.

A state is a folder `step-<n>/` in the job's work folder (undeclared, so Snakemake keeps it when a
job fails or is killed), written under a temporary name and renamed into place, then pointed to by
`latest` (replaced atomically): a killed save never leaves a state that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file, save_file

from .io import atomic_write_text, read_json


@dataclass
class Trainer:
    """The objects a fine-tune's state lives in: the model, its optimiser and schedule, and the
    generator that shuffles the data."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator


@dataclass
class Position:
    """Where the loop stands: steps done, the epoch's example order and the batches of it used, the
    losses so far."""

    step: int = 0
    order: torch.Tensor | None = None
    pos: int = 0
    losses: list = field(default_factory=list)


def save(work_dir: str, trainer: Trainer, at: Position, fingerprint: dict) -> None:
    """Write the state to `work_dir` as the step-<at.step> folder (see the module docstring)."""
    step = at.step
    os.makedirs(work_dir, exist_ok=True)
    tmp = os.path.join(work_dir, f".step-{step}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file({k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()}, os.path.join(tmp, "model.safetensors"))
    osd = trainer.opt.state_dict()
    tensors = {f"{i}.{k}": v.cpu().contiguous() for i, st in osd["state"].items() for k, v in st.items()}
    tensors["rng.gen"] = trainer.gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda{i}"] = s
    tensors["data.order"] = at.order.cpu()
    save_file(tensors, os.path.join(tmp, "state.safetensors"))
    meta = {"step": step, "pos": at.pos, "losses": at.losses, "param_groups": osd["param_groups"],
            "scheduler": trainer.sched.state_dict() | {"lr_lambdas": None}, "fingerprint": fingerprint}
    with open(os.path.join(tmp, "state.json"), "w") as fh:
        json.dump(meta, fh)
    final = os.path.join(work_dir, f"step-{step}")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(f"step-{step}\n", os.path.join(work_dir, "latest"))
    for d in os.listdir(work_dir):  # keep only the newest state
        if d.startswith("step-") and d != f"step-{step}":
            shutil.rmtree(os.path.join(work_dir, d), ignore_errors=True)


def load(work_dir: str, fingerprint: dict, device) -> dict | None:
    """The latest state, if there is one made by the same job (same data, base, hyper-parameters)."""
    try:
        with open(os.path.join(work_dir, "latest")) as fh:
            d = os.path.join(work_dir, fh.read().strip())
        meta = read_json(os.path.join(d, "state.json"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if meta["fingerprint"] != fingerprint:
        return None
    meta["model"] = load_file(os.path.join(d, "model.safetensors"), device=str(device))
    meta["tensors"] = load_file(os.path.join(d, "state.safetensors"))
    return meta


def restore(state: dict, trainer: Trainer, device) -> Position:
    """Put a loaded state (`load`) back into `trainer`; return where its loop stood."""
    model, opt, sched, gen = trainer.model, trainer.opt, trainer.sched, trainer.gen
    model.load_state_dict(state["model"])
    t = state["tensors"]
    opt_state: dict = {}
    for key, v in t.items():
        if key[0].isdigit():
            i, name = key.split(".", 1)
            opt_state.setdefault(int(i), {})[name] = v.to(device) if name != "step" else v
    opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    sched_state = {k: v for k, v in state["scheduler"].items() if k != "lr_lambdas"}
    sched.load_state_dict(sched_state | {"lr_lambdas": [None] * len(opt.param_groups)})
    gen.set_state(t["rng.gen"])
    torch.set_rng_state(t["rng.torch"])
    for key, v in t.items():
        if key.startswith("rng.cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state(v, int(key[len("rng.cuda"):]))
    return Position(state["step"], t["data.order"], state["pos"], state["losses"])


def clear(work_dir: str) -> None:
    """A finished fine-tune's training state, and its work/ folders once empty (work/finetune/, work/)."""
    from .io import remove_empty_parents

    shutil.rmtree(work_dir, ignore_errors=True)
    remove_empty_parents(work_dir, 2)

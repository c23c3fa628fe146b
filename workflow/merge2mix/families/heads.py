"""Per-dataset frozen heads (clip's zero-shot heads, text label-description heads): one
(classes x dim) matrix of normalised embeddings per dataset, saved once by the `zero_shot_head` rule.

Each example is scored against its own dataset's head: a mixture batch mixes heads, a target split
has one. Logits are scale * cos(features, class embedding).
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..io import atomic_replace, read_json


def save_head(head: torch.Tensor, classes: list[str], templates: list[str], out_path: str) -> torch.Tensor:
    head = head.float().cpu().contiguous()
    meta = {"merge2mix": json.dumps({"classes": classes, "templates": templates})}
    atomic_replace(lambda tmp: save_file({"head": head}, tmp, metadata=meta), out_path)
    return head


def zero_shot_head(base_dir: str, task: dict, templates: list[str], meta_path: str, out_path: str, device: str) -> torch.Tensor:
    """The zero_shot_head job: one dataset's frozen head, theta_0's embeddings of its class names (read
    from its meta.json) over `templates`, saved to `out_path`."""
    from .. import families, runtime

    dev = runtime.setup(1, device)
    classes = read_json(meta_path)["labels"]
    h = families.get(task["type"]).build_head(base_dir, classes, templates, out_path, dev)
    runtime.log.info("head: %d classes x %d dims from %d template(s)", h.shape[0], h.shape[1], len(templates))
    return h


def load_head(path: str) -> tuple[torch.Tensor, list[str]]:
    with safe_open(path, framework="pt") as f:
        classes = json.loads(f.metadata()["merge2mix"])["classes"]
    return load_file(path)["head"], classes


def class_embedding(rows: torch.Tensor) -> torch.Tensor:
    """One class from its template embeddings (templates x dim): normalise, average, normalise."""
    return F.normalize(F.normalize(rows.float(), dim=-1).mean(0), dim=-1)


def scored(features: torch.Tensor, batch: dict, scale) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits) of normalised `features` against each example's own head (batch["heads"][source]).
    Logits are padded with -inf to the largest head in the batch."""
    if "heads" not in batch:
        raise CheckpointError("a loss with per-dataset heads needs each dataset's head (heads/<name>.safetensors)")
    feats = F.normalize(features, dim=-1)
    src, labels, heads = batch["source"], batch["labels"], batch["heads"]
    width = max(heads[int(s)].shape[0] for s in src.unique())
    logits = feats.new_full((len(labels), width), float("-inf"))
    loss = feats.new_zeros((), dtype=torch.float32)
    for s in src.unique().tolist():
        rows = (src == s).nonzero(as_tuple=True)[0]
        h = heads[s].to(feats.device, feats.dtype)
        part = scale * feats[rows] @ h.T
        logits[rows, : h.shape[0]] = part.to(logits.dtype)
        loss = loss + F.cross_entropy(part.float(), labels[rows], reduction="sum")
    return loss / len(labels), logits

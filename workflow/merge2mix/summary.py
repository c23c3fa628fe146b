"""Final evaluation on the target's test split: base model, best merged model, deployed model."""

from __future__ import annotations

import json

from . import engine
from .io import atomic_write_json, atomic_write_text


def summarize(*, base_dir: str, best_json: str, checkpoints: dict[str, str], deploy_weights: str,
              deploy_json: str, test_path: str, task: dict, target: str, batch_size: int, device: str,
              threads: int, out_json: str, out_md: str, heads: dict[str, str] | None = None) -> dict:
    """`heads`: {target: its zero-shot head file}, for families with per-dataset heads (clip)."""
    with open(best_json) as fh:
        best = json.load(fh)
    with open(deploy_json) as fh:
        deploy = json.load(fh)
    common = dict(base_dir=base_dir, split_path=test_path, task=task, batch_size=batch_size, device=device, threads=threads,
                  heads=heads)
    models = {
        "base": engine.score(checkpoints={"base": f"{base_dir}/model.safetensors"}, **common),
        "merged_best": engine.score(checkpoints={n: checkpoints[n] for n in best["datasets"]}, **common),
        "deployed": engine.score(checkpoints={"deployed": deploy_weights}, **common),
    }
    for m in models.values():
        m.pop("merge_s"), m.pop("eval_s")
    summary = {
        "target": target,
        "selected_mixture": best["datasets"],
        "selected_bitstring": best["bitstring"],
        "candidates": best["candidates"],
        "selection_val_accuracy": best["val_accuracy"],
        "masks_scored": best["masks_scored"],
        "deploy_train_examples": deploy["examples"],
        "test": models,
        "notes": {
            "base": ("theta_0 zero-shot: the pretrained model scored with the target's zero-shot head" if heads else
                     "theta_0: the pretrained encoder with the seeded, untrained head (a chance-level reference)"),
            "merged_best": "average of the selected datasets' fine-tunes (the surrogate that won on target val)",
            "deployed": "theta_0 fine-tuned on the union of the selected datasets, same hyper-parameters",
        },
    }
    atomic_write_json(summary, out_json)
    atomic_write_text(markdown(summary), out_md)
    return summary


def markdown(s: dict) -> str:
    lines = [
        f"# merge2mix summary: target `{s['target']}`",
        "",
        f"Selected mixture: **{' + '.join(s['selected_mixture'])}** (mask `{s['selected_bitstring']}` over "
        f"{', '.join(s['candidates'])}), best of {s['masks_scored']} merged models on target val "
        f"(accuracy {s['selection_val_accuracy']:.4f}).",
        "",
        "| model | test accuracy | test macro-F1 | test loss | n |",
        "|---|---|---|---|---|",
    ]
    for name, m in s["test"].items():
        lines.append(f"| {name} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['loss']:.4f} | {m['n']} |")
    lines += ["", *(f"- **{k}**: {v}" for k, v in s["notes"].items()), ""]
    return "\n".join(lines)

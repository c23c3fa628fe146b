"""Final evaluation on the target's test split: base model, best merged model, deployed model."""

from __future__ import annotations

import json

from . import engine
from .io import atomic_write_json, atomic_write_text


def summarize(*, base_dir: str, best_json: str, checkpoints: dict[str, str], deploy_weights: str,
              deploy_json: str, test_path: str, task: dict, target: str, batch_size: int, device: str,
              threads: int, out_json: str, out_md: str, heads: dict[str, str] | None = None,
              operator: dict | None = None) -> dict:
    """`heads`: {target: its zero-shot head file}, for families with per-dataset heads (clip).
    `operator`: the merge the selection used (merged_best is that merge; default the average)."""
    with open(best_json) as fh:
        best = json.load(fh)
    with open(deploy_json) as fh:
        deploy = json.load(fh)
    common = dict(base_dir=base_dir, split_path=test_path, task=task, batch_size=batch_size, device=device, threads=threads,
                  heads=heads)
    models = {
        "base": engine.score(checkpoints={"base": f"{base_dir}/model.safetensors"}, **common),
        "merged_best": engine.score(checkpoints={n: checkpoints[n] for n in best["datasets"]}, operator=operator, **common),
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
            "merged_best": f"the {(operator or {}).get('method', 'average')} merge of the selected datasets' fine-tunes "
                           "(the surrogate that won on target val)",
            "deployed": "theta_0 fine-tuned on the union of the selected datasets, same hyper-parameters",
        },
    }
    atomic_write_json(summary, out_json)
    atomic_write_text(markdown(summary), out_md)
    return summary


def mixture_summary(*, last_round: str, design_path: str, summary_json: str, deploy_weights: str, deploy_json: str,
                    base_dir: str, test_path: str, task: dict, batch_size: int, device: str, threads: int,
                    out_json: str, out_png: str, heads: dict[str, str] | None = None) -> dict:
    """mixture.json: the weight search's pick and history, and the weighted deployment's target test
    metrics beside the subset deployment's (summary.json), plus the score-against-weight plot."""
    from .io import read_json
    from .plots import score_vs_weight

    rnd, design, summary, deploy = (read_json(p) for p in (last_round, design_path, summary_json, deploy_json))
    weighted = engine.score(checkpoints={"deployed_weighted": deploy_weights}, base_dir=base_dir, split_path=test_path,
                            task=task, batch_size=batch_size, device=device, threads=threads, heads=heads)
    weighted.pop("merge_s"), weighted.pop("eval_s")
    scores = rnd["scores"]  # every vector's val score, as the last round read them
    out = {"key": rnd["best"], "weights": rnd["weights"], "metric": rnd["metric"], "val_score": rnd["best_score"],
           "best_mask": design["top_masks"][0], "best_mask_val_score": scores[design["top_masks"][0]],
           "vectors_scored": len(scores), "rounds": rnd["round"] + 1, "fit": rnd["fit"], "scores": scores,
           "deploy": {k: deploy.get(k) for k in ("examples_per_epoch", "drawn_per_epoch", "steps")},
           "test": {"weighted_deployed": weighted, "subset_deployed": summary["test"]["deployed"]}}
    atomic_write_json(out, out_json)
    score_vs_weight(scores, rnd["best"], rnd["metric"], out_png)
    return out


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

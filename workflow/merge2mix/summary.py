"""Final evaluation on the target's test split: base model, best merged model, deployed model; and the
texts that report it. Light to import (the CLI reads the texts): the engine, and with it torch, is
imported by the functions that score."""

from __future__ import annotations

from .io import atomic_write_json, atomic_write_text, pack_correct, read_json
from .job import Job


def summarize(job: Job, target: str, best_json: str, checkpoints: dict[str, str], deployed: dict[str, str],
              test_path: str, out_json: str, val_path: str | None = None) -> dict:
    """Score theta_0, the selection's merge (with the operator it was scored with, best_mask.json) and
    the deployed model (`deployed`: {"weights": its file, "record": its train record}) on the target's
    test split, and the deployed model on its val split too (`val_path`: the pick's fine-tuned val score,
    one of rule trust's pairs); job.heads: the target's zero-shot head, for families with per-dataset heads."""
    from . import engine, task_types

    best, deploy = read_json(best_json), read_json(deployed["record"])
    operator = best.get("operator")
    metric = best.get("metric", "accuracy")  # absent from best_mask.json of runs before select.metric
    per_example = not task_types.get(job.task["type"]).generative  # methods.csv's paired intervals
    models = {
        "base": engine.score(job, {"base": f"{job.base_dir}/model.safetensors"}, test_path, per_example=per_example),
        "merged_best": engine.score(job, {n: checkpoints[n] for n in best["datasets"]}, test_path, operator=operator,
                                    per_example=per_example),
        "deployed": engine.score(job, {"deployed": deployed["weights"]}, test_path, per_example=per_example),
    }
    deployed_val = None
    if val_path:
        v = engine.score(job, {"deployed": deployed["weights"]}, val_path)
        deployed_val = {k: v[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "loss", "n") if k in v}
    for m in models.values():
        m.pop("merge_s"), m.pop("eval_s")
        if per_example:
            m["correct"] = pack_correct(m["correct"])
    summary = {
        "target": target,
        "selected_mixture": best["datasets"],
        "selected_bitstring": best["bitstring"],
        "candidates": best["candidates"],
        "selection_val_accuracy": best["val_accuracy"],
        "selection_metric": metric,
        "selection_val_score": best[f"val_{metric}"],
        "masks_scored": best["masks_scored"],
        "deploy_train_examples": deploy["examples"],
        "test": models,
        **({"deployed_val": deployed_val} if deployed_val else {}),
        "notes": {
            "base": ("theta_0 zero-shot: the pretrained model scored with the target's zero-shot head" if job.heads else
                     "theta_0: the pretrained encoder with the seeded, untrained head (a chance-level reference)"),
            "merged_best": f"the {(operator or {}).get('method', 'average')} merge of the selected datasets' fine-tunes "
                           "(the surrogate that won on target val)",
            "deployed": "theta_0 fine-tuned on the union of the selected datasets, same hyper-parameters",
        },
    }
    atomic_write_json(summary, out_json)
    return summary


def mixture_summary(job: Job, last_round: str, design_path: str, summary_json: str, deployed: dict[str, str],
                    test_path: str, out_json: str, out_png: str) -> dict:
    """mixture.json: the weight search's pick and history, and the weighted deployment's target test
    metrics (`deployed`: {"weights", "record"}) beside the subset deployment's (summary.json), plus the
    score-against-weight plot."""
    from . import engine
    from .plots import score_vs_weight

    rnd, design, summary, deploy = (read_json(p) for p in (last_round, design_path, summary_json, deployed["record"]))
    weighted = engine.score(job, {"deployed_weighted": deployed["weights"]}, test_path)
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


def chosen_by(s: dict) -> str:
    """How the selection was made, named by the score that ranked the masks: "val loss 0.6136; val
    accuracy 0.8281" (summaries written before select.metric ranked by accuracy and say so)."""
    metric = s.get("selection_metric", "accuracy")
    if metric == "accuracy":
        return f"val accuracy {s['selection_val_accuracy']:.4f}"
    return f"val {metric.replace('_', ' ')} {s['selection_val_score']:.4f}; val accuracy {s['selection_val_accuracy']:.4f}"


def _given(v) -> bool:  # None or NaN (a CSV cell a method leaves empty): not given
    return v is not None and v == v


def versus(row: dict) -> str:
    """A methods.csv row's m2m_diff as "+0.060 [0.003, 0.117]" (empty where not recorded: no
    per-example results, or Merge to Mix's own row)."""
    d, lo, hi = (row.get(k) for k in ("m2m_diff", "m2m_diff_lo", "m2m_diff_hi"))
    return f"{d:+.3f} [{lo:.3f}, {hi:.3f}]" if _given(d) else ""


def markdown(s: dict, trust: dict | None = None, surrogate: str | None = None) -> str:
    """summary.md (rule report_text): the answer, the target test table, the trust line (trust.json) and
    which surrogate ranked the masks (config's surrogate note: the recommended one or not)."""
    from .trust import line

    lines = [
        f"# merge2mix summary: target `{s['target']}`",
        "",
        f"Selected mixture: **{' + '.join(s['selected_mixture'])}** (mask `{s['selected_bitstring']}` over "
        f"{', '.join(s['candidates'])}), best of {s['masks_scored']} merged models by target "
        f"{chosen_by(s)}.",
        "",
        *([f"Trust: {line(trust)}.", ""] if trust else []),
        *([f"Surrogate: {surrogate}.", ""] if surrogate else []),
        "| model | test accuracy | test macro-F1 | test loss | n |",
        "|---|---|---|---|---|",
    ]
    for name, m in s["test"].items():
        lines.append(f"| {name} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['loss']:.4f} | {m['n']} |")
    lines += ["", *(f"- **{k}**: {v}" for k, v in s["notes"].items()), ""]
    return "\n".join(lines)


def report_rst(s: dict, methods: list[dict] | None = None, trust: dict | None = None) -> str:
    """The report's opening (Snakemake's global description, reStructuredText): the answer first -
    the selected mixture, how far to trust it (trust.json) and its target test metrics - then every
    method's row of methods.csv."""
    def table(header, rows):
        out = [".. list-table::", "   :header-rows: 1", ""]
        for row in [header, *rows]:
            out += [f"   * - {row[0]}", *(f"     - {c}" for c in row[1:])]
        return out + [""]

    def num(v):
        return f"{v:.4f}" if _given(v) else ""

    lines = [f"merge2mix: target *{s['target']}*", "=" * 60, "",
             f"**Selected mixture: {' + '.join(s['selected_mixture'])}** - the best of {s['masks_scored']} merged "
             f"models by the target's {chosen_by(s)}; the deployed model is "
             f"θ₀ fine-tuned on it ({s['deploy_train_examples']} examples).", ""]
    if trust:
        from .trust import line

        text = line(trust)
        lines += [f".. warning:: Trust: {text}" if trust["verdict"] == "weak" else f"**Trust:** {text}", ""]
    lines += ["Target test split:", ""]
    lines += table(["model", "accuracy", "macro-F1", "loss", "n"],
                   [[name, num(m["accuracy"]), num(m["macro_f1"]), num(m["loss"]), m["n"]] for name, m in s["test"].items()])
    if methods:
        lines += ["Every method on the target test split (methods.csv; a method's mixture is fine-tuned, then scored):", ""]
        lines += table(["method", "mixture", "accuracy", "Merge to Mix minus this (95 % interval)", "macro-F1",
                        "fine-tunes", "merges"],
                       [[r["method"], r["mixture"] if _given(r.get("mixture")) else "", num(r.get("accuracy")),
                         versus(r), num(r.get("macro_f1")), r.get("finetunes", ""), r.get("merges", "")] for r in methods])
        lines += ["The interval is a paired bootstrap over the test examples: both models scored on the same "
                  "examples, so one that holds 0 means the two are within noise.", ""]
    lines += ["The figures below (Evidence) show how the methods compare and how merged scores track fine-tuned "
              "ones; the workflow's graph and run statistics follow them.", ""]
    return "\n".join(lines)

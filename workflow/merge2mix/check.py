"""Check first, compute after: read every dataset and the model's files before anything is computed.

The config is validated at parse time (merge2mix.config); this reads what the config points to, with
the same readers prepare_data uses: each dataset's file(s), columns, labels after label_map and
drop_labels, rows kept and dropped per reason; the model's config.json (present, a model_type,
task.max_length within its positions) and tokenizer. Every problem is one line naming the key, file
and line where there is one. `merge2mix check` runs it over every input, and the workflow runs it while Snakemake builds the DAG
(check_changed_inputs, in the main process) on every input that changed since it was last checked, so
a broken input stops a run before any job can delete an earlier output.
Hugging Face Hub sources are checked where they are fetched (fetch_dataset, fetch_model), not here.
No torch: pandas for the data, json for the model's config.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .config import MODALITY
from .errors import Merge2MixError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")
SMALL_SPLIT = 100  # below this many target test examples, say how wide a difference noise allows


def check_dataset(name: str, ds: dict, cfg: dict) -> tuple[dict, list[str], list[str]]:
    """(report, problems, warnings) for one dataset entry: what prepare_data would read and keep."""
    from .data.prepare import map_labels, read_source_classes, split_sizes

    modality = MODALITY[cfg["task"]["type"]]
    if "hf" in ds:
        return {"source": "hf", "checked": False}, [], []
    dropped: dict[str, int] = {}
    try:
        raw, classes = read_source_classes(name, ds, modality, dropped)
        if modality == "instruction":
            df = raw
        else:
            df, _ = map_labels(name, raw, ds, cfg["task"].get("labels"), classes, dropped)
    except Merge2MixError as e:
        return {"checked": True, "ok": False}, [str(e)], []
    n = len(df)
    report = {"checked": True, "ok": True, "rows_kept": n, "dropped": dropped}
    problems, warnings = [], []
    if n < 10:
        problems.append(f"dataset {name}: only {n} rows left after reading and label mapping; need at least 10 "
                        "to split train/val/test")
    elif modality != "instruction" and df["label"].nunique() < 2:
        problems.append(f"dataset {name}: only one class ('{df['label'].iloc[0]}') after label mapping; a fine-tune "
                        "needs at least 2 (check label_map and drop_labels)")
    else:
        report["label_counts"] = {str(k): int(v) for k, v in df["label"].value_counts().sort_index().items()} \
            if "label" in df else {}
        report["splits"] = split_sizes(n, cfg["splits"])
        if name == cfg["target"] and report["splits"]["test"] < SMALL_SPLIT:
            m = report["splits"]["test"]
            half = 1.96 * math.sqrt(0.5 / m)  # paired difference of two accuracies near 0.5, uncorrelated: the widest
            warnings.append(f"dataset {name}: the target's test split has {m} examples: two methods' test accuracies "
                            f"can differ by up to about ±{half:.2f} by chance (methods.csv's intervals say so per method)")
    return report, problems, warnings


def _model_config(source: str, cfg: dict) -> tuple[dict | None, str | None, str]:
    """(config.json's content or None, the folder it came from or None, what was looked at)."""
    m = cfg["model"]
    if m.get("arch"):
        return None, None, "a plain-torch weights file (model.arch): no config.json to read"
    p = Path(source)
    if p.is_dir():
        f = p / "config.json"
        return (json.loads(f.read_text()), str(p), str(f)) if f.is_file() else (None, str(p), str(f))
    try:  # a Hub id: read config.json from the local cache only, never download
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(source, "config.json", revision=m.get("revision"))
    except Exception:  # noqa: BLE001  (no hub client, a bad id: fetch_model reports it)
        hit = None
    if isinstance(hit, str):
        return json.loads(Path(hit).read_text()), str(Path(hit).parent), hit
    return None, None, f"'{source}' is a Hub id not in the local cache: checked when fetch_model downloads it"


def check_model(source: str, cfg: dict) -> tuple[dict, list[str]]:
    """(report, problems) for the model: config.json, model_type, positions vs task.max_length, tokenizer."""
    conf, folder, where = _model_config(source, cfg)
    task = cfg["task"]
    if conf is None:
        if folder is not None:
            return {"checked": True, "ok": False}, [
                f"model.name_or_path: {folder} has no config.json (not a Hugging Face model folder; "
                "save it with save_pretrained, or give a Hub id)"]
        return {"checked": False, "note": where}, []
    problems = []
    if "model_type" not in conf:
        problems.append(f"model: {where}: no model_type (transformers cannot tell which architecture it is)")
    if MODALITY[task["type"]] in ("text", "instruction"):
        text_conf = conf.get("text_config") or conf
        positions = text_conf.get("max_position_embeddings") or conf.get("max_position_embeddings")
        wanted = task.get("max_length")
        if positions and wanted and wanted > positions:
            problems.append(f"task.max_length: {wanted} is more than the model's max_position_embeddings {positions} "
                            f"({where}); a fine-tune would fail on the first long batch")
        if folder is not None and not any((Path(folder) / f).is_file() for f in TOKENIZER_FILES):
            problems.append(f"model.name_or_path: {folder} has no tokenizer ({', '.join(TOKENIZER_FILES[:3])}, ...): "
                            "save the tokenizer beside the model")
    return {"checked": True, "ok": not problems, "config": where, "model_type": conf.get("model_type")}, problems


def check_inputs(cfg: dict, source: str) -> dict:
    """Every dataset and the model of a validated config; {"problems": [...], "warnings": [...],
    "datasets": {name: report}, "model": report}. Reads, never writes."""
    out = {"datasets": {}, "problems": [], "warnings": []}
    for name in [cfg["target"], *cfg["candidates"]]:
        report, problems, warnings = check_dataset(name, cfg["datasets"][name], cfg)
        out["datasets"][name] = report
        out["problems"] += problems
        out["warnings"] += warnings
    out["model"], problems = check_model(source, cfg)
    out["problems"] += problems
    return out


def summary_lines(result: dict) -> list[str]:
    """One line per dataset for the CLI and the job's log: rows kept, dropped per reason, splits."""
    lines = []
    for name, r in result["datasets"].items():
        if not r.get("checked"):
            lines.append(f"  {name}: Hub source, read when fetched")
        elif r.get("ok") and "splits" in r:
            drops = ", ".join(f"{n} {why}" for why, n in r["dropped"].items()) or "none"
            sp = r["splits"]
            lines.append(f"  {name}: {r['rows_kept']} rows kept (dropped: {drops}); train/val/test "
                         f"{sp['train']}/{sp['val']}/{sp['test']}; labels {r.get('label_counts', {})}")
    m = result["model"]
    lines.append(f"  model: {m.get('model_type') or ''} {m.get('config') or m.get('note', '')}".rstrip())
    return lines


def spec_hash(obj) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def check_changed_inputs(cfg: dict, source: str, content: dict, hashes) -> list[str]:
    """At parse time, in Snakemake's main process: check every dataset and the model whose spec (its
    config entry, the files' content hash, what the task reads) has not been checked yet, so a broken
    input stops the run before any job deletes an earlier output. Passed specs are remembered in
    `hashes` (sources.Hashes), so an unchanged input is read once, not at every start. Prints warnings;
    prints every problem but the last with its prefix and raises the last (one line each). Returns the
    names checked now."""
    import sys

    task = {k: cfg["task"].get(k) for k in ("type", "labels", "max_length", "templates")}
    todo = []
    for name in [cfg["target"], *cfg["candidates"]]:
        ds = cfg["datasets"][name]
        spec = spec_hash({"dataset": ds, "content": content.get(name), "task": task, "splits": cfg["splits"],
                          "target": name == cfg["target"], "version": 1})
        if spec not in hashes.checked and "hf" not in ds:
            todo.append((name, spec))
    model_spec = spec_hash({"source": source, "content": content.get("model"), "task": task,
                            "arch": cfg["model"].get("arch"), "version": 1})
    problems, done = [], []
    for name, spec in todo:
        _, p, w = check_dataset(name, cfg["datasets"][name], cfg)
        for line in w:
            print(f"merge2mix: warning: {line}", file=sys.stderr)
        problems += p
        if not p:
            hashes.mark_checked(spec)
            done.append(name)
    if model_spec not in hashes.checked:
        _, p = check_model(source, cfg)
        problems += p
        if not p:
            hashes.mark_checked(model_spec)
            done.append("model")
    if problems:
        for line in problems[:-1]:
            print(f"merge2mix: error: {line}", file=sys.stderr)
        raise InputsError(problems[-1])
    return done


class InputsError(Merge2MixError):
    """A problem in the inputs (the others, if several, were printed on lines of their own)."""


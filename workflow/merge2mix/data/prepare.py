"""Materialise one dataset: read its source, map labels, split with a seeded shuffle, write Parquet.

Splits are deterministic given (seed, dataset name) and independent of every other dataset, so
adding a dataset to the config never changes another dataset's splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, first_line
from ..io import atomic_write_json, atomic_write_parquet
from . import images, instructions, packaged

SPLITS = ("train", "val", "test")
log = logging.getLogger("merge2mix")  # runtime.log, without importing runtime (a script job's import of it
                                      # pulls in Snakemake's own modules while Snakemake is loading them)


def read_source(name: str, ds: dict, modality: str = "text") -> pd.DataFrame:
    """The raw DataFrame of a dataset entry, with columns text (or image) and label (as a string)."""
    return read_source_classes(name, ds, modality)[0]


def read_source_classes(name: str, ds: dict, modality: str = "text",
                        dropped: dict | None = None) -> tuple[pd.DataFrame, list[str] | None]:
    """The raw DataFrame of a dataset entry, with columns text (or image: PNG bytes) and label (as a
    string), and the class names the source itself knows (HF ClassLabel, image folder names) or None.
    `dropped` (a dict) receives the rows left out per reason: a missing or blank text / label."""
    x = modality
    cols = {"text": "text", "image": "image", "label": "label", **ds.get("columns", {})}
    classes = None
    if "package" in ds:
        df = packaged.load(ds["package"]["loader"], ds["package"].get("domain"))
    elif "hf" in ds:
        df, classes = _read_hf(name, ds["hf"], cols["label"])
    else:
        df, classes = _read_local(name, ds["local"], modality)
    if x == "instruction":
        return instructions.to_examples(name, df, ds.get("columns", {})), None
    for role in (x, "label"):
        if cols[role] not in df.columns:
            raise DataError(
                f"dataset {name}: no column '{cols[role]}' for {role} (columns: {', '.join(map(str, df.columns))})"
            )
    out = pd.DataFrame({x: df[cols[x]], "label": df[cols["label"]]})
    blank = {role: out[role].isna() | out[role].map(lambda v: isinstance(v, str) and not v.strip())
             for role in (x, "label")}
    if dropped is not None:
        for role, b in blank.items():
            if b.any():
                dropped[f"blank or missing {role}"] = int(b.sum())
    out = out[~(blank[x] | blank["label"])]
    if x == "text":
        out["text"] = out["text"].astype(str)
    else:
        out["image"] = [v if isinstance(v, bytes) else _png(name, v) for v in out["image"]]
    out["label"] = out["label"].map(_label_str)
    return out.reset_index(drop=True), classes


def _png(name, v) -> bytes:
    try:
        return images.to_png(v)
    except Exception as e:
        raise DataError(f"dataset {name}: cannot read an image: {first_line(e)}") from None


def _label_str(v) -> str:
    # 1.0 and 1 both mean label "1" (pandas reads int columns with NaN as float).
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _read_local(name: str, spec: dict, modality: str = "text") -> tuple[pd.DataFrame, list[str] | None]:
    path = Path(spec["path"])
    fmt = spec.get("format") or ("imagefolder" if path.is_dir() else path.suffix.lstrip(".").lower())
    if fmt == "gz" and spec.get("labels_path"):
        fmt = "idx"
    if fmt == "imagefolder":
        if not path.is_dir():
            raise DataError(f"dataset {name}: no such image folder: {path}")
        return images.read_imagefolder(name, path)
    if fmt in ("npz", "idx") or spec.get("labels_path"):
        if not path.is_file():
            raise DataError(f"dataset {name}: no such file: {path}")
        return (images.read_npz(name, path) if fmt == "npz" else images.read_idx(name, path, spec.get("labels_path"))), None
    enc = spec.get("encoding") or "utf-8"
    readers = {
        "csv": lambda: pd.read_csv(path, sep=spec.get("sep") or ",", encoding=enc),
        "tsv": lambda: pd.read_csv(path, sep=spec.get("sep") or "\t", encoding=enc),
        "jsonl": lambda: _read_jsonl(name, path, enc),
        "json": lambda: _read_jsonl(name, path, enc) if path.suffix == ".jsonl" else pd.read_json(path, encoding=enc),
        "parquet": lambda: pd.read_parquet(path),
    }
    if fmt not in readers:
        raise DataError(f"dataset {name}: cannot read '{path}' (format '{fmt}'; use csv, tsv, jsonl, json or parquet"
                        f"{'; images: an image folder, npz or idx' if modality == 'image' else ''})")
    if not path.is_file():
        raise DataError(f"dataset {name}: no such file: {path}")
    if fmt != "parquet":
        _check_encoding(name, path, enc)
    try:
        df = readers[fmt]()
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"dataset {name}: {path} is empty") from None
    except Exception as e:  # a parser error: name the file, keep one line
        raise DataError(f"dataset {name}: cannot parse {path} as {fmt}: {str(e).splitlines()[0]}") from None
    if fmt in ("csv", "tsv") and df.shape[1] == 1 and len(df) and (";" in str(df.columns[0]) or "," in str(df.columns[0])):
        raise DataError(f"dataset {name}: {path} reads as one column '{df.columns[0]}': another separator? "
                        "(datasets.<name>.local.sep, e.g. ';')")
    return df, None


def _check_encoding(name: str, path: Path, enc: str) -> None:
    """A file that is not in `enc` names its first bad line (pandas only gives a byte offset)."""
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            try:
                raw.decode(enc)
            except UnicodeDecodeError as e:
                raise DataError(f"dataset {name}: {path}:{i}: not {enc} text ({e.reason}); give datasets.<name>.local."
                                "encoding (e.g. latin-1)") from None


def _read_jsonl(name: str, path: Path, enc: str) -> pd.DataFrame:
    """JSON Lines, one object per line; a broken line is named by its number (pandas gives none)."""
    rows = []
    with open(path, encoding=enc) as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"dataset {name}: {path}:{i}: not a JSON object ({e.msg}, column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"dataset {name}: {path}:{i}: a JSON {type(row).__name__}, not an object")
            rows.append(row)
    if not rows:
        raise DataError(f"dataset {name}: {path} is empty")
    return pd.DataFrame(rows)


def load_hf(spec: dict):
    """A config `hf:` source as a datasets.Dataset (also what the fetch_dataset localrule calls, so the
    offline prepare_data finds exactly that in the cache)."""
    import datasets  # heavy; only hf sources need it

    return datasets.load_dataset(spec["path"], spec.get("name"), revision=spec.get("revision"),
                                 split=spec.get("split", "train"), data_files=spec.get("data_files"))


def _read_hf(name: str, spec: dict, label_col: str = "label") -> tuple[pd.DataFrame, list[str] | None]:
    try:
        d = load_hf(spec)
    except Exception as e:
        raise DataError(f"dataset {name}: hf source '{spec['path']}' could not be loaded: {first_line(e)}") from None
    feature = d.features.get(label_col) if d.features else None
    return d.to_pandas(), list(getattr(feature, "names", None) or []) or None  # a ClassLabel's names


def map_labels(name: str, df: pd.DataFrame, ds: dict, labels: list[str] | None,
               source_classes: list[str] | None = None, dropped: dict | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Drop and map raw labels. Shared label space (`labels` given): every label must be one of them.
    Per-dataset (`labels` None, task.type clip): the dataset's classes are `classes:` from the config,
    else the source's own class names, else its sorted labels; integer label i becomes classes[i].
    Returns the frame and the dataset's label space. `dropped` receives the rows drop_labels removed."""
    gone = df["label"].isin([str(v) for v in ds.get("drop_labels", [])])
    if dropped is not None and gone.any():
        dropped["drop_labels"] = int(gone.sum())
    df = df[~gone]
    lmap = {str(k): v for k, v in ds.get("label_map", {}).items()}  # YAML reads `1: negative` as an int key
    if lmap:
        df = df.assign(label=df["label"].map(lambda v: lmap.get(v, v)))
    if labels is None:
        labels = ds.get("classes") or source_classes
        if labels:
            by_index = {str(i): c for i, c in enumerate(labels)}
            if not set(df["label"]) <= set(labels):
                df = df.assign(label=df["label"].map(lambda v: v if v in labels else by_index.get(v, v)))
            where = "its classes" if ds.get("classes") else "the class names its source gives"
        else:
            found = sorted(set(df["label"]))
            labels = sorted(found, key=int) if all(v.lstrip("-").isdigit() for v in found) else found
            where = ""
        bad = sorted(set(df["label"]) - set(labels))
        if bad:
            raise DataError(f"dataset {name}: labels {bad[:5]} are not among {where} {list(labels)[:10]} "
                            "(fix datasets.<name>.classes, label_map or drop_labels)")
        return df.reset_index(drop=True), list(labels)
    bad = sorted(set(df["label"]) - set(labels))
    if bad:
        raise DataError(
            f"dataset {name}: labels {bad[:5]} are not task labels {labels} (map them with label_map or drop_labels)"
        )
    return df.reset_index(drop=True), list(labels)


def split_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


def _holdout(n: int, splits: dict) -> tuple[int, int]:
    return max(1, int(round(n * splits["test_fraction"]))), max(1, int(round(n * splits["val_fraction"])))


def split_sizes(n: int, splits: dict) -> dict[str, int]:
    """The rows each split of n rows gets, caps included: what split() returns, without the data."""
    n_test, n_val = _holdout(n, splits)
    raw = {"test": min(n_test, n), "val": max(0, min(n_val, n - n_test)), "train": max(0, n - n_test - n_val)}
    return {s: min(v, splits.get(f"max_{s}") or v) for s, v in raw.items()}


def split(df: pd.DataFrame, splits: dict, seed: int, name: str) -> dict[str, pd.DataFrame]:
    n = len(df)
    rng = np.random.default_rng(split_seed(seed, name))
    order = rng.permutation(n)
    n_test, n_val = _holdout(n, splits)
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    out = {}
    for s, idx in parts.items():
        cap = splits.get(f"max_{s}")
        idx = idx[:cap] if cap else idx
        out[s] = df.iloc[np.sort(idx)].reset_index(drop=True)
    return out


def content_hash(parts: dict[str, pd.DataFrame]) -> str:
    """sha256 over the canonical content (split, text or image sha256, label), independent of the
    Parquet writer."""
    h = hashlib.sha256()
    for s in SPLITS:
        p = parts[s]
        x = (p["text"] if "text" in p else [hashlib.sha256(b).hexdigest() for b in p["image"]] if "image" in p
             else [json.dumps(r, ensure_ascii=False) for r in zip(p["prompt"], p["response"], p["choices"])])
        for t, l in zip(x, parts[s]["label"]):
            h.update(json.dumps([s, t, l], ensure_ascii=False).encode())
            h.update(b"\n")
    return h.hexdigest()


def prepare_dataset(name: str, ds: dict, labels: list[str] | None, splits: dict, seed: int, out: dict,
                    modality: str = "text") -> dict:
    """Read, map, split and write dataset `name`. `out` maps train/val/test/meta to file paths.
    `labels`: the shared label space, or None for per-dataset classes (see map_labels)."""
    dropped: dict[str, int] = {}
    raw, source_classes = read_source_classes(name, ds, modality, dropped)
    if modality == "instruction":  # no label space: the response is the target
        df, labels = raw, None
    else:
        df, labels = map_labels(name, raw, ds, labels, source_classes, dropped)
    if dropped:
        log.info("dataset %s: %d rows kept, dropped %s", name, len(df), ", ".join(f"{n} ({why})" for why, n in dropped.items()))
    if len(df) == 0:
        raise DataError(f"dataset {name}: no rows left after reading and label mapping")
    if len(df) < 10:
        raise DataError(f"dataset {name}: only {len(df)} rows; need at least 10 to split train/val/test")
    if modality != "instruction" and df["label"].nunique() < 2:
        raise DataError(f"dataset {name}: only one class ('{df['label'].iloc[0]}'); a fine-tune needs at least 2")
    parts = split(df, splits, seed, name)
    for s in SPLITS:
        atomic_write_parquet(parts[s], out[s])
    meta = {
        "name": name,
        "source": {k: ds[k] for k in ("package", "hf", "local") if k in ds},
        "content_sha256": content_hash(parts),
        "rows": {s: len(parts[s]) for s in SPLITS},
        "dropped": dropped,
        "label_counts": {s: parts[s]["label"].value_counts().sort_index().to_dict() for s in SPLITS},
        "labels": labels,
        "seed": seed,
    }
    atomic_write_json(meta, out["meta"])
    return meta


def load_split(path: str) -> pd.DataFrame:
    return pd.read_parquet(path)

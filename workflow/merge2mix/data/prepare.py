"""Materialise one dataset: read its source, map labels, split with a seeded shuffle, write Parquet.

Splits are deterministic given (seed, dataset name) and independent of every other dataset, so
adding a dataset to the config never changes another dataset's splits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, first_line
from ..io import atomic_write_json, atomic_write_parquet
from . import packaged

SPLITS = ("train", "val", "test")


def read_source(name: str, ds: dict) -> pd.DataFrame:
    """The raw DataFrame of a dataset entry, with columns text, label (label as string)."""
    cols = {"text": "text", "label": "label", **ds.get("columns", {})}
    if "package" in ds:
        df = packaged.load(ds["package"]["loader"], ds["package"].get("domain"))
    elif "hf" in ds:
        df = _read_hf(name, ds["hf"])
    else:
        df = _read_local(name, ds["local"])
    for role in ("text", "label"):
        if cols[role] not in df.columns:
            raise DataError(
                f"dataset {name}: no column '{cols[role]}' for {role} (columns: {', '.join(map(str, df.columns))})"
            )
    out = pd.DataFrame({"text": df[cols["text"]], "label": df[cols["label"]]})
    out = out.dropna()
    out["text"] = out["text"].astype(str)
    out["label"] = out["label"].map(_label_str)
    return out.reset_index(drop=True)


def _label_str(v) -> str:
    # 1.0 and 1 both mean label "1" (pandas reads int columns with NaN as float).
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _read_local(name: str, spec: dict) -> pd.DataFrame:
    path = Path(spec["path"])
    fmt = spec.get("format") or path.suffix.lstrip(".").lower()
    readers = {
        "csv": lambda: pd.read_csv(path),
        "tsv": lambda: pd.read_csv(path, sep="\t"),
        "jsonl": lambda: pd.read_json(path, lines=True),
        "json": lambda: pd.read_json(path, lines=path.suffix == ".jsonl"),
        "parquet": lambda: pd.read_parquet(path),
    }
    if fmt not in readers:
        raise DataError(f"dataset {name}: cannot read '{path}' (format '{fmt}'; use csv, tsv, jsonl, json or parquet)")
    if not path.is_file():
        raise DataError(f"dataset {name}: no such file: {path}")
    try:
        return readers[fmt]()
    except Exception as e:  # a parser error: name the file, keep one line
        raise DataError(f"dataset {name}: cannot parse {path} as {fmt}: {str(e).splitlines()[0]}") from None


def load_hf(spec: dict):
    """A config `hf:` source as a datasets.Dataset (also what the fetch_dataset localrule calls, so the
    offline prepare_data finds exactly that in the cache)."""
    import datasets  # heavy; only hf sources need it

    return datasets.load_dataset(spec["path"], spec.get("name"), revision=spec.get("revision"),
                                 split=spec.get("split", "train"), data_files=spec.get("data_files"))


def _read_hf(name: str, spec: dict) -> pd.DataFrame:
    try:
        d = load_hf(spec)
    except Exception as e:
        raise DataError(f"dataset {name}: hf source '{spec['path']}' could not be loaded: {first_line(e)}") from None
    return d.to_pandas()


def map_labels(name: str, df: pd.DataFrame, ds: dict, labels: list[str]) -> pd.DataFrame:
    df = df[~df["label"].isin(ds.get("drop_labels", []))]
    lmap = ds.get("label_map", {})
    if lmap:
        df = df.assign(label=df["label"].map(lambda v: lmap.get(v, v)))
    bad = sorted(set(df["label"]) - set(labels))
    if bad:
        raise DataError(
            f"dataset {name}: labels {bad[:5]} are not task labels {labels} (map them with label_map or drop_labels)"
        )
    return df.reset_index(drop=True)


def split_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


def split(df: pd.DataFrame, splits: dict, seed: int, name: str) -> dict[str, pd.DataFrame]:
    n = len(df)
    rng = np.random.default_rng(split_seed(seed, name))
    order = rng.permutation(n)
    n_test = max(1, int(round(n * splits["test_fraction"])))
    n_val = max(1, int(round(n * splits["val_fraction"])))
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    out = {}
    for s, idx in parts.items():
        cap = splits.get(f"max_{s}")
        idx = idx[:cap] if cap else idx
        out[s] = df.iloc[np.sort(idx)].reset_index(drop=True)
    return out


def content_hash(parts: dict[str, pd.DataFrame]) -> str:
    """sha256 over the canonical content (split, text, label), independent of the Parquet writer."""
    h = hashlib.sha256()
    for s in SPLITS:
        for t, l in zip(parts[s]["text"], parts[s]["label"]):
            h.update(json.dumps([s, t, l], ensure_ascii=False).encode())
            h.update(b"\n")
    return h.hexdigest()


def prepare_dataset(name: str, ds: dict, labels: list[str], splits: dict, seed: int, out: dict) -> dict:
    """Read, map, split and write dataset `name`. `out` maps train/val/test/meta to file paths."""
    df = map_labels(name, read_source(name, ds), ds, labels)
    if len(df) == 0:
        raise DataError(f"dataset {name}: no rows left after reading and label mapping")
    if len(df) < 10:
        raise DataError(f"dataset {name}: only {len(df)} rows; need at least 10 to split train/val/test")
    if df["label"].nunique() < 2:
        raise DataError(f"dataset {name}: only one class ('{df['label'].iloc[0]}'); a fine-tune needs at least 2")
    parts = split(df, splits, seed, name)
    for s in SPLITS:
        atomic_write_parquet(parts[s], out[s])
    meta = {
        "name": name,
        "source": {k: ds[k] for k in ("package", "hf", "local") if k in ds},
        "content_sha256": content_hash(parts),
        "rows": {s: len(parts[s]) for s in SPLITS},
        "label_counts": {s: parts[s]["label"].value_counts().sort_index().to_dict() for s in SPLITS},
        "labels": labels,
        "seed": seed,
    }
    atomic_write_json(meta, out["meta"])
    return meta


def load_split(path: str) -> pd.DataFrame:
    return pd.read_parquet(path)

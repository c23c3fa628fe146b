"""Data sources (local, hf builder, package), label mapping, seeded splits, content hash."""

import json

import pandas as pd
import pytest

from conftest import FIXTURES
from merge2mix.data import packaged
from merge2mix.data.prepare import read_source_classes, map_labels, prepare_dataset, read_source, split
from merge2mix.errors import DataError

COLS = {"columns": {"text": "review", "label": "stars"}}
LABELS = ["negative", "positive"]
LMAP = {"label_map": {"neg": "negative", "pos": "positive"}}
SPLITS = {"val_fraction": 0.25, "test_fraction": 0.25}


@pytest.mark.parametrize("fname", ["books.csv", "food.jsonl", "films.tsv"])
def test_local_sources_read_with_column_mapping(fname):
    df = read_source("x", {"local": {"path": str(FIXTURES / fname)}, **COLS})
    assert list(df.columns) == ["text", "label"] and len(df) == 40
    assert set(df["label"]) == {"neg", "pos"}


def test_parquet_and_hf_builder_sources(tmp_path):
    src = pd.read_csv(FIXTURES / "books.csv")
    src.to_parquet(tmp_path / "b.parquet")
    a = read_source("p", {"local": {"path": str(tmp_path / "b.parquet")}, **COLS})
    # The `hf:` source goes through datasets.load_dataset, here with a builtin builder (offline).
    b = read_source("h", {"hf": {"path": "csv", "data_files": str(FIXTURES / "books.csv"), "split": "train"}, **COLS})
    pd.testing.assert_frame_equal(a, b)


def test_numeric_labels_become_strings(tmp_path):
    pd.DataFrame({"text": list("abcdefghij"), "label": [0, 1] * 5}).to_csv(tmp_path / "n.csv", index=False)
    df = read_source("n", {"local": {"path": str(tmp_path / "n.csv")}})
    assert sorted(set(df["label"])) == ["0", "1"]


def test_wrong_column_names_the_dataset_and_column():
    with pytest.raises(DataError, match=r"dataset books: no column 'sentence' for text \(columns: review, stars\)"):
        read_source("books", {"local": {"path": str(FIXTURES / "books.csv")}, "columns": {"text": "sentence", "label": "stars"}})


def test_unparseable_file(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "a", "label": "pos"}\n{not json\n')
    with pytest.raises(DataError, match=r"^dataset x: .*x\.jsonl:2: not a JSON object \(Expecting property name"):
        read_source("x", {"local": {"path": str(tmp_path / "x.jsonl")}})
    (tmp_path / "y.jsonl").write_text('{"text": "a", "label": "pos"}\n["a", "pos"]\n')
    with pytest.raises(DataError, match=r"y\.jsonl:2: a JSON list, not an object"):
        read_source("y", {"local": {"path": str(tmp_path / "y.jsonl")}})


@pytest.mark.parametrize("name, content, spec, message", [
    ("empty csv", b"", {}, r"x\.csv is empty"),
    ("empty jsonl", b"\n\n", {"path": "x.jsonl"}, r"x\.jsonl is empty"),
    ("latin-1 without encoding", "text,label\ncafé,pos\nbad,neg\n".encode("latin-1"), {},
     r"x\.csv:2: not utf-8 text .*local\.encoding \(e\.g\. latin-1\)"),
    ("semicolons", b"text;label\ngood;pos\nbad;neg\n", {}, r"reads as one column 'text;label': another separator\?"),
])
def test_bad_files_give_one_line_naming_the_file_and_line(tmp_path, name, content, spec, message):
    path = tmp_path / spec.get("path", "x.csv")
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        read_source("x", {"local": {"path": str(path)}})
    assert "\n" not in str(e.value) and str(e.value).startswith("dataset x: ")


def test_sep_and_encoding_read_what_the_defaults_cannot(tmp_path):
    (tmp_path / "x.csv").write_bytes("text;label\ncafé;pos\nbad;neg\n".encode("latin-1"))
    df = read_source("x", {"local": {"path": str(tmp_path / "x.csv"), "sep": ";", "encoding": "latin-1"}})
    assert df["text"].tolist() == ["café", "bad"] and df["label"].tolist() == ["pos", "neg"]


def test_dropped_rows_are_counted_per_reason_and_integer_label_map_keys_work(tmp_path):
    (tmp_path / "x.csv").write_text("text,label\ngood,1\n,1\n   ,2\nbad,\nmeh,3\nfine,5\nok,5\n")
    dropped = {}
    df = read_source_classes("x", {"local": {"path": str(tmp_path / "x.csv")}}, "text", dropped)[0]
    assert dropped == {"blank or missing text": 2, "blank or missing label": 1} and len(df) == 4
    ds = {"label_map": {1: "negative", 5: "positive"}, "drop_labels": [3]}  # YAML's int keys and entries
    mapped, space = map_labels("x", df, ds, LABELS, dropped=dropped)
    assert mapped["label"].tolist() == ["negative", "positive", "positive"] and dropped["drop_labels"] == 1


def test_labels_outside_the_task_are_refused():
    df = read_source("books", {"local": {"path": str(FIXTURES / "books.csv")}, **COLS})
    with pytest.raises(DataError, match=r"dataset books: labels \['neg', 'pos'\] are not task labels"):
        map_labels("books", df, {}, LABELS)
    mapped, space = map_labels("books", df, LMAP, LABELS)
    assert set(mapped["label"]) == set(LABELS) and space == LABELS
    dropped, _ = map_labels("books", df, {"drop_labels": ["neg"], "label_map": {"pos": "positive"}}, LABELS)
    assert set(dropped["label"]) == {"positive"} and len(dropped) == 20


def test_splits_are_seeded_disjoint_and_per_dataset():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": ["a"] * 100})
    s1 = split(df, SPLITS, 0, "x")
    s2 = split(df, SPLITS, 0, "x")
    assert all(s1[k].equals(s2[k]) for k in s1)
    assert [len(s1[k]) for k in ("train", "val", "test")] == [50, 25, 25]
    texts = [set(s1[k]["text"]) for k in s1]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert not split(df, SPLITS, 0, "y")["test"].equals(s1["test"])  # each dataset has its own shuffle
    assert not split(df, SPLITS, 1, "x")["test"].equals(s1["test"])
    capped = split(df, {**SPLITS, "max_train": 7}, 0, "x")
    assert len(capped["train"]) == 7 and capped["test"].equals(s1["test"])


def test_prepare_writes_splits_and_meta(tmp_path):
    out = {s: str(tmp_path / f"{s}.parquet") for s in ("train", "val", "test")} | {"meta": str(tmp_path / "meta.json")}
    ds = {"local": {"path": str(FIXTURES / "phones.csv")}, **COLS, **LMAP}
    meta = prepare_dataset("phones", ds, LABELS, SPLITS, 0, out)
    assert meta["rows"] == {"train": 30, "val": 15, "test": 15}
    assert json.loads((tmp_path / "meta.json").read_text())["content_sha256"] == meta["content_sha256"]
    again = prepare_dataset("phones", ds, LABELS, SPLITS, 0, out)
    assert again["content_sha256"] == meta["content_sha256"]
    assert set(pd.read_parquet(out["train"])["label"]) == set(LABELS)


@pytest.mark.parametrize("rows, message", [
    ([], "no rows left"),
    ([("a", "pos")] * 5 + [("b", "neg")] * 4, "only 9 rows"),
    ([("a", "pos")] * 12, "only one class"),
])
def test_empty_tiny_and_one_class_datasets(tmp_path, rows, message):
    pd.DataFrame(rows, columns=["review", "stars"]).to_csv(tmp_path / "d.csv", index=False)
    out = {s: str(tmp_path / f"{s}.parquet") for s in ("train", "val", "test", "meta")}
    with pytest.raises(DataError, match=f"dataset d: {message}"):
        prepare_dataset("d", {"local": {"path": str(tmp_path / "d.csv")}, **COLS, **LMAP}, LABELS, SPLITS, 0, out)
    assert not any((tmp_path / f"{s}.parquet").exists() for s in ("train", "val", "test"))


def test_packaged_datasets_are_real_and_labelled():
    # Row counts of the pinned carrier packages (envs/assets.txt): a changed regex or package shows here.
    counts = {"airline": 14638, "selfdriving": 4702, "apple": 3810, "coachella": 3753, "deflategate": 9365, "claritin": 1696}
    for domain, n in counts.items():
        df = packaged.load("crowdflower", domain)
        assert len(df) == n, domain
        assert {"positive", "negative", "neutral"} <= set(df["label"]), domain
    apple = packaged.load("crowdflower", "apple")
    assert apple["text"].str.contains("apple|iphone|ipad|mac|aapl", case=False).mean() > 0.95
    rt = packaged.load("rotten_tomatoes")
    assert set(rt["label"]) == {"positive", "negative"} and len(rt) == 12808


@pytest.mark.parametrize("n, splits", [
    (40, {"val_fraction": 0.25, "test_fraction": 0.25}),
    (11, {"val_fraction": 0.15, "test_fraction": 0.15}),
    (1645, {"val_fraction": 0.2, "test_fraction": 0.2, "max_train": 384, "max_val": 192, "max_test": 300}),
    (277, {"val_fraction": 0.2, "test_fraction": 0.2, "max_train": 384, "max_val": 192, "max_test": 300}),
])
def test_split_sizes_are_the_sizes_split_gives(n, splits):
    """The check reports split sizes without splitting: they must be split()'s own."""
    from merge2mix.data.prepare import split_sizes

    df = pd.DataFrame({"text": [f"t{i}" for i in range(n)], "label": ["a", "b"] * (n // 2) + ["a"] * (n % 2)})
    parts = split(df, splits, 0, "x")
    assert split_sizes(n, splits) == {s: len(parts[s]) for s in ("test", "val", "train")}

"""A user's own files, walked as a user walks them: a finished run, then a data file touched, edited or
broken in place, a model folder damaged. Every byte a job reads is tracked by content (merge2mix.sources);
a broken input stops the rerun while Snakemake builds the DAG (merge2mix.check) with one line, and every
earlier output stays byte-identical."""

import hashlib
import re
import shutil

import pytest

from conftest import FIXTURES, snakemake, tiny_config, write_config


def _hashes(root):
    """Every result file's sha256 (the hash cache is not a result)."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*")
            if p.is_file() and p.name != ".merge2mix-hashes.json"}


@pytest.fixture(scope="module")
def own_files_run(tiny_model, tmp_path_factory):
    """A finished run over the user's own copies: target phones (csv), books (csv), food (jsonl), and
    a copy of the model folder."""
    work = tmp_path_factory.mktemp("own")
    data = work / "data"
    data.mkdir()
    for f in ("phones.csv", "books.csv", "food.jsonl"):
        shutil.copy(FIXTURES / f, data / f)
    model = work / "model"
    shutil.copytree(tiny_model, model)
    # a file above Snakemake's 1 MB checksum limit: its mtime alone would rerun whatever reads it
    (model / "extra_weights.bin").write_bytes(bytes(range(256)) * 5000)  # (model_files: every file in the folder)
    cfg = tiny_config(model, work / "results")
    cfg["datasets"] = {"phones": {**cfg["datasets"]["phones"], "local": {"path": str(data / "phones.csv")}},
                       "books": {**cfg["datasets"]["books"], "local": {"path": str(data / "books.csv")}},
                       "food": {**cfg["datasets"]["food"], "local": {"path": str(data / "food.jsonl")}}}
    path = write_config(cfg, work / "own.yaml")
    r = snakemake(work, "--cores", "2", "--configfile", str(path))
    assert r.returncode == 0, r.stderr[-4000:]
    return work, path, data, model


def _ran(out: str) -> dict[str, int]:
    stats = out.split("Job stats:")[1] if "Job stats:" in out else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


def test_a_touched_but_unchanged_file_reruns_nothing_that_reads_it(own_files_run):
    work, cfg, data, model = own_files_run
    results = work / "results" / "tiny"
    before = _hashes(results)
    for f in (data / "books.csv", model / "extra_weights.bin", model / "config.json"):
        f.touch()
    r = snakemake(work, "--cores", "2", "--configfile", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Nothing to be done" in r.stdout + r.stderr, _ran(r.stdout + r.stderr)
    assert _hashes(results) == before


def test_an_edited_file_reruns_exactly_what_depends_on_it(own_files_run, tmp_path):
    work, cfg, data, model = own_files_run
    original = (data / "books.csv").read_bytes()  # bytes: the fixture has CRLF line ends
    try:
        lines = original.decode().splitlines()
        flipped = [lines[0]] + [l.replace(",pos", ",NEG").replace(",neg", ",pos").replace(",NEG", ",neg") if i < 12 else l
                                for i, l in enumerate(lines[1:])]
        (data / "books.csv").write_text("\n".join(flipped) + "\n")
        r = snakemake(work, "-n", "--cores", "2", "--configfile", str(cfg))
        assert r.returncode == 0, r.stderr[-3000:]
        out = r.stdout + r.stderr
        planned = {}
        for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", out):
            m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block.strip())
            if m:
                w = re.search(r"^\s*wildcards: (.*)$", block, re.M)
                planned.setdefault(m.group(1), []).append(w.group(1).strip() if w else "")
        assert planned["prepare_data"] == ["name=books"]
        assert "Params have changed" in out
        assert planned["finetune"] == ["name=books"]
        assert sorted(planned["merge_eval"]) == ["mask=books", "mask=books+food"]
        assert "init_model" not in planned  # theta_0 and the other datasets' data and fine-tunes stand
    finally:
        (data / "books.csv").write_bytes(original)


def _broken_inputs(data, model):
    """(name, a function breaking a file in place, the message's distinctive part)."""
    def rewrite(path, fn):
        return lambda: path.write_bytes(fn(path.read_bytes()))

    return [
        ("renamed column", rewrite(data / "books.csv", lambda b: b.replace(b"review,stars", b"text,stars", 1)),
         "dataset books: no column 'review' for text (columns: text, stars)"),
        ("label typo", rewrite(data / "books.csv", lambda b: b.replace(b",pos\r\n", b",poss\r\n", 1)),
         "dataset books: labels ['poss'] are not task labels"),
        ("broken JSONL line", rewrite(data / "food.jsonl", lambda b: b.replace(b'"stars": "neg"}', b'"stars": "neg"', 1)),
         "food.jsonl:2: not a JSON object"),
        ("latin-1 byte", rewrite(data / "books.csv", lambda b: b.replace(b"great", "gr\u00e9at".encode("latin-1"), 1)),
         "books.csv:2: not utf-8 text"),
        ("semicolons", rewrite(data / "books.csv", lambda b: b.replace(b",", b";")),
         "reads as one column 'review;stars': another separator?"),
        ("emptied target", rewrite(data / "phones.csv", lambda b: b.split(b"\n", 1)[0] + b"\n"),
         "dataset phones: only 0 rows left"),
        ("model without config.json", lambda: (model / "config.json").unlink(),
         f"model.name_or_path: {model} has no config.json"),
    ]


def test_a_broken_input_stops_the_rerun_with_one_line_and_touches_nothing(own_files_run):
    work, cfg, data, model = own_files_run
    results = work / "results" / "tiny"
    keep = {p: p.read_bytes() for p in [*data.iterdir(), model / "config.json"]}
    before = _hashes(work / "results")
    for name, breakit, message in _broken_inputs(data, model):
        try:
            breakit()
            r = snakemake(work, "--cores", "2", "--configfile", str(cfg))
            out = r.stdout + r.stderr
            assert r.returncode != 0, name
            lines = [l for l in out.splitlines() if l.startswith("merge2mix: error: ") and message in l]
            assert len(lines) == 1, (name, out[-3000:])
            assert _hashes(work / "results") == before, name  # not one earlier output changed or went missing
        finally:
            for p, b in keep.items():
                p.write_bytes(b)


def test_the_parse_time_check_reads_an_input_once_until_it_changes(tmp_path, tiny_model, capsys):
    """check_changed_inputs: every dataset and the model on the first start; nothing on the next (the
    cache remembers what passed); the one edited dataset after an edit; a broken one raises its line
    and is not remembered, so it is read again on the next start."""
    from merge2mix import config as config_mod
    from merge2mix.check import InputsError, check_changed_inputs
    from merge2mix.sources import Hashes, dataset_files, model_files

    shutil.copy(FIXTURES / "books.csv", tmp_path / "books.csv")
    cfg = tiny_config(tiny_model, tmp_path / "results")
    cfg["datasets"]["books"]["local"]["path"] = str(tmp_path / "books.csv")
    cfg = config_mod.validate(cfg)

    def start():
        h = Hashes(str(tmp_path / "cache.json"))
        content = {n: h.content(dataset_files(cfg["datasets"][n])) for n in cfg["datasets"]}
        content["model"] = h.content(model_files(str(tiny_model), cfg["model"]), str(tiny_model))
        try:
            return check_changed_inputs(cfg, str(tiny_model), content, h)
        finally:
            h.save()

    assert sorted(start()) == ["books", "films", "food", "model", "phones"]
    assert start() == []
    (tmp_path / "books.csv").write_bytes((FIXTURES / "books.csv").read_bytes().replace(b",neg\r\n", b",nope\r\n", 1))
    with pytest.raises(InputsError, match=r"^dataset books: labels \['nope'\] are not task labels"):
        start()
    with pytest.raises(InputsError):
        start()  # still broken, still read
    shutil.copy(FIXTURES / "books.csv", tmp_path / "books.csv")
    assert start() == []  # the original content passed before


def test_the_model_check_names_positions_tokenizer_and_config(tiny_model, tmp_path):
    """check_model: task.max_length beyond the model's max_position_embeddings, a folder without a
    tokenizer, a folder without config.json: one line each, naming the key and the folder."""
    import json

    from merge2mix import config as config_mod
    from merge2mix.check import check_model

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    positions = json.loads((model / "config.json").read_text())["max_position_embeddings"]
    cfg = config_mod.validate(tiny_config(model, tmp_path / "results"))
    assert check_model(str(model), cfg)[1] == []
    long = config_mod.validate(tiny_config(model, tmp_path / "results", task={**cfg["task"], "max_length": positions + 1}))
    (problem,) = check_model(str(model), long)[1]
    assert problem.startswith(f"task.max_length: {positions + 1} is more than the model's max_position_embeddings {positions}")
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (model / f).unlink(missing_ok=True)
    assert any(p.startswith(f"model.name_or_path: {model} has no tokenizer") for p in check_model(str(model), cfg)[1])
    (model / "config.json").unlink()
    assert check_model(str(model), cfg)[1] == [f"model.name_or_path: {model} has no config.json (not a Hugging Face "
                                               "model folder; save it with save_pretrained, or give a Hub id)"]

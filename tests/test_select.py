import json
import random

import pandas as pd
import pytest

from merge2mix.select import TIE_BREAK, rank, select, tie_break

pytestmark = pytest.mark.usefixtures("isolated_cwd")  # relative-path writes fail, not leak


def row(mask, acc, f1=0.5, loss=1.0, bal=0.5):
    names = mask.split("+")
    return {"mask": mask, "datasets": names, "bitstring": "", "size": len(names), "accuracy": acc,
            "macro_f1": f1, "balanced_accuracy": bal, "loss": loss, "n": 10}


def test_tie_break_order():
    rows = [
        row("a", 0.8, 0.7, 0.5),
        row("b", 0.9, 0.6, 0.5),        # best accuracy wins outright
        row("c", 0.8, 0.7, 0.4),        # beats a on loss
        row("a+b", 0.8, 0.8, 0.9),      # beats a, c on macro-F1
        row("d+e", 0.8, 0.7, 0.4),      # ties c on everything but size: c (smaller) first
        row("e", 0.8, 0.7, 0.4),        # ties c entirely: key order, c before e
    ]
    df = rank(pd.DataFrame(rows).assign(datasets=lambda d: d["datasets"].map("+".join)))
    assert df["mask"].tolist() == ["b", "a+b", "c", "e", "d+e", "a"]
    assert df["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert TIE_BREAK == "accuracy desc, macro_f1 desc, loss asc, size asc, mask asc"


@pytest.mark.parametrize("seed", range(5))
def test_full_ties_are_broken_by_key_whatever_the_input_order(seed):
    """Rows equal in every score and size come out in key order, so the pick does not depend on the
    order the result files were listed in (a sort without the key would keep the input order)."""
    rows = [row(m, 0.8, 0.7, 0.4) for m in ("q", "c", "x", "a", "m")] + [row("b+z", 0.8, 0.7, 0.4)]
    random.Random(seed).shuffle(rows)
    df = rank(pd.DataFrame(rows).assign(datasets=lambda d: d["datasets"].map("+".join)))
    assert df["mask"].tolist() == ["a", "c", "m", "q", "x", "b+z"]


def test_select_writes_table_and_best(tmp_path):
    paths = []
    for r, bits in [(row("a", 0.5), "10"), (row("b", 0.75), "01"), (row("a+b", 0.75, f1=0.4), "11")]:
        r["bitstring"] = bits
        p = tmp_path / f"{r['mask']}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    best = select(paths, ["a", "b"], tmp_path / "masks.csv", tmp_path / "best.json")
    assert best["mask"] == "b" and best["datasets"] == ["b"] and best["masks_scored"] == 3
    df = pd.read_csv(tmp_path / "masks.csv", dtype={"bitstring": str})
    assert list(df["mask"]) == ["b", "a+b", "a"]
    assert list(df["bitstring"]) == ["01", "11", "10"]
    assert json.loads((tmp_path / "best.json").read_text())["bitstring"] == "01"


def test_selection_metric_comes_first_then_the_usual_tie_break(tmp_path):
    """A one-class model wins on accuracy on an imbalanced target; ranked by balanced accuracy or
    macro-F1 the model that separates the classes wins. Equal metric: accuracy, macro-F1, loss, size, key."""
    rows = [row("collapsed", 0.80, f1=0.44, loss=0.50, bal=0.50),
            row("separates", 0.75, f1=0.70, loss=0.60, bal=0.72),
            row("b+c", 0.70, f1=0.65, loss=0.40, bal=0.72),
            row("a+c", 0.70, f1=0.65, loss=0.40, bal=0.72)]
    df = pd.DataFrame(rows).assign(datasets=lambda d: d["datasets"].map("+".join))
    assert rank(df)["mask"].tolist() == ["collapsed", "separates", "a+c", "b+c"]
    assert rank(df, "balanced_accuracy")["mask"].tolist() == ["separates", "a+c", "b+c", "collapsed"]
    assert rank(df, "macro_f1")["mask"].tolist() == ["separates", "a+c", "b+c", "collapsed"]
    assert rank(df, "loss")["mask"].tolist() == ["a+c", "b+c", "collapsed", "separates"]
    assert tie_break("balanced_accuracy") == "balanced_accuracy desc, accuracy desc, macro_f1 desc, loss asc, size asc, mask asc"
    assert tie_break("loss") == "loss asc, accuracy desc, macro_f1 desc, size asc, mask asc"
    with pytest.raises(ValueError, match="select.metric 'auroc' is not one of"):
        rank(df, "auroc")
    paths = []
    for r in rows:
        p = tmp_path / f"{r['mask']}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    best = select(paths, ["a", "b", "c", "collapsed", "separates"], tmp_path / "m.csv", tmp_path / "b.json", "balanced_accuracy")
    assert best["mask"] == "separates" and best["metric"] == "balanced_accuracy" and best["val_balanced_accuracy"] == 0.72
    assert best["tie_break"].startswith("balanced_accuracy desc")
    assert pd.read_csv(tmp_path / "m.csv")["balanced_accuracy"].tolist() == [0.72, 0.72, 0.72, 0.5]


def test_results_without_the_selection_metric_are_a_clear_error(tmp_path):
    from merge2mix.errors import Merge2MixError

    old = row("a", 0.5)
    del old["balanced_accuracy"]
    (tmp_path / "a.json").write_text(json.dumps(old))
    with pytest.raises(Merge2MixError, match=r"select.metric balanced_accuracy: .*a\.json has no 'balanced_accuracy'"):
        select([tmp_path / "a.json"], ["a"], tmp_path / "m.csv", tmp_path / "b.json", "balanced_accuracy")
    best = select([tmp_path / "a.json"], ["a"], tmp_path / "m.csv", tmp_path / "b.json")  # accuracy: fine
    assert best["val_balanced_accuracy"] is None


def test_outputs_have_exactly_their_documented_fields(tmp_path, monkeypatch):
    """masks.csv columns and best_mask.json keys are an interface (pandas users, merge2mix show,
    deploy): exact, and between the two writes a failpoint sees masks.csv without best_mask.json."""
    paths = []
    for r in (row("a", 0.5), row("b", 0.75)):
        p = tmp_path / f"{r['mask']}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    monkeypatch.setenv("MERGE2MIX_FAILPOINTS", "select.between_outputs=fail-once")
    monkeypatch.setenv("MERGE2MIX_FAILPOINT_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="failpoint select.between_outputs"):
        select(paths, ["a", "b"], tmp_path / "masks.csv", tmp_path / "best.json")
    assert (tmp_path / "masks.csv").exists() and not (tmp_path / "best.json").exists()
    best = select(paths, ["a", "b"], tmp_path / "masks.csv", tmp_path / "best.json")
    assert list(pd.read_csv(tmp_path / "masks.csv").columns) == [
        "mask", "bitstring", "size", "datasets", "accuracy", "macro_f1", "balanced_accuracy", "loss", "n", "rank"]
    assert json.loads((tmp_path / "best.json").read_text()) == best == {
        "mask": "b", "datasets": ["b"], "bitstring": "01", "candidates": ["a", "b"], "val_accuracy": 0.75,
        "val_macro_f1": 0.5, "val_balanced_accuracy": 0.5, "val_loss": 1.0, "masks_scored": 2, "metric": "accuracy",
        "tie_break": "accuracy desc, macro_f1 desc, loss asc, size asc, mask asc",
        "operator": {"method": "average", "params": {}}}
    assert pd.read_csv(tmp_path / "masks.csv", dtype={"bitstring": str})["datasets"].tolist() == ["b", "a"]


def test_operator_of_a_row_and_clear_messages():
    from merge2mix.select import operator_of, order

    op = {"method": "ties", "params": {"density": 0.2}}
    assert operator_of(pd.Series({"operator": op})) == op
    assert operator_of(pd.Series({"mask": "a"})) == operator_of(pd.Series({"operator": float("nan")})) == {
        "method": "average", "params": {}}
    with pytest.raises(ValueError) as e:
        order("auroc")
    assert str(e.value) == "select.metric 'auroc' is not one of accuracy, macro_f1, balanced_accuracy, loss"
    assert order() == [("accuracy", False), ("macro_f1", False), ("loss", True), ("size", True), ("mask", True)]
    df = rank(pd.DataFrame([row("b", 0.5), row("a", 0.7)]).assign(datasets=lambda d: d["datasets"].map("+".join)))
    assert list(df.index) == [0, 1] and "index" not in df.columns


def test_gather_names_the_file_without_the_metric(tmp_path):
    from merge2mix.errors import Merge2MixError
    from merge2mix.select import gather

    old = row("a", 0.5)
    del old["macro_f1"]
    (tmp_path / "a.json").write_text(json.dumps(old))
    with pytest.raises(Merge2MixError) as e:
        gather([tmp_path / "a.json"], ["a"], "macro_f1")
    assert str(e.value) == (f"select.metric macro_f1: {tmp_path / 'a.json'} has no 'macro_f1' (scored by an older "
                            "merge2mix; delete the run's merge_eval/ folder to score the masks again)")


def test_report_opens_on_the_answer_then_every_method():
    """summary.report_rst: valid reStructuredText (docutils renders it without a warning) whose first
    paragraph names the selected mixture, with the test table and one row per methods.csv row."""
    from docutils.core import publish_parts

    from merge2mix.summary import report_rst

    metrics = {"accuracy": 0.8, "macro_f1": 0.75, "loss": 0.5, "n": 300}
    s = {"target": "apple", "selected_mixture": ["airline", "rt_movies"], "masks_scored": 63,
         "selection_val_accuracy": 0.84, "deploy_train_examples": 768,
         "test": {"base": metrics, "merged_best": metrics, "deployed": {**metrics, "accuracy": 0.81}}}
    methods = [{"method": "pretrained", "mixture": None, "accuracy": 0.74, "macro_f1": float("nan"), "finetunes": 0, "merges": 0},
               {"method": "merge_to_mix", "mixture": "airline+rt_movies", "accuracy": 0.81, "macro_f1": 0.7, "finetunes": 7,
                "merges": 63}]
    text = report_rst(s, methods)
    first = text.split("\n\n")[1]
    assert "**Selected mixture: airline + rt_movies**" in first and "63 merged models" in first
    html = publish_parts(text, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["html_body"]
    assert html.count("<tr>") == 1 + 3 + 1 + 2  # header + 3 models, header + 2 methods
    assert "0.8100" in html and "merge_to_mix" in html and "airline+rt_movies" in html
    assert "{{" not in text and "{%" not in text  # Snakemake renders the description with Jinja2
    assert "methods.csv" not in report_rst(s, None)
    assert "nan" not in report_rst(s, [{**methods[0], "mixture": float("nan")}])  # an empty CSV cell, as pandas reads it
    paired = report_rst(s, [{**methods[0], "m2m_diff": 0.07, "m2m_diff_lo": 0.021, "m2m_diff_hi": 0.1183}, methods[1]])
    assert "+0.070 [0.021, 0.118]" in paired and "paired bootstrap" in paired


def test_the_summary_names_the_score_that_chose_the_mixture():
    """summary.md and the report's opening say which val score ranked the masks (select.metric): with
    loss they give the loss beside the accuracy; a summary written before select.metric said accuracy."""
    from merge2mix.summary import chosen_by, markdown, report_rst

    metrics = {"accuracy": 0.8, "macro_f1": 0.75, "loss": 0.5, "n": 300}
    s = {"target": "apple", "selected_mixture": ["airline"], "selected_bitstring": "10", "candidates": ["airline", "x"],
         "masks_scored": 3, "selection_val_accuracy": 0.84, "selection_metric": "loss", "selection_val_score": 0.4123,
         "deploy_train_examples": 10, "test": {"deployed": metrics}, "notes": {}}
    assert chosen_by(s) == "val loss 0.4123; val accuracy 0.8400"
    assert "best of 3 merged models by target val loss 0.4123; val accuracy 0.8400." in markdown(s)
    assert "by the target's val loss 0.4123" in report_rst(s).split("\n\n")[1]
    assert chosen_by({**s, "selection_metric": "macro_f1", "selection_val_score": 0.7}) == "val macro f1 0.7000; val accuracy 0.8400"
    old = {k: v for k, v in s.items() if k not in ("selection_metric", "selection_val_score")}
    assert chosen_by(old) == "val accuracy 0.8400"


def test_one_place_says_which_scores_are_lower_is_better():
    """select.sign is what the search, the weight search and the benches negate by; it must agree with
    the ranking's own direction for every metric (a planted flip in either would pick the worst mask)."""
    from merge2mix.select import METRICS, order, sign

    assert {m: sign(m) for m in METRICS} == {"accuracy": 1, "macro_f1": 1, "balanced_accuracy": 1, "loss": -1}
    for m in METRICS:
        (first, ascending), *_ = order(m)
        assert first == m and ascending == (sign(m) < 0)
        assert order(m, calibrated=True)[0] == ("calibrated", sign(m) < 0)

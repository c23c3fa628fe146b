"""The one evaluation function and macro-F1, against hand-computed values and an independent
confusion-matrix implementation (numpy), never against themselves."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from merge2mix.evaluate import evaluate, macro_f1

pytestmark = pytest.mark.usefixtures("isolated_cwd")  # relative-path writes fail, not leak


def f1_by_confusion_matrix(pred, gold, n_classes):
    """F1 per class from a confusion matrix: 2 P R / (P + R), 0 where the class has no true positive."""
    cm = np.zeros((n_classes, n_classes))
    for g, p in zip(gold, pred):
        cm[g, p] += 1
    f1 = []
    for c in range(n_classes):
        tp = cm[c, c]
        precision = tp / cm[:, c].sum() if cm[:, c].sum() else 0.0
        recall = tp / cm[c, :].sum() if cm[c, :].sum() else 0.0
        f1.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return f1


def test_macro_f1_by_hand():
    # class 0: tp 2, fp 0, fn 1 -> 0.8; class 1: tp 1, fp 1, fn 1 -> 0.5; class 2: tp 1, fp 1, fn 0 -> 2/3
    gold = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 2])
    assert macro_f1(pred, gold, 3) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # a class never predicted and never present still counts, as 0 (sklearn's default, zero_division=0)
    assert macro_f1(pred, gold, 4) == pytest.approx((0.8 + 0.5 + 2 / 3) / 4)


def test_macro_f1_does_not_reward_a_one_class_model():
    gold = torch.tensor([0] * 8 + [1] * 2)
    pred = torch.zeros(10, dtype=torch.long)  # accuracy 0.8
    assert macro_f1(pred, gold, 2) == pytest.approx((2 * 8 / (2 * 8 + 2)) / 2)  # 0.444..., not 0.889


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 5).flatmap(lambda k: st.tuples(
    st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=40))))
def test_macro_f1_matches_a_confusion_matrix(case):
    k, pairs = case
    gold, pred = zip(*pairs)
    want = float(np.mean(f1_by_confusion_matrix(pred, gold, k)))
    assert macro_f1(torch.tensor(pred), torch.tensor(gold), k) == pytest.approx(want, abs=1e-12)


class _Split:
    """An encoded split as the families give one: `batches` yields dicts holding `labels`."""

    def __init__(self, logits, labels):
        self.logits, self.labels = logits, labels

    def __len__(self):
        return len(self.labels)

    def batches(self, batch_size, device="cpu", order=None):
        order = torch.arange(len(self)) if order is None else order
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            yield {"logits": self.logits[idx], "labels": self.labels[idx]}


def _forward(model, b):
    """A model that returns fixed logits; the loss is cross-entropy, the batch's mean."""
    return torch.nn.functional.cross_entropy(b["logits"], b["labels"]), b["logits"]


@pytest.mark.parametrize("batch_size", [1, 3, 7, 64])
def test_evaluate_scores_every_example_once_whatever_the_batch(batch_size):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 3, generator=g)
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 0])
    out = evaluate(torch.nn.Identity(), _Split(logits, labels), _forward, batch_size=batch_size)
    pred = logits.argmax(-1)
    assert out["n"] == 7
    assert out["accuracy"] == pytest.approx(float((pred == labels).float().mean()))
    # the loss is the mean over examples (batch means weighted by batch length), not a mean of batch means
    assert out["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), abs=1e-6)
    assert out["macro_f1"] == pytest.approx(float(np.mean(f1_by_confusion_matrix(pred.tolist(), labels.tolist(), 3))))
    recall = [float((pred[labels == c] == c).float().mean()) for c in range(3)]
    assert out["balanced_accuracy"] == pytest.approx(sum(recall) / 3)
    assert "preds" not in out


def test_evaluate_limit_and_kept_predictions():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1, 1, 1, 0])
    out = evaluate(torch.nn.Identity(), _Split(logits, labels), _forward, batch_size=2, limit=3, keep_preds=True)
    assert out["n"] == 3 and out["preds"].tolist() == [0, 1, 0]
    assert out["accuracy"] == pytest.approx(2 / 3)


def test_balanced_accuracy_is_the_mean_recall_of_the_classes_present():
    from merge2mix.evaluate import balanced_accuracy

    gold = torch.tensor([0] * 8 + [1] * 2)
    assert balanced_accuracy(torch.zeros(10, dtype=torch.long), gold) == pytest.approx(0.5)  # one class: 1/2, not 0.8
    # recalls 6/8 and 1/2; a class only predicted (2) does not count
    pred = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2, 1, 0])
    assert balanced_accuracy(pred, gold) == pytest.approx((6 / 8 + 1 / 2) / 2)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40))
def test_balanced_accuracy_matches_a_confusion_matrix(pairs):
    from merge2mix.evaluate import balanced_accuracy

    gold, pred = zip(*pairs)
    cm = np.zeros((4, 4))
    for g, p in pairs:
        cm[g, p] += 1
    present = cm.sum(1) > 0
    want = float(np.mean(np.diag(cm)[present] / cm.sum(1)[present]))
    assert balanced_accuracy(torch.tensor(pred), torch.tensor(gold)) == pytest.approx(want, abs=1e-12)

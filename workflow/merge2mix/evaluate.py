"""The one evaluation function: loss, accuracy and macro-F1 of a model on an encoded split."""

from __future__ import annotations

import torch


@torch.inference_mode()
def evaluate(model, encoded, forward, batch_size: int = 128, device="cpu") -> dict:
    model.eval()
    n_classes = None
    total_loss, preds, golds = 0.0, [], []
    for b in encoded.batches(batch_size, device):
        loss, logits = forward(model, b)
        n_classes = logits.shape[-1]
        total_loss += float(loss) * len(b["labels"])
        preds.append(logits.argmax(-1).cpu())
        golds.append(b["labels"].cpu())
    pred, gold = torch.cat(preds), torch.cat(golds)
    n = len(gold)
    return {
        "accuracy": float((pred == gold).float().mean()),
        "macro_f1": macro_f1(pred, gold, n_classes),
        "loss": total_loss / n,
        "n": n,
    }


def macro_f1(pred: torch.Tensor, gold: torch.Tensor, n_classes: int) -> float:
    """Mean over classes of F1 (a class absent from both pred and gold scores 0, as in sklearn's default)."""
    f1s = []
    for c in range(n_classes):
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / n_classes

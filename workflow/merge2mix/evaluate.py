"""The one evaluation function: loss, accuracy and macro-F1 of a model on an encoded split."""

from __future__ import annotations

import torch


@torch.inference_mode()
def evaluate(model, encoded, forward, batch_size: int = 128, device="cpu", dtype=None, limit=None,
             keep_preds=False) -> dict:
    """`dtype` (torch.bfloat16/float16): run the forward pass under autocast; `limit`: only the first
    that many examples; `keep_preds`: also return the predicted class ids ("preds")."""
    model.eval()
    device = torch.device(device)
    n_classes = None
    total_loss, preds, golds = 0.0, [], []
    order = torch.arange(min(limit, len(encoded)) if limit else len(encoded))
    for b in encoded.batches(batch_size, device, order=order):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, logits = forward(model, b)
        logits = logits.float()
        n_classes = logits.shape[-1]
        total_loss += float(loss) * len(b["labels"])
        preds.append(logits.argmax(-1).cpu())
        golds.append(b["labels"].cpu())
    pred, gold = torch.cat(preds), torch.cat(golds)
    n = len(gold)
    out = {
        "accuracy": float((pred == gold).float().mean()),
        "macro_f1": macro_f1(pred, gold, n_classes),
        "loss": total_loss / n,
        "n": n,
    }
    if keep_preds:
        out["preds"] = pred
    return out


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device) -> str:
    """`auto`: bf16 autocast on a CUDA device that supports it, else fp32 (CPU: exact, and CPU bf16 is slow)."""
    if precision != "auto":
        return precision
    dev = torch.device(device)
    return "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def evaluate_checked(model, encoded, forward, batch_size, device, precision: str = "fp32",
                     check_examples: int = 256, min_agreement: float = 0.99) -> dict:
    """Evaluate in `precision`; for bf16/fp16, first compare its predictions with fp32's on the first
    `check_examples` examples, and score in fp32 instead when they agree on less than `min_agreement`
    of them. The result records the precision used and the agreement (per model: deterministic)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return {**evaluate(model, encoded, forward, batch_size, device), "precision": "fp32"}
    low = evaluate(model, encoded, forward, batch_size, device, DTYPES[precision], check_examples, keep_preds=True)
    ref = evaluate(model, encoded, forward, batch_size, device, None, check_examples, keep_preds=True)
    agreement = float((low["preds"] == ref["preds"]).float().mean())
    check = {"precision_check_n": ref["n"], "precision_agreement": agreement}
    if agreement < min_agreement:
        return {**evaluate(model, encoded, forward, batch_size, device), "precision": "fp32", **check,
                "precision_note": f"{precision} agreed with fp32 on {agreement:.4f} < {min_agreement} of the check sample"}
    return {**evaluate(model, encoded, forward, batch_size, device, DTYPES[precision]), "precision": precision, **check}


def macro_f1(pred: torch.Tensor, gold: torch.Tensor, n_classes: int) -> float:
    """Mean over classes of F1 (a class absent from both pred and gold scores 0, as in sklearn's default)."""
    f1s = []
    for c in range(n_classes):
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / n_classes

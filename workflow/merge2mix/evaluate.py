"""The one evaluation function: loss, accuracy, macro-F1 and balanced accuracy of a model on an encoded split."""

from __future__ import annotations

import torch

from .runtime import log

# Largest eval batch that fit, per device, learned in this process (eval.batch_size: auto).
_FITS: dict[str, int] = {}


@torch.inference_mode()
def evaluate(model, encoded, forward, batch_size: int = 128, device="cpu", dtype=None, limit=None,
             keep_preds=False, per_example=False) -> dict:
    """`dtype` (torch.bfloat16/float16): run the forward pass under autocast; `limit`: only the first
    that many examples; `keep_preds`: also return the predicted class ids ("preds"); `per_example`:
    also return whether each example was right ("correct": 0/1 in split order, for paired intervals)."""
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
        "balanced_accuracy": balanced_accuracy(pred, gold),
        "loss": total_loss / n,
        "n": n,
    }
    if keep_preds:
        out["preds"] = pred
    if per_example:
        out["correct"] = (pred == gold).int().tolist()
    return out


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device) -> str:
    """`auto`: bf16 autocast on a CUDA device that supports it, else fp32 (CPU: exact, and CPU bf16 is slow)."""
    if precision != "auto":
        return precision
    dev = torch.device(device)
    return "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def resolve_batch_size(batch_size, device) -> int:
    """`auto`: 512 on a GPU (halved on out-of-memory, see with_oom_backoff), 128 on CPU."""
    if batch_size != "auto":
        return int(batch_size)
    dev = torch.device(device)
    return _FITS.get(str(dev), 512 if dev.type == "cuda" else 128)


def with_oom_backoff(run, batch_size, device):
    """run(bs) with the resolved batch size; on CUDA out-of-memory, halve it and run again. Returns
    (result, batch size used); with `auto`, later calls in this process start from what fit."""
    bs = resolve_batch_size(batch_size, device)
    while True:
        try:
            out = run(bs)
        except torch.cuda.OutOfMemoryError:
            if bs == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning("eval batch %d ran out of GPU memory; trying %d", bs, bs // 2)
            bs //= 2
            continue
        if batch_size == "auto":
            _FITS[str(torch.device(device))] = bs
        return out, bs


def evaluate_checked(model, encoded, forward, batch_size, device, precision: str = "fp32",
                     check_examples: int = 256, min_agreement: float = 0.99, per_example: bool = False) -> dict:
    """Evaluate in `precision`; for bf16/fp16, first compare its predictions with fp32's on the first
    `check_examples` examples, and score in fp32 instead when they agree on less than `min_agreement`
    of them. The result records the precision used and the agreement (per model: deterministic).
    `batch_size`: an int or `auto`; backs off on GPU out-of-memory and records the size used.
    `per_example`: see evaluate."""
    out, bs = with_oom_backoff(
        lambda b: _checked(model, encoded, forward, b, device, precision, check_examples, min_agreement, per_example),
        batch_size, device)
    return {**out, "batch_size": bs}


def _checked(model, encoded, forward, batch_size, device, precision, check_examples, min_agreement, per_example) -> dict:
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return {**evaluate(model, encoded, forward, batch_size, device, per_example=per_example), "precision": "fp32"}
    low = evaluate(model, encoded, forward, batch_size, device, DTYPES[precision], check_examples, keep_preds=True)
    ref = evaluate(model, encoded, forward, batch_size, device, None, check_examples, keep_preds=True)
    agreement = float((low["preds"] == ref["preds"]).float().mean())
    check = {"precision_check_n": ref["n"], "precision_agreement": agreement}
    if agreement < min_agreement:
        return {**evaluate(model, encoded, forward, batch_size, device, per_example=per_example), "precision": "fp32", **check,
                "precision_note": f"{precision} agreed with fp32 on {agreement:.4f} < {min_agreement} of the check sample"}
    return {**evaluate(model, encoded, forward, batch_size, device, DTYPES[precision], per_example=per_example),
            "precision": precision, **check}


def balanced_accuracy(pred: torch.Tensor, gold: torch.Tensor) -> float:
    """Mean over the classes present in `gold` of their recall (sklearn's balanced_accuracy_score): a
    model that predicts one class for everything scores 1 / (number of classes), whatever the prior."""
    recalls = [int(((pred == c) & (gold == c)).sum()) / int((gold == c).sum()) for c in gold.unique().tolist()]
    return sum(recalls) / len(recalls)


def macro_f1(pred: torch.Tensor, gold: torch.Tensor, n_classes: int) -> float:
    """Mean over classes of F1 (a class absent from both pred and gold scores 0, as in sklearn's default)."""
    f1s = []
    for c in range(n_classes):
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / n_classes

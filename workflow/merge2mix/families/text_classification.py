"""Text classification: a transformers encoder + a classification head over one shared label space.

theta_0 is the pretrained encoder plus a head initialised once from the seed (`init_base`) and
saved; every fine-tune starts from that same theta_0, so all tensors, head included, are merged.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from . import hf


def init_base(source: str, out_dir: str, task: dict, seed: int, revision=None, trust_remote_code=False, arch=None):
    """Load the pretrained model (Hub id or local dir), add a seeded head, save theta_0 to out_dir."""
    labels = task["labels"]
    torch.manual_seed(seed)
    kw = dict(revision=revision, trust_remote_code=trust_remote_code)
    cfg = hf.load(AutoConfig, source, num_labels=len(labels), id2label=dict(enumerate(labels)),
                  label2id={l: i for i, l in enumerate(labels)}, **kw)
    tok = hf.load(AutoTokenizer, source, **kw)
    model = hf.load(AutoModelForSequenceClassification, source, config=cfg, **kw)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return model


def load_processor(model_dir: str):
    return AutoTokenizer.from_pretrained(model_dir)


def load_model(model_dir: str, device="cpu", trust_remote_code: bool = False):
    return hf.load(AutoModelForSequenceClassification, model_dir, trust_remote_code=trust_remote_code).to(device)


def train_mode(model):
    model.train()


def is_merged(name: str, tensor: torch.Tensor) -> bool:
    """Every floating-point tensor is averaged (encoder and head: they share theta_0 and one label space)."""
    return tensor.is_floating_point()


class Encoded:
    """A split tokenised once; batches are padded on demand (dynamic padding)."""

    def __init__(self, tokenizer, texts, labels, label_names, max_length):
        index = {l: i for i, l in enumerate(label_names)}
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.tokenizer = tokenizer
        self.features = [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
        self.labels = torch.tensor([index[l] for l in labels], dtype=torch.long)

    def __len__(self):
        return len(self.labels)

    def batch(self, idx, device="cpu") -> dict:
        b = self.tokenizer.pad([self.features[i] for i in idx], return_tensors="pt")
        b = {k: v.to(device) for k, v in b.items()}
        b["labels"] = self.labels[idx].to(device)
        return b

    def batches(self, batch_size, device="cpu", order=None):
        order = torch.arange(len(self)) if order is None else order
        for s in range(0, len(order), batch_size):
            yield self.batch(order[s : s + batch_size].tolist(), device)


def encode(tokenizer, df, task, heads=None) -> Encoded:
    """One shared label space (task.labels); `heads` is for families with per-dataset heads."""
    return Encoded(tokenizer, df["text"].tolist(), df["label"].tolist(), task["labels"], task["max_length"])


def forward(model, batch):
    """Returns (loss, logits)."""
    out = model(**batch)
    return out.loss, out.logits


@torch.inference_mode()
def mean_embedding(model, encoded: Encoded, batch_size: int = 128, device="cpu") -> torch.Tensor:
    """Mean over examples of the mask-aware mean-pooled last hidden state of the encoder (theta_0)."""
    model.eval()
    total, count = None, 0
    for b in encoded.batches(batch_size, device):
        b.pop("labels")
        h = model(**b, output_hidden_states=True).hidden_states[-1]
        m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        total = pooled.sum(0) if total is None else total + pooled.sum(0)
        count += len(pooled)
    return (total / count).float().cpu()

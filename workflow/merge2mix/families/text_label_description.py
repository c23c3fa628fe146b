"""Text classification across datasets whose label sets differ: a label-description head per dataset.

CLIP's zero-shot head, for a text encoder: a dataset's head is the encoder's (theta_0's) mean-pooled,
normalised embedding of each class name, averaged over task.templates ("This text is about {}."),
built once by the `zero_shot_head` rule and frozen. An example's logits are SCALE * cos(its
mean-pooled embedding, each class embedding of its own dataset), so topic datasets with different
classes can be candidates for one target, and the target is scored with its own classes' head
(theta_0 alone is then a zero-shot classifier). Class names are the labels after label_map, so
`label_map` is where `rec.sport.hockey` becomes `ice hockey`.

The whole encoder is fine-tuned and merged: it is the only trained part (the heads are frozen and
outside the model).
"""

from __future__ import annotations

import torch
from transformers import AutoModel, AutoTokenizer

from . import hf
from . import text_classification as tc
from .heads import class_embedding, load_head, save_head, scored

SCALE = 20.0  # a fixed temperature for cosine logits (as in sentence-transformers' ranking losses)
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def init_base(source: str, out_dir: str, task: dict, seed: int, revision=None, trust_remote_code=False, arch=None):
    """The pretrained encoder (Hub id or local dir) and its tokenizer, saved as theta_0. No head."""
    torch.manual_seed(seed)
    kw = dict(revision=revision, trust_remote_code=trust_remote_code)
    model, tok = hf.load(AutoModel, source, **kw), hf.load(AutoTokenizer, source, **kw)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return model


load_processor = tc.load_processor


def load_model(model_dir: str, device="cpu", trust_remote_code: bool = False):
    return hf.load(AutoModel, model_dir, trust_remote_code=trust_remote_code).to(device)


def train_mode(model):
    model.train()


def is_merged(name: str, tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point()


def _embed(model, batch) -> torch.Tensor:
    """Mask-aware mean pooling of the last hidden state (how MiniLM-style sentence encoders are used)."""
    h = model(**{k: batch[k] for k in TOKEN_KEYS if k in batch}).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1)


@torch.inference_mode()
def build_head(base_dir: str, classes: list[str], templates: list[str], out_path: str, device="cpu",
               max_length: int = 64) -> torch.Tensor:
    model, tok = load_model(base_dir, device).eval(), load_processor(base_dir)
    rows = []
    for c in classes:
        b = tok([t.format(c) for t in templates], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        rows.append(class_embedding(_embed(model, {k: v.to(device) for k, v in b.items()})))
    return save_head(torch.stack(rows), classes, templates, out_path)


class Encoded(tc.Encoded):
    """Tokenised texts, each with its dataset (`source`) and a label index into that dataset's classes."""

    def __init__(self, tokenizer, df, spaces: dict[str, list[str]], max_length: int, heads=None):
        self.names = sorted(spaces)
        index = {n: {l: i for i, l in enumerate(spaces[n])} for n in self.names}
        sources = df["source"].tolist() if "source" in df else [self.names[0]] * len(df)
        super().__init__(tokenizer, df["text"].tolist(), ["?"] * len(df), ["?"], max_length)
        self.labels = torch.tensor([index[s][l] for s, l in zip(sources, df["label"])], dtype=torch.long)
        self.source = torch.tensor([self.names.index(s) for s in sources], dtype=torch.long)
        self.heads = heads

    def batch(self, idx, device="cpu") -> dict:
        b = super().batch(idx, device)
        b["source"] = self.source[idx].to(device)
        if self.heads is not None:
            b["heads"] = self.heads
        return b


def encode(tokenizer, df, task, heads: dict[str, str] | None = None) -> Encoded:
    """Without `heads`: texts only (labels unread), enough for mean_embedding."""
    if not heads:
        unlabelled = df.assign(label="?").drop(columns="source", errors="ignore")
        return Encoded(tokenizer, unlabelled, {"texts": ["?"]}, task["max_length"])
    if "source" not in df and len(heads) != 1:
        raise ValueError(f"a split without a source column needs exactly one head, got {sorted(heads)}")
    loaded = {n: load_head(p) for n, p in heads.items()}
    enc = Encoded(tokenizer, df, {n: c for n, (_, c) in loaded.items()}, task["max_length"])
    enc.heads = [loaded[n][0] for n in enc.names]
    return enc


def forward(model, batch):
    return scored(_embed(model, batch), batch, SCALE)


@torch.inference_mode()
def mean_embedding(model, encoded, batch_size: int = 128, device="cpu") -> torch.Tensor:
    """Mean over examples of theta_0's mean-pooled embedding."""
    model.eval()
    total, count = None, 0
    for b in encoded.batches(batch_size, device):
        e = _embed(model, b).float()
        total = e.sum(0) if total is None else total + e.sum(0)
        count += len(e)
    return (total / count).cpu()

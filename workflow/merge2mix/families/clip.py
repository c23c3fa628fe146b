"""CLIP, as in the paper's vision setting: each dataset has its own label space and a frozen zero-shot head.

- theta_0 is the pretrained CLIPModel (any HF CLIP checkpoint id or local directory), saved once.
- A dataset's head is the text tower's normalised embedding of each class name, averaged over the
  prompt templates (task.templates) and normalised again: a (classes x dim) matrix, built once per
  dataset by the `zero_shot_head` rule and never trained.
- Fine-tuning trains the vision tower (vision_model + visual_projection) only; the text tower and the
  logit scale stay theta_0's. Only the vision tower is merged (`is_merged`); the rest of every
  checkpoint must equal theta_0 (the merge engine checks it).
- Logits = exp(logit_scale) * normalise(image features) @ head.T, each example against its own
  dataset's head: a mixture batch mixes heads, the target is scored with its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPProcessor

from . import hf
from .heads import class_embedding, load_head, save_head, scored
from .images import EncodedImages, sources_of

MERGED_PREFIXES = ("vision_model.", "visual_projection.")


def init_base(source: str, out_dir: str, task: dict, seed: int, revision=None, trust_remote_code=False, arch=None):
    """Load the pretrained CLIP (Hub id or local dir) and its processor; save theta_0 to out_dir."""
    torch.manual_seed(seed)
    kw = dict(revision=revision, trust_remote_code=trust_remote_code)
    model = hf.load(CLIPModel, source, "CLIP", **kw)
    processor = hf.load(CLIPProcessor, source, "CLIP", **kw)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return model


def load_processor(model_dir: str):
    return CLIPProcessor.from_pretrained(model_dir)


def load_model(model_dir: str, device="cpu", trust_remote_code: bool = False):
    model = hf.load(CLIPModel, model_dir, "CLIP", trust_remote_code=trust_remote_code)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(MERGED_PREFIXES))  # the heads are built from the text tower: frozen
    return model.to(device)


def train_mode(model):
    model.train()


def is_merged(name: str, tensor: torch.Tensor) -> bool:
    """Only the vision tower: the text tower (the heads' source) and the logit scale are theta_0's."""
    return name.startswith(MERGED_PREFIXES) and tensor.is_floating_point()


def image_size(processor, task) -> int:
    if task.get("image_size"):
        return task["image_size"]
    crop = processor.image_processor.crop_size  # a dict (transformers 4) or a SizeDict (5)
    return int(getattr(crop, "height", None) or crop["height"])


@torch.inference_mode()
def build_head(base_dir: str, classes: list[str], templates: list[str], out_path: str, device="cpu") -> torch.Tensor:
    """The zero-shot head of one dataset: (classes x dim), rows normalised; saved as safetensors with
    the class names and templates in its metadata."""
    model, proc = load_model(base_dir, device).eval(), load_processor(base_dir)
    rows = []
    for c in classes:
        tok = proc.tokenizer([t.format(c) for t in templates], padding=True, truncation=True, return_tensors="pt")
        rows.append(class_embedding(_features(model.get_text_features(**{k: v.to(device) for k, v in tok.items()}))))
    return save_head(torch.stack(rows), classes, templates, out_path)


def _features(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 5 returns an output object


class Encoded(EncodedImages):
    """Images plus the heads of the datasets they come from (one per entry of `names`)."""

    heads: list[torch.Tensor]

    def batch(self, idx, device="cpu") -> dict:
        return {**super().batch(idx, device), "heads": self.heads}


def encode(processor, df, task, heads: dict[str, str] | None = None) -> EncodedImages:
    """Without `heads`, the images only (labels unread): enough for mean_embedding, not for a loss."""
    ip = processor.image_processor
    if not heads:
        names = sorted(set(df["source"])) if "source" in df else ["images"]
        unlabelled = df.assign(label="?")
        return EncodedImages(unlabelled, {n: ["?"] for n in names}, image_size(processor, task), ip.image_mean,
                             ip.image_std, sources_of(df, names))
    loaded = {n: load_head(p) for n, p in heads.items()}
    enc = Encoded(df, {n: c for n, (_, c) in loaded.items()}, image_size(processor, task), ip.image_mean, ip.image_std,
                  sources_of(df, heads))
    enc.heads = [loaded[n][0] for n in enc.names]
    return enc


def forward(model, batch):
    """(loss, logits): each example against its own dataset's head (families.heads.scored)."""
    feats = _features(model.get_image_features(pixel_values=batch["pixel_values"]))
    return scored(feats, batch, model.logit_scale.exp())


@torch.inference_mode()
def mean_embedding(model, encoded, batch_size: int = 128, device="cpu") -> torch.Tensor:
    """Mean over examples of the normalised image features of theta_0."""
    model.eval()
    total, count = None, 0
    for b in encoded.batches(batch_size, device):
        f = F.normalize(_features(model.get_image_features(pixel_values=b["pixel_values"])).float(), dim=-1)
        total = f.sum(0) if total is None else total + f.sum(0)
        count += len(f)
    return (total / count).cpu()

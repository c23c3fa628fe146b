"""Random models for the benchmarks (and the tests' tiny CLIP): BERT-shaped pools, theta_0 saved like a
Hub checkpoint plus n perturbed copies as fine-tunes, so a benchmark can measure merging without
training anything; and a CLIP of a real shape with a byte-level tokenizer, which needs no files from
the Hub (bench/gpu.py builds a ViT-B/32 one on a device that can reach nothing)."""

from __future__ import annotations

from pathlib import Path

SIZES = {  # BertConfig keywords
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=500),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "base": dict(),
}


def make_pool(root: Path, size: str, n: int) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from merge2mix.checkpoints import save_weights

    if (root / f"ft{n - 1}.safetensors").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2, **SIZES[size]))
    model.save_pretrained(root / "base")
    base = model.state_dict()
    for i in range(n):
        save_weights({k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in base.items()},
                     root / f"ft{i}.safetensors")
    return root


CLIP_SIZES = {  # CLIPConfig text_config / vision_config keywords and projection_dim
    "tiny": (dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64),
             dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=4), 16),
    # openai/clip-vit-base-patch32's shape: the vision tower (87.8 M parameters) is what the clip family merges
    "vit-b32": (dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77),
                dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=32), 512),
}


def make_clip(out_dir: Path, size: str = "tiny", seed: int = 0, image_size: int | None = None) -> Path:
    """A random CLIP (text + vision towers) of CLIP_SIZES[size] with a byte-level CLIP tokenizer (no
    merges: one token per character) and an image processor, saved like a Hub checkpoint.
    `image_size`: 16 for tiny, 224 for vit-b32 unless given."""
    import json

    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    text, vision, proj = CLIP_SIZES[size]
    image_size = image_size or (16 if size == "tiny" else 224)
    out_dir.mkdir(parents=True, exist_ok=True)
    # GPT-2/CLIP's byte -> printable character table: printable bytes map to themselves, the rest to 256+.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    chars = [chr(b) if b in keep else chr(next(extra)) for b in range(256)]
    vocab = {t: i for i, t in enumerate([*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"])}
    (out_dir / "vocab.json").write_text(json.dumps(vocab))
    (out_dir / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer.from_pretrained(out_dir)  # reads vocab.json + merges.txt on transformers 4 and 5
    ip = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(out_dir)
    eos = vocab["<|endoftext|>"]
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos, **text),
        vision_config=dict(image_size=image_size, **vision),
        projection_dim=proj)
    CLIPModel(cfg).save_pretrained(out_dir)
    return out_dir

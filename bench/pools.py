"""Random BERT-shaped pools for the benchmarks: theta_0 saved like a Hub checkpoint plus n perturbed
copies as fine-tunes, so a benchmark can measure merging without training anything."""

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

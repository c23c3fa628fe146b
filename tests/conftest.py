"""Shared fixtures: a tiny random BERT built in-process (saved like a Hub checkpoint) and a config
over the tiny in-repo datasets (tests/fixtures/data, see make_data.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "data"
sys.path.insert(0, str(REPO / "workflow"))

# Snakemake imports every installed executor plugin at start, and the SLURM plugin runs
# `scontrol show config` for its --help text: ~10 s whenever Slurm's client is installed but no
# controller answers (a box where the Slurm test ran before). Workflow tests run with a stub
# `scontrol` that fails at once; the Slurm test uses the real one (os.environ).
_STUB = Path(tempfile.mkdtemp(prefix="merge2mix-stub-"))
(_STUB / "scontrol").write_text("#!/bin/sh\nexit 1\n")
(_STUB / "scontrol").chmod(0o755)
WORKFLOW_ENV = {**os.environ, "PATH": f"{_STUB}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONPATH": str(REPO / "workflow")}

WORDS = sorted({w for f in FIXTURES.iterdir() for w in re.findall(r"[a-z]+", f.read_text())})


def pytest_collection_modifyitems(config, items):
    """Slurm tests last: once Slurm's client is installed, the SLURM executor plugin runs
    `scontrol show config` at every Snakemake start, which waits ~10 s when no controller answers
    (the test tears its cluster down), so every later workflow test would pay that."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)


def build_tiny_bert(out_dir: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide random BERT and a WordPiece tokenizer over the fixtures' words."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    # Built with `tokenizers` directly: the same files a Hub BERT ships (tokenizer.json), on any transformers.
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(out_dir)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(out_dir)  # safetensors
    return out_dir


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def tiny_config(model_dir: Path, results_dir: Path, **overrides) -> dict:
    cols = {"columns": {"text": "review", "label": "stars"}, "label_map": {"neg": "negative", "pos": "positive"}}
    cfg = {
        "run": "tiny",
        "results_dir": str(results_dir),
        "seed": 0,
        "device": "cpu",
        "model": {"name_or_path": str(model_dir)},
        "task": {"type": "text_classification", "labels": ["negative", "positive"], "max_length": 16},
        "target": "phones",
        "datasets": {
            "phones": {"local": {"path": str(FIXTURES / "phones.csv")}, **cols},
            "books": {"local": {"path": str(FIXTURES / "books.csv")}, **cols},
            "food": {"local": {"path": str(FIXTURES / "food.jsonl")}, **cols},
            "films": {"local": {"path": str(FIXTURES / "films.tsv")}, **cols},
        },
        "splits": {"val_fraction": 0.25, "test_fraction": 0.25},
        "train": {"lr": 0.01, "epochs": 8, "batch_size": 8},
        "eval": {"batch_size": 16},
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def tiny_cfg(tiny_model, tmp_path) -> dict:
    return tiny_config(tiny_model, tmp_path / "results")


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the repo's workflow from `workdir` (its own .snakemake/), the way a user would."""
    env = {**(WORKFLOW_ENV if env is None else env), "PYTHONPATH": str(REPO / "workflow")}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)

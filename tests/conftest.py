"""Shared fixtures: a tiny random BERT built in-process (saved like a Hub checkpoint) and a config
over the tiny in-repo datasets (tests/fixtures/data, see make_data.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "data"
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "bench"))  # pools.make_clip (the tiny CLIP), provenance.with_stub_scontrol

from provenance import with_stub_scontrol  # noqa: E402

# Workflow tests run with a stub `scontrol` that fails at once (Snakemake's SLURM plugin otherwise
# waits ~10 s on it wherever Slurm's client is installed without a controller: a box where the Slurm
# test ran before); the Slurm test uses the real one (os.environ).
WORKFLOW_ENV = with_stub_scontrol({**os.environ, "PYTHONPATH": str(REPO / "workflow")})

WORDS = sorted({w for f in FIXTURES.iterdir() for w in re.findall(r"[a-z]+", f.read_text())})


def pytest_collection_modifyitems(config, items):
    """The longest files first. `make test` runs two pytest workers, each taking a test file at a
    time in collection order (--dist loadfile --no-loadscope-reorder). The Slurm test is the longest
    and spends most of its time waiting on the scheduler, so one worker starts it at once while the
    other takes test_workflow.py (its tiny_run fixture is a whole run), then both share the short
    files. (Workflow tests use the stub scontrol above, so a Slurm client left behind costs them nothing.)"""
    first = {"test_slurm.py": 0, "test_workflow.py": 1}
    items.sort(key=lambda item: first.get(item.path.name, 2))


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


def build_tiny_clip(out_dir: Path, seed: int = 0, image_size: int = 16) -> Path:
    """A 2-layer, 32-wide random CLIP with a byte-level tokenizer and an image processor, saved like a
    Hub checkpoint (bench/pools.py's make_clip, which bench/gpu.py also uses at ViT-B/32's shape)."""
    from pools import make_clip

    return make_clip(out_dir, "tiny", seed, image_size)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


IMAGES = FIXTURES.parent / "images"


def clip_config(model_dir: Path, results_dir: Path, **overrides) -> dict:
    """Three tiny image datasets, each with its own classes, in three formats (tests/fixtures/images)."""
    cfg = {
        "run": "clip",
        "results_dir": str(results_dir),
        "seed": 0,
        "device": "cpu",
        "model": {"name_or_path": str(model_dir)},
        "task": {"type": "clip", "templates": ["a photo of a {}.", "a {} pattern."]},
        "target": "shapes",
        "datasets": {
            "shapes": {"local": {"path": str(IMAGES / "shapes")}},
            "stripes": {"local": {"path": str(IMAGES / "stripes.npz")}, "classes": ["horizontal", "vertical"],
                        "templates": ["{} stripes"]},
            "blobs": {"local": {"path": str(IMAGES / "blobs-images.idx.gz"),
                                "labels_path": str(IMAGES / "blobs-labels.idx.gz")}, "classes": ["left", "right"]},
        },
        "splits": {"val_fraction": 0.25, "test_fraction": 0.25},
        "train": {"lr": 0.001, "epochs": 2, "batch_size": 8},
        "baselines": {"similarity": False, "random_seeds": 0},  # their clip path is unit-tested
        "eval": {"batch_size": 16},
    }
    cfg.update(overrides)
    return cfg


INSTRUCTIONS = FIXTURES.parent / "instructions"


def build_tiny_llama(out_dir: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide random Llama with a word-level tokenizer over the instruction fixtures'
    words (no chat template: the family's plain "User:/Assistant:" layout is used)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    words = sorted({w for f in INSTRUCTIONS.iterdir() for w in re.findall(r"[a-z]+", f.read_text())})
    vocab = ["<pad>", "<unk>", "</s>", ":", "User", "Assistant", *words]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>").save_pretrained(out_dir)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, eos_token_id=2, bos_token_id=2,
                      tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def llama_config(model_dir: Path, results_dir: Path, **overrides) -> dict:
    """Three instruction datasets in three layouts and a multiple-choice target (tests/fixtures/instructions)."""
    cfg = {
        "run": "llm",
        "results_dir": str(results_dir),
        "seed": 0,
        "device": "cpu",
        "model": {"name_or_path": str(model_dir)},
        "task": {"type": "causal_lm", "metric": "choice_accuracy", "max_length": 32,
                 "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
        "target": "target",
        "datasets": {
            "target": {"local": {"path": str(INSTRUCTIONS / "target.jsonl")}, "columns": {"prompt": "question"}},
            "add": {"local": {"path": str(INSTRUCTIONS / "add.jsonl")}},
            "sub": {"local": {"path": str(INSTRUCTIONS / "sub.jsonl")}},
            "succ": {"local": {"path": str(INSTRUCTIONS / "succ.csv")}, "columns": {"prompt": "question", "response": "answer"}},
        },
        "splits": {"val_fraction": 0.25, "test_fraction": 0.25},
        "train": {"lr": 0.01, "epochs": 2, "batch_size": 8},
        "baselines": {"similarity": False, "random_seeds": 0},
        "eval": {"batch_size": 16},
    }
    cfg.update(overrides)
    return cfg


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
        # the trained head, the average and accuracy, as the tests were written for (a config without
        # these keys gets the recommended surrogate: test_config)
        "task": {"type": "text_classification", "labels": ["negative", "positive"], "max_length": 16, "head": "trained"},
        "merge": {"method": "average"},
        "select": {"metric": "accuracy"},
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
    # an override of select or merge keeps the tests' ranking metric and operator unless it names its own
    cfg["select"] = {"metric": "accuracy", **cfg["select"]}
    cfg["merge"] = {"method": "average", **cfg["merge"]}
    return cfg


@pytest.fixture
def tiny_cfg(tiny_model, tmp_path) -> dict:
    return tiny_config(tiny_model, tmp_path / "results")


@pytest.fixture
def isolated_cwd(tmp_path, monkeypatch):
    """Run in an empty folder of the test's own: code that writes to a relative path by mistake (a
    mutant planted by `make mutate`, say) fails the test instead of leaving files that the next test
    in the same folder would find."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the repo's workflow from `workdir` (its own .snakemake/), the way a user would."""
    env = {**(WORKFLOW_ENV if env is None else env), "PYTHONPATH": str(REPO / "workflow")}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)

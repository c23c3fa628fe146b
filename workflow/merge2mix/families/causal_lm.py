"""Causal language models on instruction data (the paper's language setting: Llama-3-8B-Instruct).

- theta_0 is any AutoModelForCausalLM (Hub id or local directory) with its tokenizer.
- Examples are chats: the prompt messages are rendered with the tokenizer's chat template (a plain
  "User:/Assistant:" layout when it has none), the response follows, and the loss is on the response
  tokens only.
- Full fine-tuning trains every weight. With `task.lora`, PEFT LoRA adapters are trained instead, and
  the saved fine-tune is theta_0 with the adapter *materialised*: W + (alpha/r) * B @ A for every
  adapted weight. Averaging those files therefore averages the materialised deltas,
  theta_0 + mean_i (alpha/r) B_i A_i, which is the merge the method means; averaging A and B
  separately would give (mean B)(mean A), a different model. The merge engine streams the files tensor
  by tensor (merge.mode stream or auto), so N copies of an 8B model never sit in memory together.
- Target scoring (task.metric): choice_accuracy (each choice's summed log-likelihood given the prompt;
  the highest wins), exact_match (greedy decoding of up to task.max_new_tokens, compared after
  whitespace/case folding), response_loss (mean response-token loss; `accuracy` is then the
  next-token accuracy on the response). `loss` is always the mean response-token loss.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..errors import CheckpointError, first_line
from . import hf

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def init_base(source: str, out_dir: str, task: dict, seed: int, revision=None, trust_remote_code=False, arch=None):
    torch.manual_seed(seed)
    kw = dict(revision=revision, trust_remote_code=trust_remote_code)
    model = hf.load(AutoModelForCausalLM, source, "a causal LM", **_dtype_kw(task.get("torch_dtype", "float32")), **kw)
    tok = hf.load(AutoTokenizer, source, **kw)
    model.save_pretrained(out_dir, max_shard_size="10000GB")  # one model.safetensors: theta_0 is read by name
    tok.save_pretrained(out_dir)
    return model


def _dtype_kw(name: str) -> dict:
    import transformers

    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"  # renamed in 5
    return {key: DTYPES[name]}


def load_processor(model_dir: str):
    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_dir: str, device="cpu", trust_remote_code: bool = False):
    return hf.load(AutoModelForCausalLM, model_dir, trust_remote_code=trust_remote_code).to(device)


def for_training(model, task):
    """LoRA (task.lora): wrap in PEFT adapters; the base weights are frozen."""
    if not task.get("lora"):
        return model
    from peft import LoraConfig, get_peft_model

    lo = task["lora"]
    cfg = LoraConfig(r=lo["r"], lora_alpha=lo["alpha"], lora_dropout=lo["dropout"],
                     target_modules=list(lo["target_modules"]), task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, cfg)
    except ValueError as e:
        raise CheckpointError(f"config: task.lora.target_modules: {first_line(e)}") from None


def trained_state(model) -> dict:
    """The state dict to save: for LoRA, theta_0 with every adapter materialised into its weight."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model.state_dict()


def train_mode(model):
    model.train()


def is_merged(name: str, tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point()


def render_prompt(tokenizer, messages: list[dict]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    turns = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return turns + "Assistant: "


class Encoded:
    """Prompt and response token ids per example (prompt truncated from the left to fit max_length)."""

    def __init__(self, tokenizer, df, max_length: int):
        self.tokenizer = tokenizer
        self.prompts, self.responses, self.choices, self.answers = [], [], [], []
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        for p, r, c, lab in zip(df["prompt"], df["response"], df["choices"], df["label"]):
            ids = tokenizer(render_prompt(tokenizer, json.loads(p)), add_special_tokens=False)["input_ids"]
            resp = tokenizer(r, add_special_tokens=False)["input_ids"] + eos
            self.responses.append(resp[: max_length // 2])
            self.prompts.append(ids[-(max_length - len(self.responses[-1])):])
            opts = json.loads(c) if c else []
            self.choices.append([tokenizer(o, add_special_tokens=False)["input_ids"] for o in opts])
            self.answers.append(int(lab) if lab != "" else -1)

    def __len__(self):
        return len(self.prompts)

    def pack(self, pairs, device):
        """(prompt ids, continuation ids) pairs -> right-padded input_ids, attention_mask, labels
        (-100 everywhere but the continuation)."""
        width = max(len(p) + len(c) for p, c in pairs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(pairs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        labels = torch.full((len(pairs), width), -100, dtype=torch.long)
        for i, (p, c) in enumerate(pairs):
            seq = p + c
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            labels[i, len(p) : len(seq)] = torch.tensor(c)
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}

    def batch(self, idx, device="cpu") -> dict:
        return self.pack([(self.prompts[i], self.responses[i]) for i in idx], device)

    def batches(self, batch_size, device="cpu", order=None):
        order = torch.arange(len(self)) if order is None else order
        for s in range(0, len(order), batch_size):
            yield self.batch(order[s : s + batch_size].tolist(), device)


def encode(tokenizer, df, task, heads=None) -> Encoded:
    return Encoded(tokenizer, df, task["max_length"])


def _token_losses(model, b):
    """Per-example sum of continuation-token losses, continuation token counts, and correct-token counts."""
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
    gold = b["labels"][:, 1:]
    keep = gold != -100
    tok = F.cross_entropy(logits.transpose(1, 2), gold.clamp(min=0), reduction="none") * keep
    right = (logits.argmax(-1) == gold) & keep
    return tok.sum(1), keep.sum(1), right.sum(1)


def forward(model, batch):
    """(loss, logits): the mean response-token loss (what training minimises)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return out.loss, out.logits


@torch.inference_mode()
def evaluate(model, encoded: Encoded, batch_size: int, device, task: dict) -> dict:
    """Target metrics by task.metric (see the module docstring); the same keys as evaluate.evaluate."""
    model.eval()
    metric = task.get("metric", "response_loss")
    n = len(encoded)
    loss_sum, tokens, right = 0.0, 0, 0
    for s in range(0, n, batch_size):
        b = encoded.batch(list(range(s, min(n, s + batch_size))), device)
        l, k, r = _token_losses(model, b)
        loss_sum, tokens, right = loss_sum + float(l.sum()), tokens + int(k.sum()), right + int(r.sum())
    out = {"loss": loss_sum / max(1, tokens), "n": n, "metric": metric}
    if metric == "response_loss":
        out["accuracy"] = out["macro_f1"] = out["balanced_accuracy"] = right / max(1, tokens)
        return out
    if metric == "choice_accuracy":
        preds = []
        for i in range(n):
            if not encoded.choices[i]:
                raise CheckpointError("task.metric choice_accuracy: the target has examples without choices")
            pairs = [(encoded.prompts[i], c) for c in encoded.choices[i]]
            l, _, _ = _token_losses(model, encoded.pack(pairs, device))
            preds.append(int(torch.argmin(l)))  # least summed loss = highest log-likelihood
        gold = encoded.answers
        out["accuracy"] = sum(p == g for p, g in zip(preds, gold)) / n
        k = max(len(c) for c in encoded.choices)
        from ..evaluate import balanced_accuracy, macro_f1

        out["macro_f1"] = macro_f1(torch.tensor(preds), torch.tensor(gold), k)
        out["balanced_accuracy"] = balanced_accuracy(torch.tensor(preds), torch.tensor(gold))
        return out
    hits = 0  # exact_match: greedy, one example at a time (no padding effects)
    tok = encoded.tokenizer
    for i in range(n):
        ids = torch.tensor([encoded.prompts[i]], device=device)
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=task.get("max_new_tokens", 32),
                             do_sample=False, pad_token_id=tok.pad_token_id)
        text = tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
        want = tok.decode(encoded.responses[i], skip_special_tokens=True)
        hits += " ".join(text.lower().split()) == " ".join(want.lower().split())
    out["accuracy"] = out["macro_f1"] = out["balanced_accuracy"] = hits / n
    return out


@torch.inference_mode()
def mean_embedding(model, encoded: Encoded, batch_size: int = 128, device="cpu") -> torch.Tensor:
    """Mean over examples of the mean last hidden state over the prompt tokens of theta_0."""
    model.eval()
    total, count = None, 0
    for s in range(0, len(encoded), batch_size):
        idx = list(range(s, min(len(encoded), s + batch_size)))
        b = encoded.pack([(encoded.prompts[i], []) for i in idx], device)
        h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True).hidden_states[-1]
        m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
        e = ((h * m).sum(1) / m.sum(1).clamp(min=1)).float()
        total = e.sum(0) if total is None else total + e.sum(0)
        count += len(e)
    return (total / count).cpu()

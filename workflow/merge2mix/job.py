"""The job context: what a torch job needs to know beyond its own inputs and outputs, as one value.

A rule's script (or an inline `run:` job) builds it once from the rule's params, threads and head
inputs (merge2mix.jobs.context); package functions take it instead of a loose bundle of keyword
arguments. Light: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Job:
    base_dir: str  # theta_0's folder: model.safetensors, config, tokenizer or processor
    task: dict  # the validated config's task block (type, max_length, heads' templates, ...)
    hp: dict | None = None  # the config's train block: fine-tuning hyper-parameters
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    batch_size: int = 32  # evaluation batch size (halved on out-of-memory)
    precision: dict | None = None  # {"precision", "check_examples", "min_agreement"}: evaluate.evaluate_checked
    checkpoint_every: int | None = None  # fine-tunes save a resumable state every that many steps
    heads: dict[str, str] | None = None  # dataset -> zero-shot head file (families with per-dataset heads)

    def only(self, names) -> Job:
        """This context with the heads of `names` only: a fine-tune reads its members' heads, a score
        exactly one, the scored split's."""
        kept = {n: self.heads[n] for n in sorted(names) if n in (self.heads or {})}
        return replace(self, heads=kept or None)


def from_config(cfg: dict, base_dir: str, threads: int = 1, heads: dict[str, str] | None = None) -> Job:
    """A Job from a validated config, for code outside the workflow (bench/, notebooks): fp32 scoring,
    as the mixture fine-tunes' scores are."""
    return Job(base_dir=base_dir, task=cfg["task"], hp=cfg["train"], seed=cfg["seed"], device=cfg["device"],
               threads=threads, batch_size=cfg["eval"]["batch_size"], checkpoint_every=cfg["checkpoint_every_steps"],
               heads=heads)

"""The task types: one registry that the config check, the config schema and the model families all
read. Light (no torch): it is read at parse time.

A type names its family module (merge2mix.families.<family>: how to build, encode, train and score
a model) and declares what the rest of the code would otherwise have to probe for.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class TaskType:
    family: str  # the module under merge2mix.families
    modality: str  # what a dataset's examples are: text | image | instruction
    per_dataset_heads: bool = False  # each dataset has its own label space and a frozen head (rule zero_shot_head)
    templates: tuple[str, ...] = ()  # the heads' default prompt templates (task.templates)
    generative: bool = False  # scored by its family's own evaluate (task.metric), not by logits over labels
    adapters: bool = False  # may train PEFT adapters (task.lora): the family's for_training / trained_state


TASK_TYPES = {
    "text_classification": TaskType("text_classification", "text"),
    "image_classification": TaskType("image_classification", "image"),
    "clip": TaskType("clip", "image", per_dataset_heads=True, templates=("a photo of a {}.",)),
    "text_label_description": TaskType("text_label_description", "text", per_dataset_heads=True,
                                       templates=("This text is about {}.",)),
    "causal_lm": TaskType("causal_lm", "instruction", generative=True, adapters=True),
}


def get(name: str) -> TaskType:
    if name not in TASK_TYPES:
        raise ConfigError(f"config: task.type: '{name}' unknown (one of {', '.join(TASK_TYPES)})")
    return TASK_TYPES[name]

"""Model families: how to build a model + head, turn a batch into loss / predictions, what is merged.

Which task type uses which family, and what a family offers beyond the common functions, is declared
in merge2mix.task_types. Each family module provides: init_base, load_processor, load_model,
train_mode, is_merged, encode(processor, df, task, heads), forward(model, batch) -> (loss, logits),
mean_embedding; with per_dataset_heads also build_head; with adapters also for_training /
trained_state (LoRA); generative ones their own evaluate (task.metric).
"""

import importlib

from .. import task_types


def get(task_type: str):
    """The family module of a task type, imported on first use (clip and image_classification pull in
    modules the text default never needs)."""
    return importlib.import_module(f"{__name__}.{task_types.get(task_type).family}")

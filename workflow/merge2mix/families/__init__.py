"""Model families: how to build a model + head, turn a batch into loss / predictions, what is merged.

Each family module provides: PER_DATASET_HEADS, init_base, load_processor, load_model, train_mode,
is_merged, encode(processor, df, task, heads), forward(model, batch) -> (loss, logits), mean_embedding;
families with per-dataset heads (clip, text_label_description) also build_head; causal_lm also
for_training / trained_state (LoRA) and its own evaluate (generative metrics).
"""

import importlib

from ..errors import ConfigError

# Imported on first use: clip and image_classification pull in modules the text default never needs.
FAMILIES = {"text_classification": "text_classification", "image_classification": "image_classification", "clip": "clip",
            "text_label_description": "text_label_description", "causal_lm": "causal_lm"}


def get(task_type: str):
    if task_type not in FAMILIES:
        raise ConfigError(f"config: task.type: '{task_type}' unknown (one of {', '.join(FAMILIES)})")
    return importlib.import_module(f"{__name__}.{FAMILIES[task_type]}")

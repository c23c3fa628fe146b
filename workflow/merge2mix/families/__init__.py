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
    module = importlib.import_module(f"{__name__}.{task_types.get(task_type).family}")
    if not getattr(module.init_base, "applies_umask", False):
        module.init_base = _with_umask(module.init_base)
    return module


def _with_umask(init_base):
    """init_base, then theta_0's folder given the umask's modes: save_pretrained writes its safetensors
    0600, which a colleague in the group could not read (io.apply_umask). Here rather than in the
    init_model script: a change to a script's text reruns that rule, and with it every run's work."""
    import functools

    from ..io import apply_umask

    @functools.wraps(init_base)
    def wrapped(source, out_dir, *args, **kwargs):
        out = init_base(source, out_dir, *args, **kwargs)
        apply_umask(out_dir)
        return out

    wrapped.applies_umask = True
    return wrapped

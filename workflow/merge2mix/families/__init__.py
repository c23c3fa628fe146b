"""Model families: how to build a model + head, turn a batch into loss / predictions, what is merged."""

from ..errors import ConfigError
from . import text_classification

FAMILIES = {"text_classification": text_classification}


def get(task_type: str):
    if task_type not in FAMILIES:
        raise ConfigError(f"config: task.type: '{task_type}' unknown (one of {', '.join(FAMILIES)})")
    return FAMILIES[task_type]

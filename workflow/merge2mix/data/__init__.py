"""Data: sources (package / hf / local) -> a text/label DataFrame -> seeded train/val/test splits."""

from .prepare import load_split, prepare_dataset, read_source

__all__ = ["load_split", "prepare_dataset", "read_source"]

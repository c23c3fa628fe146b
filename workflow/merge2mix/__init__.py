"""merge2mix: pick the fine-tuning dataset mixture for a target task by merging per-dataset fine-tunes.

Importing this package is light (no torch): the Snakefile imports `merge2mix.config` and
`merge2mix.masks` while it builds the DAG. Heavy modules import torch themselves.
"""

__version__ = "0.1.0"

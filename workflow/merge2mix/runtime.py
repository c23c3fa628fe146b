"""Process set-up for a compute job: threads, device, seeds, quiet library logging."""

from __future__ import annotations

import logging
import os
import random

log = logging.getLogger("merge2mix")


def setup(threads: int = 1, device: str = "auto", seed: int | None = None):
    """Set torch threads to the job's Snakemake `threads` (oversubscribing 2 cores is very slow),
    pick the device, seed every RNG. Returns a torch.device."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(max(1, int(threads)))
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from .errors import ConfigError

        raise ConfigError("config: device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(device)


def job_logging(log_path: str | None) -> None:
    """Send merge2mix's log lines to the rule's log: file (and stderr)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    for h in handlers:
        h.setFormatter(fmt)
    log.handlers[:] = handlers
    log.setLevel(logging.INFO)
    log.propagate = False

"""Entry points for rule code: route log lines to the rule's log: file, call one package function.

`script:` jobs (own process): a Merge2MixError becomes one line on stderr and exit 1 (a traceback
would bury the culprit). `run:` jobs (possibly in Snakemake's main process under --force-use-threads):
log lines of this thread go to the job's log file, errors propagate to Snakemake, and jobs sharing
the process run one at a time (runtime.WARM).
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from . import runtime
from .errors import Merge2MixError
from .job import Job


def context(params, threads: int, inp) -> Job:
    """The job context (merge2mix.job.Job) from a rule's params, threads and inputs: every input named
    head_<dataset> (common.smk's heads_of) is a zero-shot head. Params a rule does not set keep Job's
    defaults, so rules list only what their jobs read (a changed param reruns a job)."""
    given = {f: params.get(f) for f in ("hp", "seed", "device", "batch_size", "precision", "checkpoint_every")}
    heads = {k[len("head_"):]: inp[k] for k in inp.keys() if k.startswith("head_")}
    return Job(base_dir=params.base_dir, task=params.task, threads=threads, heads=heads or None,
               **{f: v for f, v in given.items() if v is not None})


def run(fn, log_path=None, **kwargs):
    runtime.job_logging(log_path)
    runtime.claim_gpu()  # before torch touches CUDA
    try:
        return fn(**kwargs)
    except Merge2MixError as e:
        runtime.log.error("%s", e)
        print(f"merge2mix: error: {e}", file=sys.stderr)
        sys.exit(1)


def run_inline(fn, log_path=None, **kwargs):
    handler = None
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handler = logging.FileHandler(log_path, mode="w")
        me = threading.get_ident()
        handler.addFilter(lambda record: record.thread == me)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        runtime.log.addHandler(handler)
        runtime.log.setLevel(logging.INFO)
    runtime.log.info("%s in process %d", getattr(fn, "__name__", "job"), os.getpid())  # warm or not: the log says
    try:
        with runtime.WARM:  # one torch job at a time in a shared process (see runtime.WARM)
            return fn(**kwargs)
    except Merge2MixError as e:
        runtime.log.error("%s", e)
        raise
    finally:
        if handler:
            runtime.log.removeHandler(handler)
            handler.close()

"""Entry points for rule code: route log lines to the rule's log: file, call one package function.

`script:` jobs (own process): a Merge2MixError becomes one line on stderr and exit 1 (a traceback
would bury the culprit). `run:` jobs (possibly in Snakemake's main process under --force-use-threads):
log lines of this thread go to the job's log file, errors propagate to Snakemake, and jobs sharing
the process run one at a time (runtime.WARM). `spawn`: a `run:` job's function in a fresh process of
its own (`python -m merge2mix.jobs`), as a `script:` job would be, for jobs that should run side by
side (training jobs on a box with cores to spare).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import subprocess
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
    _say_process(getattr(fn, "__name__", "job"))  # warm or not: the log says
    try:
        with runtime.WARM:  # one torch job at a time in a shared process (see runtime.WARM)
            deterministic = _deterministic()
            try:
                return fn(**kwargs)
            finally:  # a CPU fine-tune turns torch's deterministic mode on: process-wide, so put it back
                if _deterministic() != deterministic:
                    sys.modules["torch"].use_deterministic_algorithms(deterministic)
    except Merge2MixError as e:
        runtime.log.error("%s", e)
        raise
    finally:
        if handler:
            runtime.log.removeHandler(handler)
            handler.close()


def _say_process(name: str) -> None:
    """The job log's line naming the process a job runs in and its Python threads (the tests read it:
    in Snakemake's process the count must not grow with the jobs run, see runtime.one_wake_up_timer)."""
    runtime.log.info("%s in process %d (%d Python threads)", name, os.getpid(), threading.active_count())


def _deterministic() -> bool:
    torch = sys.modules.get("torch")  # not imported yet: the default (off)
    return torch.are_deterministic_algorithms_enabled() if torch else False


# Threads a script: job's process gets from Snakemake (its `threads:`), for the libraries that read them.
THREAD_VARS = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def spawn(fn, log_path, threads: int, **kwargs) -> None:
    """run(fn, log_path, **kwargs) in a fresh Python process with `threads` threads, as a `script:` job
    runs (its progress and log lines pass through); its arguments travel as JSON on stdin (a Job as its
    fields). Raises Merge2MixError with the child's one-line error (from its log) when it fails."""
    spec = {"fn": f"{fn.__module__}:{fn.__qualname__}", "log": log_path,
            "kwargs": {k: {"__job__": dataclasses.asdict(v)} if isinstance(v, Job) else v for k, v in kwargs.items()}}
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # workflow/: merge2mix importable
    env = {**os.environ, **{v: str(threads) for v in THREAD_VARS},
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-m", "merge2mix.jobs"], input=json.dumps(spec), text=True, env=env)
    if r.returncode:  # the child logged its one-line reason (run): say it again here
        said = []
        if log_path and os.path.exists(log_path):
            with open(log_path) as fh:
                said = [line.split(" ERROR ", 1)[1].strip() for line in fh if " ERROR " in line]
        raise Merge2MixError(said[-1] if said else f"{fn.__name__} failed in its own process (exit {r.returncode})")


def _main() -> None:
    """The child of spawn: read its spec from stdin and run the function."""
    spec = json.load(sys.stdin)
    module, name = spec["fn"].split(":")
    kwargs = {k: Job(**v["__job__"]) if isinstance(v, dict) and "__job__" in v else v for k, v in spec["kwargs"].items()}
    fn = getattr(importlib.import_module(module), name)

    def logged(**kw):  # the log names the process, as a warm job's does (run sets up the log first)
        _say_process(name)
        return fn(**kw)

    run(logged, spec["log"], **kwargs)


if __name__ == "__main__":
    _main()

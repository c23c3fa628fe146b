"""Process set-up for a compute job: threads, device, seeds, quiet library logging."""

from __future__ import annotations

import fcntl
import logging
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time

log = logging.getLogger("merge2mix")
# Jobs that share a process (run: jobs under --force-use-threads) take turns: torch's thread count
# and its RNG are process-wide, so a job starting beside another would change the other's thread
# count mid-computation (and with it how its sums are split, i.e. its last bits).
WARM = threading.RLock()
# Set on Ctrl-C in Snakemake's process. A training job there is a thread Snakemake waits for on
# Ctrl-C (it cannot kill a thread as it kills a job's process), so the fine-tune checks this at every
# step and stops, instead of training on to its end first.
STOP = threading.Event()


def stop_on_interrupt() -> None:
    """Chain a SIGINT handler that sets STOP, then does what was there before (Python's: raise
    KeyboardInterrupt, which Snakemake handles). From the main thread, at each parse: a workflow run
    started again in the same process (Snakemake's API, a notebook) starts un-stopped."""
    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        return
    before = signal.getsignal(signal.SIGINT)
    if getattr(before, "sets_stop", False):
        return

    def interrupted(signum, frame):
        STOP.set()
        if callable(before):
            return before(signum, frame)
        if before != signal.SIG_IGN:
            raise KeyboardInterrupt

    interrupted.sets_stop = True
    signal.signal(signal.SIGINT, interrupted)


def one_wake_up_timer() -> bool:
    """Keep Snakemake's scheduler to one pending wake-up timer (Snakemake 9's JobScheduler). Each of
    its scheduling passes starts a new `threading.Timer(1 s)` (the --max-jobs-per-timespan limiter,
    on by default) whose firing runs another pass, which starts another timer; every finished job adds
    a pass, so after k jobs k timers fire each second and the main thread runs k passes a second,
    each resetting every ready job's params and resources. Measured here (bench/results/
    scheduler-timers): 2,200 timer threads and ~6 s of main-thread CPU in a 63-mask phase, taking
    cores from a 2-thread forward pass. A pass needs only one timer due within its delay: a pending
    one due as soon does the job. Daemon timers, so a pending one does not hold the process's exit
    for up to a second. Upstream: snakemake/snakemake PR 3744. Returns whether the patch is on."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    original = getattr(JobScheduler, "_schedule_reevalutation", None)
    if original is None:  # renamed or gone upstream: nothing to patch
        return False
    if getattr(original, "one_timer", False):
        return True

    def _schedule_reevalutation(self, delay) -> None:
        now = time.monotonic()
        pending = getattr(self, "_merge2mix_timer", None)
        # Pending = not yet due (a timer never fires before its due time). Not is_alive(): a timer
        # that has just woken the scheduler is alive until its thread ends, and skipping on it could
        # leave no wake-up at all.
        if pending is not None and now < pending.due:
            if pending.due <= now + delay:
                return
            pending.cancel()  # a sooner wake-up is asked for; the pass it runs asks again if needed
        due = now + delay
        timer = threading.Timer(delay, self._open_jobs.release)
        timer.daemon, timer.due = True, due
        timer.start()
        self._merge2mix_timer = timer

    _schedule_reevalutation.one_timer = True
    JobScheduler._schedule_reevalutation = _schedule_reevalutation
    return True


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


_GPU_LOCK = None  # the open slot file: the claim lasts as long as the process


def gpu_count() -> int:
    """GPUs on this machine, without initialising CUDA (MERGE2MIX_FAKE_GPUS overrides, for tests)."""
    if "MERGE2MIX_FAKE_GPUS" in os.environ:
        return int(os.environ["MERGE2MIX_FAKE_GPUS"])
    if not shutil.which("nvidia-smi"):
        return 0
    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in r.stdout.splitlines()) if r.returncode == 0 else 0


def claim_gpu(poll_s: float = 0.5) -> int | None:
    """Give this job a GPU of its own. Snakemake counts `gpu=1` against --resources but never says
    which device, so concurrent jobs would all land on GPU 0: each job takes the first free slot
    lock (flock, released when the process ends) and sets CUDA_VISIBLE_DEVICES. Not done where the
    device is already chosen (CUDA_VISIBLE_DEVICES set, e.g. by SLURM) or with fewer than 2 GPUs."""
    global _GPU_LOCK
    if "CUDA_VISIBLE_DEVICES" in os.environ or "SLURM_JOB_ID" in os.environ:
        return None
    n = gpu_count()
    if n < 2:
        return None
    slots = os.path.join(os.environ.get("MERGE2MIX_GPU_LOCKS", tempfile.gettempdir()), "merge2mix-gpu-slots")
    os.makedirs(slots, exist_ok=True)
    while True:
        for i in range(n):
            fh = open(os.path.join(slots, f"{i}.lock"), "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            _GPU_LOCK = fh
            os.environ["CUDA_VISIBLE_DEVICES"] = str(i)
            log.info("GPU slot %d of %d (CUDA_VISIBLE_DEVICES=%d)", i, n, i)
            return i
        time.sleep(poll_s)  # more GPU jobs than GPUs: --resources gpu=<n> prevents this


def failpoint(name: str) -> None:
    """Fault injection for the recovery tests; does nothing unless MERGE2MIX_FAILPOINTS names `name`.

    MERGE2MIX_FAILPOINTS="point=action,...". `kill`: SIGKILL this process's whole process group --
    under a local Snakemake that is the workflow and every job, as a preempted or crashed node would
    leave it. `fail-once`: raise the first time only; a marker file in MERGE2MIX_FAILPOINT_DIR (the
    working directory by default) remembers it across processes and cluster jobs, so a retry passes.
    """
    spec = os.environ.get("MERGE2MIX_FAILPOINTS")
    if not spec:
        return
    action = dict(item.split("=", 1) for item in spec.split(",") if "=" in item).get(name)
    if action == "kill":
        log.warning("failpoint %s: killing process group %d", name, os.getpgid(0))
        os.killpg(os.getpgid(0), signal.SIGKILL)
    elif action == "fail-once":
        marker = os.path.join(os.environ.get("MERGE2MIX_FAILPOINT_DIR", "."), f"failpoint-{name}")
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError(f"failpoint {name}: injected failure (first attempt only)")

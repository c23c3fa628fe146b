"""The job context (merge2mix.job.Job) and how a rule's params, threads and inputs become one."""

import re

from snakemake.iocontainers import InputFiles, Params

from merge2mix import jobs
from merge2mix.job import Job, from_config

TASK = {"type": "text_label_description", "max_length": 16}


def _named(cls, **items):
    """What Snakemake hands a job: its params and inputs as named lists."""
    return cls(fromdict=items)


def test_context_reads_what_the_rule_sets_and_keeps_defaults_for_the_rest():
    params = _named(Params, base_dir="run/base", task=TASK, seed=7, device="cpu", batch_size=16, hp={"lr": 0.1})
    inp = _named(InputFiles, base="run/base/model.safetensors", head_apple="run/heads/apple.safetensors",
                 head_books="run/heads/books.safetensors", val="run/data/apple/val.parquet")
    job = jobs.context(params, 3, inp)
    assert job == Job(base_dir="run/base", task=TASK, hp={"lr": 0.1}, seed=7, device="cpu", threads=3, batch_size=16,
                      heads={"apple": "run/heads/apple.safetensors", "books": "run/heads/books.safetensors"})
    assert job.precision is None and job.checkpoint_every is None  # not set by this rule: Job's defaults
    bare = jobs.context(_named(Params, base_dir="b", task=TASK), 1, _named(InputFiles, base="b/model.safetensors"))
    assert bare.heads is None and bare.seed == 0 and bare.device == "auto" and bare.batch_size == 32


def test_only_keeps_the_named_heads_and_nothing_else():
    job = Job(base_dir="b", task=TASK, heads={"apple": "a.st", "books": "b.st", "food": "f.st"})
    assert job.only(["food", "apple"]).heads == {"apple": "a.st", "food": "f.st"}
    assert job.only({"zebra"}).heads is None  # no head of that name: None, as for families without heads
    assert Job(base_dir="b", task=TASK).only(["apple"]).heads is None
    assert job.only(["books"]).base_dir == "b" and job.heads["food"] == "f.st"  # a copy; the original is untouched


def test_from_config_maps_the_config_blocks():
    cfg = {"task": TASK, "train": {"lr": 0.2}, "seed": 3, "device": "cpu", "eval": {"batch_size": 8},
           "checkpoint_every_steps": 50}
    job = from_config(cfg, "run/base", 2, {"apple": "h.st"})
    assert (job.hp, job.seed, job.device, job.threads, job.batch_size, job.checkpoint_every, job.precision) == \
        ({"lr": 0.2}, 3, "cpu", 2, 8, 50, None)
    assert job.heads == {"apple": "h.st"} and job.base_dir == "run/base" and job.task is TASK


def test_warm_jobs_sharing_a_process_take_turns(tmp_path):
    """run: jobs in Snakemake's process (threads of one process) run one at a time, and the merge
    engine's scoring takes the same lock: torch's thread count is process-wide, so a job starting
    beside another would change the other's mid-computation."""
    import threading
    import time

    from merge2mix import engine, runtime

    spans, lock = [], threading.Lock()

    def work(name):
        t0 = time.monotonic()
        time.sleep(0.05)
        with lock:
            spans.append((t0, time.monotonic(), name))

    threads = [threading.Thread(target=jobs.run_inline, args=(work, str(tmp_path / f"{i}.log")), kwargs={"name": i})
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert len(spans) == 4 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    assert engine._LOCK is runtime.WARM
    assert all(" in process " in (tmp_path / f"{i}.log").read_text() for i in range(4))


def test_spawn_runs_the_function_in_a_process_of_its_own_and_says_its_error_in_one_line(tmp_path):
    """jobs.spawn (training jobs with cores to spare): the function runs in a fresh process with the
    job's threads, its log names that process, and a Merge2MixError there comes back as one here."""
    import os

    import pytest

    from merge2mix.errors import Merge2MixError
    from merge2mix.io import atomic_write_json, read_json
    from merge2mix.masks import parse_key

    jobs.spawn(atomic_write_json, str(tmp_path / "ok.log"), 3, obj={"threads": 3}, path=str(tmp_path / "out.json"))
    assert read_json(tmp_path / "out.json") == {"threads": 3}
    child = re.findall(r"atomic_write_json in process (\d+)", (tmp_path / "ok.log").read_text())
    assert child and int(child[0]) != os.getpid()
    with pytest.raises(Merge2MixError, match=r"^mask: 'books\+apple' is not a canonical mask key"):
        jobs.spawn(parse_key, str(tmp_path / "bad.log"), 1, key="books+apple")
    assert "ERROR mask: 'books+apple'" in (tmp_path / "bad.log").read_text()


def test_a_warm_job_leaves_torchs_deterministic_mode_as_it_found_it(tmp_path):
    """A CPU fine-tune in Snakemake's process turns deterministic algorithms on (process-wide); the
    warm jobs after it must not inherit that."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    seen = []

    def fine_tune_like():
        torch.use_deterministic_algorithms(True)
        seen.append(torch.are_deterministic_algorithms_enabled())

    jobs.run_inline(fine_tune_like, str(tmp_path / "ft.log"))
    assert seen == [True] and torch.are_deterministic_algorithms_enabled() == before


def test_interrupt_sets_stop_then_raises_as_before_and_a_new_parse_clears_it():
    """runtime.stop_on_interrupt (called at each parse): SIGINT sets STOP for a warm fine-tune and then
    raises KeyboardInterrupt as Python's handler does (Snakemake handles that); the handler is chained
    once however often the Snakefile is parsed, and a new parse starts with STOP clear."""
    import signal

    import pytest

    from merge2mix import runtime

    before = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever the runner set
        runtime.stop_on_interrupt()
        chained = signal.getsignal(signal.SIGINT)
        runtime.stop_on_interrupt()
        assert signal.getsignal(signal.SIGINT) is chained  # not chained twice
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert runtime.STOP.is_set()
        runtime.stop_on_interrupt()
        assert not runtime.STOP.is_set()
    finally:
        signal.signal(signal.SIGINT, before)
        runtime.STOP.clear()


def test_snakemakes_scheduler_keeps_one_wake_up_timer():
    """runtime.one_wake_up_timer (called at each parse). Stock Snakemake 9 starts one more 1-s timer at
    every scheduling pass, each of which runs a pass when it fires: k passes, k wake-ups. Patched: one
    timer pending however many passes ask, a daemon (a pending one does not hold the process's exit),
    a sooner wake-up replaces a later one, and each wakes the scheduler (releases its semaphore) once."""
    import threading
    import time

    from snakemake.scheduling.job_scheduler import JobScheduler

    from merge2mix import runtime

    def scheduler():
        s = object.__new__(JobScheduler)  # only what _schedule_reevalutation touches
        s._open_jobs = threading.Semaphore(0)
        return s

    def wake_ups(s, wait):
        n = 0
        while s._open_jobs.acquire(timeout=wait):
            n += 1
        return n

    stock = JobScheduler._schedule_reevalutation
    try:
        s = scheduler()
        for _ in range(5):
            stock(s, 0.05)
        assert wake_ups(s, 0.5) == 5  # the growth the patch removes (if this fails, upstream fixed it)

        assert runtime.one_wake_up_timer()
        patched = JobScheduler._schedule_reevalutation
        assert patched is not stock and runtime.one_wake_up_timer() and JobScheduler._schedule_reevalutation is patched
        s = scheduler()
        for _ in range(50):
            s._schedule_reevalutation(0.2)
        assert s._merge2mix_timer.daemon and wake_ups(s, 1.0) == 1
        s._schedule_reevalutation(30)
        later = s._merge2mix_timer
        s._schedule_reevalutation(0.05)  # sooner: replaces the 30-s timer
        later.join(1)
        assert not later.is_alive() and s._merge2mix_timer is not later and wake_ups(s, 0.5) == 1
        s._schedule_reevalutation(0.05)
        s._schedule_reevalutation(30)  # later than the pending one: nothing new
        assert s._merge2mix_timer.interval == 0.05 and wake_ups(s, 0.5) == 1
        s._schedule_reevalutation(30)
        fired = s._merge2mix_timer
        fired.due = time.monotonic() - 1  # as a timer that has just fired but whose thread still runs
        s._schedule_reevalutation(0.05)
        assert s._merge2mix_timer is not fired and wake_ups(s, 0.5) == 1  # a new wake-up, not none
        fired.cancel()
    finally:
        JobScheduler._schedule_reevalutation = stock

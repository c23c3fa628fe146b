"""Training state save/load/restore (merge2mix.resume) on a tiny torch model: everything a resumed
fine-tune needs comes back exactly, and a state made by another job is never used."""

import json

import pytest
import torch

from merge2mix import resume

pytestmark = pytest.mark.usefixtures("isolated_cwd")  # relative-path writes fail, not leak


def _job(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW([{"params": [model[0].weight, model[1].weight], "weight_decay": 0.1},
                             {"params": [model[0].bias, model[1].bias], "weight_decay": 0.0}], lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return resume.Trainer(model, opt, sched, torch.Generator().manual_seed(seed))


def _steps(t, n):
    model, opt, sched, gen = t.model, t.opt, t.sched, t.gen
    for _ in range(n):
        x = torch.randn(5, 4, generator=gen) * torch.rand(5, 1)  # the global RNG too, as dropout does
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


FP = {"datasets": ["a"], "hp": {"lr": 0.01}, "seed": 0}


def test_a_restored_state_continues_exactly_like_the_uninterrupted_run(tmp_path):
    job = _job()
    _steps(job, 3)
    order = torch.randperm(9, generator=job.gen)
    resume.save(str(tmp_path), job, resume.Position(3, order, 2, [0.5, 0.25, 0.125]), FP)
    _steps(job, 5)  # the process goes on a while, then dies

    fresh = _job(seed=1)  # a new process: other weights, other RNG states
    state = resume.load(str(tmp_path), FP, "cpu")
    assert state["step"] == 3 and state["pos"] == 2 and state["losses"] == [0.5, 0.25, 0.125]
    assert torch.equal(state["tensors"]["data.order"], order)
    at = resume.restore(state, fresh, "cpu")
    assert (at.step, at.pos, at.losses) == (3, 2, [0.5, 0.25, 0.125]) and torch.equal(at.order, order)
    assert fresh.sched.last_epoch == 3 and fresh.opt.param_groups[0]["lr"] == pytest.approx(0.01 / 4)
    assert [g["weight_decay"] for g in fresh.opt.param_groups] == [0.1, 0.0]
    # 4 more steps from the restored state equal 4 more steps of a run that was never interrupted
    # (3 steps, the shuffle's draw, 4 steps)
    _steps(fresh, 4)
    cont = _job()
    _steps(cont, 3)
    torch.randperm(9, generator=cont.gen)
    _steps(cont, 4)
    for (k, a), b in zip(fresh.model.state_dict().items(), cont.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert all(torch.equal(fresh.opt.state[p]["exp_avg"], cont.opt.state[q]["exp_avg"])
               for p, q in zip(fresh.model.parameters(), cont.model.parameters()))
    assert all(torch.equal(fresh.opt.state[p]["step"], cont.opt.state[q]["step"])
               for p, q in zip(fresh.model.parameters(), cont.model.parameters()))


def test_only_the_newest_state_is_kept_and_latest_points_to_it(tmp_path):
    job = _job()
    _steps(job, 1)
    work = tmp_path / "work"
    for step in (5, 10):
        resume.save(str(work), job, resume.Position(step, torch.arange(3)), FP)
    assert (work / "latest").read_text() == "step-10\n"
    assert sorted(p.name for p in work.iterdir()) == ["latest", "step-10"]
    assert sorted(p.name for p in (work / "step-10").iterdir()) == ["model.safetensors", "state.json", "state.safetensors"]
    assert json.loads((work / "step-10" / "state.json").read_text())["fingerprint"] == FP
    resume.clear(str(work))
    assert not work.exists()


def test_a_state_of_another_job_or_a_broken_one_is_not_used(tmp_path):
    assert resume.load(str(tmp_path / "none"), FP, "cpu") is None  # nothing saved
    job = _job()
    _steps(job, 1)
    resume.save(str(tmp_path), job, resume.Position(4, torch.arange(3), 1, [1.0]), FP)
    assert resume.load(str(tmp_path), FP, "cpu")["step"] == 4
    for other in ({**FP, "seed": 1}, {**FP, "hp": {"lr": 0.02}}, {"datasets": ["a"]}):
        assert resume.load(str(tmp_path), other, "cpu") is None
    (tmp_path / "step-4" / "state.json").write_text("{not json")
    assert resume.load(str(tmp_path), FP, "cpu") is None


def test_leftovers_of_a_killed_save_do_not_break_the_next(tmp_path, monkeypatch):
    """A save killed half-way leaves `.step-N.tmp/` (or a complete `step-N/` not yet pointed to):
    saving step N again replaces them, and nothing is written outside the work folder."""
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    (work / ".step-5.tmp").mkdir(parents=True)
    (work / ".step-5.tmp" / "junk").write_text("half a save")
    (work / "step-5").mkdir()
    (work / "step-5" / "junk").write_text("an older save of the same step")
    job = _job()
    _steps(job, 1)
    resume.save(str(work), job, resume.Position(5, torch.arange(3)), FP)
    assert sorted(p.name for p in (work / "step-5").iterdir()) == ["model.safetensors", "state.json", "state.safetensors"]
    assert sorted(p.name for p in work.iterdir()) == ["latest", "step-5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


class _Warmup:
    """A schedule as a callable object: LambdaLR then saves its attributes, here a tensor (not JSON)."""

    def __init__(self):
        self.table = torch.linspace(0.1, 1.0, 10)

    def __call__(self, step):
        return float(self.table[min(step, 9)])


def test_a_schedule_object_does_not_break_the_json_state(tmp_path):
    job = _job()
    job.sched = torch.optim.lr_scheduler.LambdaLR(job.opt, _Warmup())
    _steps(job, 2)
    resume.save(str(tmp_path), job, resume.Position(2, torch.arange(3)), FP)
    meta = json.loads((tmp_path / "step-2" / "state.json").read_text())
    assert meta["scheduler"]["lr_lambdas"] is None and meta["scheduler"]["last_epoch"] == 2
    fresh = _job()
    fresh.sched = torch.optim.lr_scheduler.LambdaLR(fresh.opt, _Warmup())
    resume.restore(resume.load(str(tmp_path), FP, "cpu"), fresh, "cpu")
    assert fresh.sched.last_epoch == 2 and fresh.opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.3)


def test_clearing_a_missing_work_folder_is_fine(tmp_path):
    resume.clear(str(tmp_path / "never-made"))  # a fine-tune that finished without ever saving a state

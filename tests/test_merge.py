from itertools import combinations

import pytest
import torch

from merge2mix.errors import CheckpointError
from merge2mix.merge import TaskVector, average, check_compatible, load_weights, save_weights


def state(seed):
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(4, 3, generator=g),
        "b": torch.randn(3, generator=g),
        "h": torch.randn(2, 2, generator=g).to(torch.float16),
        "position_ids": torch.arange(5),  # an integer buffer: identical everywhere, never averaged
    }


BASE = state(0)
POOL = {"a": state(1), "b": state(2), "c": state(3)}


@pytest.mark.parametrize("mask", [m for k in (1, 2, 3) for m in combinations("abc", k)])
def test_average_is_exact_mean_and_equals_base_plus_mean_task_vector(mask):
    sds = [POOL[n] for n in mask]
    merged = average(sds)
    for k, t in BASE.items():
        if t.is_floating_point():
            expected = torch.stack([sd[k].double() for sd in sds]).mean(0)
            torch.testing.assert_close(merged[k].double(), expected.to(t.dtype).double(), rtol=0, atol=1e-6 if t.dtype == torch.float32 else 1e-3)
            assert merged[k].dtype == t.dtype
        else:
            assert torch.equal(merged[k], t)
    tv = sum(TaskVector(BASE, sd) for sd in sds) * (1 / len(sds))
    via_tv = tv.apply_to(BASE)
    for k in BASE:
        atol = 1e-6 if BASE[k].dtype == torch.float32 else 2e-3
        torch.testing.assert_close(via_tv[k].double(), merged[k].double(), rtol=0, atol=atol)


def test_average_of_one_is_identity_and_of_none_is_an_error():
    assert all(torch.equal(average([POOL["a"]])[k], POOL["a"][k]) for k in BASE)
    with pytest.raises(CheckpointError, match="zero datasets"):
        average([])


def test_differing_integer_buffers_are_refused():
    other = {**POOL["b"], "position_ids": torch.arange(5) + 1}
    with pytest.raises(CheckpointError, match="position_ids"):
        average([POOL["a"], other])


def test_compatibility_checks_name_the_checkpoint():
    with pytest.raises(CheckpointError, match="ckpt-x.*architecture"):
        check_compatible(BASE, {k: v for k, v in BASE.items() if k != "b"}, "ckpt-x")
    with pytest.raises(CheckpointError, match="ckpt-y.*'w' has shape"):
        check_compatible(BASE, {**BASE, "w": torch.zeros(3, 3)}, "ckpt-y")


def test_safetensors_round_trip_and_corruption(tmp_path):
    p = tmp_path / "m.safetensors"
    sha = save_weights(POOL["a"], p, {"datasets": ["a"]})
    assert len(sha) == 64
    back = load_weights(p)
    assert all(torch.equal(back[k], POOL["a"][k]) for k in BASE)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file

    nan = {**POOL["a"], "w": torch.full((4, 3), float("nan"))}
    save_weights(nan, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match="'w' contains NaN"):
        load_weights(tmp_path / "nan.safetensors")

    (tmp_path / "cut.safetensors").write_bytes(p.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match="cut.safetensors: not a readable safetensors"):
        load_weights(tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="file not found"):
        load_weights(tmp_path / "absent.safetensors")

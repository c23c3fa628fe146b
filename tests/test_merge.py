from itertools import combinations

import pytest
import torch

from merge2mix.errors import CheckpointError
from merge2mix.merge import OPERATORS, average, merge_state, size_scale
from merge2mix.checkpoints import check_compatible, load_weights, save_weights

pytestmark = pytest.mark.usefixtures("isolated_cwd")  # relative-path writes fail, not leak


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
    # The same model as theta_0 plus the mean task vector (fp32), cast back to each tensor's dtype.
    via_tv = {k: (t.float() + sum(sd[k].float() - t.float() for sd in sds) / len(sds)).to(t.dtype)
              if t.is_floating_point() else t.clone() for k, t in BASE.items()}
    assert all(via_tv[k].dtype == BASE[k].dtype for k in BASE)
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


def test_error_messages_name_the_checkpoint_and_what_differs():
    missing = {k: v for k, v in BASE.items() if k not in ("b", "h")}
    with pytest.raises(CheckpointError) as e:
        check_compatible(BASE, missing, "ckpt-x")
    assert str(e.value) == "checkpoint ckpt-x: architecture does not match the base model (missing ['b', 'h'])"
    with pytest.raises(CheckpointError) as e:
        check_compatible({**BASE, "b1": 0, "b2": 0}, {k: v for k, v in BASE.items() if k != "b"}, "ckpt-4")
    assert str(e.value).endswith("(missing ['b', 'b1', 'b2'])")  # the first three only
    with pytest.raises(CheckpointError) as e:
        check_compatible(BASE, {**BASE, "y1": 0, "y2": 0, "y3": 0, "y4": 0}, "ckpt-5")
    assert str(e.value).endswith("(unexpected ['y1', 'y2', 'y3'])")
    with pytest.raises(CheckpointError) as e:
        check_compatible(BASE, {**BASE, "z": torch.zeros(1), "y": torch.zeros(1)}, "ckpt-z")
    assert str(e.value) == "checkpoint ckpt-z: architecture does not match the base model (unexpected ['y', 'z'])"
    with pytest.raises(CheckpointError) as e:
        check_compatible(BASE, {**BASE, "w": (3, 3)}, "ckpt-y")  # shapes may be given as tuples
    assert str(e.value) == "checkpoint ckpt-y: tensor 'w' has shape (3, 3), base has (4, 3)"
    check_compatible(BASE, {k: tuple(v.shape) for k, v in BASE.items()}, "same")  # no error
    with pytest.raises(CheckpointError) as e:
        average([POOL["a"], {**POOL["b"], "position_ids": torch.arange(5) + 1}])
    assert str(e.value) == "merge: non-mergeable tensor 'position_ids' differs between checkpoints"


def test_saved_files_are_byte_identical_and_carry_their_metadata(tmp_path):
    import hashlib
    import json

    from safetensors import safe_open

    from merge2mix.checkpoints import file_sha256

    a = save_weights(POOL["a"], tmp_path / "a.safetensors", {"seed": 0, "datasets": ["x", "a"]})
    b = save_weights(POOL["a"], tmp_path / "b.safetensors", {"datasets": ["x", "a"], "seed": 0})
    assert a == b == hashlib.sha256((tmp_path / "a.safetensors").read_bytes()).hexdigest()
    with safe_open(str(tmp_path / "a.safetensors"), framework="pt") as f:
        assert f.metadata() == {"merge2mix": json.dumps({"datasets": ["x", "a"], "seed": 0})}
    save_weights(POOL["a"], tmp_path / "plain.safetensors")
    with safe_open(str(tmp_path / "plain.safetensors"), framework="pt") as f:
        assert not f.metadata()
    # the chunked hash is the file's sha256 whatever the chunk size
    assert file_sha256(tmp_path / "a.safetensors", chunk=7) == a


# -- merge operators ------------------------------------------------------------------------------



def test_operators_by_hand():
    base = torch.tensor([1.0, 1.0, 1.0, 1.0])
    t = [base + torch.tensor(v) for v in ([3.0, -1.0, 0.5, 2.0], [-2.0, -1.0, 1.0, 2.5], [1.0, 4.0, -0.2, -3.0])]
    assert torch.allclose(OPERATORS["average"](base, t), base + torch.tensor([2.0, 2.0, 1.3, 1.5]) / 3)
    assert torch.allclose(OPERATORS["task_arithmetic"](base, t, lam=0.5), base + 0.5 * torch.tensor([2.0, 2.0, 1.3, 1.5]))
    assert torch.allclose(OPERATORS["task_arithmetic"](base, t, lam=2.0, power=0.5),
                          base + 2.0 / 3**0.5 * torch.tensor([2.0, 2.0, 1.3, 1.5]))
    # TIES, density 0.5 (2 of 4 entries kept per task vector):
    #   trimmed [3, 0, 0, 2], [-2, 0, 0, 2.5], [0, 4, 0, -3]; elected signs +, +, 0, +;
    #   disjoint means 3 (only the first agrees), 4, 0 (no sign), (2 + 2.5) / 2
    ties = OPERATORS["ties"](base, t, density=0.5)
    assert torch.allclose(ties, base + torch.tensor([3.0, 4.0, 0.0, 2.25]))
    assert torch.allclose(OPERATORS["ties"](base, t, density=0.5, lam=0.3, power=1.0), base + 0.1 * torch.tensor([3.0, 4.0, 0.0, 2.25]))
    assert size_scale(4, 1.0, 1.0) == 0.25 and size_scale(4, 2.0, 0.5) == 1.0 and size_scale(3, 0.7) == 0.7


def test_operator_identities():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    members = [base + 0.1 * torch.randn(6, 5, generator=g) for _ in range(3)]
    mean = OPERATORS["average"](base, members)
    # average = task arithmetic with lambda(k) = 1/k (up to rounding: the sums are taken differently)
    assert torch.allclose(OPERATORS["task_arithmetic"](base, members, lam=1.0, power=1.0), mean, atol=1e-6)
    # TIES keeping everything, on task vectors that agree in sign everywhere, is their mean
    same_sign = [base + (0.1 + i) * torch.rand(6, 5, generator=g) for i in range(3)]
    assert torch.allclose(OPERATORS["ties"](base, same_sign, density=1.0, power=1.0), base + sum(m - base for m in same_sign) / 9,
                          atol=1e-6)  # disjoint mean of 3 agreeing entries, then lambda(3) = 1/3
    for name, op in OPERATORS.items():  # one member, lambda 1: the member itself (TIES keeps all of it)
        assert torch.allclose(op(base, members[:1], density=1.0), members[0], atol=1e-6), name


def test_merge_state_average_is_the_plain_average_and_buffers_must_match():
    sds = [POOL[n] for n in "abc"]
    want = average(sds)
    got = merge_state("average", BASE, sds)
    assert all(torch.equal(got[k], want[k]) and got[k].dtype == BASE[k].dtype for k in BASE)
    ta = merge_state("task_arithmetic", BASE, sds, {"lam": 0.5})
    assert torch.allclose(ta["w"], BASE["w"] + 0.5 * sum(sd["w"] - BASE["w"] for sd in sds), atol=1e-6)
    assert ta["h"].dtype == torch.float16 and torch.equal(ta["position_ids"], BASE["position_ids"])
    with pytest.raises(CheckpointError, match="non-mergeable tensor 'position_ids'"):
        merge_state("ties", BASE, [POOL["a"], {**POOL["b"], "position_ids": torch.arange(5) + 1}])
    with pytest.raises(CheckpointError) as e:
        merge_state("average", BASE, [])
    assert str(e.value) == "merge: a mask over zero datasets has no average"

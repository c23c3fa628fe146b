"""Fault injection used by the recovery tests: off unless named; fail-once lets a retry pass."""

import pytest

from merge2mix import runtime


def test_failpoints_are_off_unless_named_and_fail_once_passes_on_retry(tmp_path, monkeypatch):
    monkeypatch.delenv("MERGE2MIX_FAILPOINTS", raising=False)
    runtime.failpoint("finetune.start")  # off: nothing happens
    monkeypatch.setenv("MERGE2MIX_FAILPOINTS", "select.between_outputs=kill,finetune.start=fail-once")
    monkeypatch.setenv("MERGE2MIX_FAILPOINT_DIR", str(tmp_path))
    runtime.failpoint("finetune.checkpoint_saved")  # not named: nothing happens
    with pytest.raises(RuntimeError, match="failpoint finetune.start"):
        runtime.failpoint("finetune.start")
    runtime.failpoint("finetune.start")  # the retry passes
    assert (tmp_path / "failpoint-finetune.start").exists()

"""A training run killed in its last writes leaves nothing behind once it is rerun."""
from __future__ import annotations

import pytest

import rocl_bench.train.loop as loop
from rocl_bench.train import make_train_config, train


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


def test_a_kill_while_timing_json_is_written_is_cleaned_by_the_rerun(tmp_path, monkeypatch):
    cfg = make_train_config({"method": "standard", "dataset": "digits", "model": "mlp", "epochs": 1, "seed": 0,
                             "train_limit": 200, "test_limit": 50}, "test")
    out = tmp_path / "run"
    real = loop.write_timing

    def killed_midway(folder, seconds):
        (folder / ".timing.json.999999.abcd.tmp").write_bytes(b"{")   # a dead writer's half-written file
        raise Killed

    monkeypatch.setattr(loop, "write_timing", killed_midway)
    with pytest.raises(Killed):
        train(cfg, out, progress=False, log=lambda s: None)
    monkeypatch.setattr(loop, "write_timing", real)
    train(cfg, out, resume=True, progress=False, log=lambda s: None)
    assert (out / "checkpoint.pt").exists() and (out / "timing.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

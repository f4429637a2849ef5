"""runtime: the eval-mode guard and the forked RNG leave a model and torch's RNG as they found them, even on errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rocl_bench.attacks import build_attack, evaluate
from rocl_bench.attacks.instance import instance_attack
from rocl_bench.runtime import eval_mode, forked_rng


def _mixed() -> nn.Module:
    """A training model whose first block is frozen in eval mode (a frozen encoder with BatchNorm)."""
    model = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16)), nn.Dropout(0.5),
                          nn.Linear(16, 10))
    model.train()
    model[0].eval()
    return model


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_eval_mode_sets_eval_inside_and_restores_each_module_after() -> None:
    model = _mixed()
    before = _modes(model)
    with eval_mode(model):
        assert not any(_modes(model))
    assert _modes(model) == before            # the frozen block stays frozen, the rest trains again


def test_eval_mode_restores_on_an_exception() -> None:
    model = _mixed()
    before = _modes(model)
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            raise RuntimeError("boom")
    assert _modes(model) == before


def test_forked_rng_restores_the_global_state_and_seeds() -> None:
    state = torch.get_rng_state()
    with forked_rng(torch.device("cpu"), 5):
        a = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), state)
    with forked_rng(torch.device("cpu"), 5):
        assert torch.equal(torch.rand(3), a)


class _Boom(nn.Module):
    """Raises on the call after `ok` calls (an attack failing half-way)."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.calls, self.ok = 0, ok

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.ok:
            raise RuntimeError("boom")
        return self.net(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


def test_evaluate_and_the_instance_attack_restore_the_mode_when_they_fail() -> None:
    x = torch.rand(8, 1, 8, 8)
    model = _Boom(ok=2)
    model.train()
    with torch.no_grad():
        y = model.net(x).argmax(1)             # every point clean-correct, so the attack runs (and fails)
    with pytest.raises(RuntimeError):
        evaluate(model, build_attack({"type": "pgd", "eps": 0.1, "steps": 3}), x, y)
    assert model.training and model.net.training
    model = _Boom(ok=2)
    model.train()
    with pytest.raises(RuntimeError):
        instance_attack(model, x, x, eps=0.1, step=0.02, steps=3, rand_init=True, generator=torch.Generator())
    assert model.training and model.net.training

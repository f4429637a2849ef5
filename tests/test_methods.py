"""The Method contract: a method defined here, outside the package, with an extra trained module, a frozen
teacher and state across epochs, runs through the one loop untouched; its modules and state are checkpointed
and restored on resume exactly. The shapes of ACL (a second BatchNorm branch), AdvCL (a frozen teacher) and
DynACL (an epoch-dependent strength) in miniature."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rocl_bench.methods import METHODS, Method, StepOutput, register_method
from rocl_bench.train import load_checkpoint, make_train_config, train

QUIET = dict(progress=False, log=lambda s: None)


@dataclass(frozen=True)
class ProbeParams:
    weight: float = 0.5

    def validate(self, where: str) -> None:
        pass


class Probe(Method):
    """CE on the head, plus a distillation term to a frozen copy of the initial encoder (AdvCL's teacher), scaled
    by a trained extra scalar (an extra trained module, like ACL's second BatchNorm branch) and by a strength
    that grows with the epoch (DynACL's schedule); it counts the epochs it has seen (state across epochs)."""

    name = "probe"
    Params = ProbeParams

    def setup(self, model: nn.Module) -> None:
        teacher = nn.Sequential(copy.deepcopy(model.normalize), copy.deepcopy(model.encoder))
        self.modules["teacher"] = teacher.requires_grad_(False)
        self.modules["scale"] = nn.Linear(1, 1, bias=False)
        self.started: list[int] = []
        self.strength = 0.0

    def state(self) -> dict:
        return {"started": list(self.started)}

    def load_state(self, state: dict) -> None:
        self.started = list(state["started"])

    def on_epoch_start(self, epoch: int) -> None:
        self.started.append(epoch)
        self.strength = 1.0 + epoch

    def set_train_mode(self, net) -> None:
        super().set_train_mode(net)
        self.modules["teacher"].eval()

    def loss(self, net, x, y, g) -> StepOutput:
        logits = net(x)
        with torch.no_grad():
            target = self.modules["teacher"](x)
        feats = net.features(x)
        scale = self.modules["scale"].weight.squeeze()
        distill = ((scale * feats - target) ** 2).mean()
        loss = F.cross_entropy(logits, y) + self.params.weight * self.strength * distill
        return StepOutput(loss, int((logits.argmax(1) == y).sum()), {"strength": self.strength})


class HeadFrozenProbe(Probe):
    """The same loss, but declaring that only the encoder trains: the head is used, and must not move."""

    name = "probe-frozen-head"
    trains = ("encoder",)


@pytest.fixture
def probe():
    for cls in (Probe, HeadFrozenProbe):
        register_method(cls)
    yield Probe
    for cls in (Probe, HeadFrozenProbe):
        METHODS._items.pop(cls.name)


def _cfg(**fields):
    return make_train_config({"method": "probe", "dataset": "digits", "model": "mlp", "epochs": 3,
                              "batch_size": 128, "train_limit": 512, "seed": 0, **fields}, "test")


def test_a_method_with_its_own_modules_and_state_trains_checkpoints_and_resumes(probe, tmp_path):
    assert "probe" in METHODS
    full = train(_cfg(), tmp_path / "full", **QUIET)
    saved = full["method_state"]
    assert saved["state"] == {"started": [0, 1, 2]}
    assert [m["strength"] for m in full["metrics"]] == [1.0, 2.0, 3.0]          # extras are logged per epoch
    assert full["final_metrics"]["test_accuracy"] > 0.5                           # yields a classifier
    # the frozen teacher kept the initial encoder; the extra scalar trained; the encoder trained
    from rocl_bench.data import load_dataset
    from rocl_bench.train.build import build

    _, fresh, _ = build(_cfg(), load_dataset("digits", True, limit=512, seed=0))
    first = {f"teacher.{k}": v for k, v in fresh.modules["teacher"].state_dict().items()}
    assert first and all(k.startswith("teacher.1.") for k in first)
    for k, v in first.items():
        assert torch.equal(saved["modules"][k], v), k
        assert not torch.equal(full["state_dict"][k.replace("teacher.1.", "encoder.")], v), k
    assert not torch.equal(saved["modules"]["scale.weight"], fresh.modules["scale"].weight)
    on_disk = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert on_disk["method_state"]["state"] == saved["state"]

    def cut(line):
        if line.startswith("epoch 2/3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(), tmp_path / "cut", progress=False, log=cut)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["method_state"]["state"] == {"started": [0, 1]}
    resumed = train(_cfg(), tmp_path / "cut", resume=True, **QUIET)
    assert resumed["method_state"]["state"] == {"started": [0, 1, 2]}             # restored, then one more
    for k, v in saved["modules"].items():
        assert torch.equal(v, resumed["method_state"]["modules"][k]), k
    for k, v in full["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k
    assert (tmp_path / "cut" / "metrics.jsonl").read_bytes() == (tmp_path / "full" / "metrics.jsonl").read_bytes()


def test_methods_that_carry_nothing_write_no_method_state(tmp_path):
    ck = train(make_train_config({"method": "standard", "dataset": "digits", "model": "mlp", "epochs": 1,
                                  "train_limit": 256}, "test"), tmp_path / "std", **QUIET)
    assert "method_state" not in ck and "method_state" not in load_checkpoint(tmp_path / "std" / "last.pt")


def test_declarations_drive_the_loop():
    """What each built-in method declares, as the loop and the runner read it."""
    decl = {n: (METHODS.get(n).yields, METHODS.get(n).trains, METHODS.get(n).needs_encoder) for n in METHODS.names()}
    assert decl["simclr"] == decl["rocl"] == ("encoder", ("encoder", "projector"), False)
    assert decl["linear"] == decl["robust-linear"] == ("classifier", ("head",), True)
    assert decl["finetune"] == ("classifier", ("encoder", "head"), True)
    for n in ("standard", "madry", "trades"):
        assert decl[n] == ("classifier", ("encoder", "head"), False)


def test_parts_a_method_does_not_train_stay_as_built(probe, tmp_path):
    """`trains` is obeyed: the head gets gradients from the loss, yet only the encoder moves."""
    from rocl_bench.data import load_dataset
    from rocl_bench.train.build import build

    cfg = _cfg(method="probe-frozen-head", epochs=1)
    ck = train(cfg, tmp_path / "p", **QUIET)
    model, _, _ = build(cfg, load_dataset("digits", True, limit=512, seed=0))
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["state_dict"][k]) == k.startswith("head."), k


def test_a_method_that_yields_an_encoder_reports_no_test_accuracy(tmp_path):
    ck = train(make_train_config({"method": "simclr", "dataset": "digits", "model": "mlp", "epochs": 1,
                                  "batch_size": 128, "train_limit": 256}, "test"), tmp_path / "s", **QUIET)
    assert ck["final_metrics"] == {} and ck["model_spec"]["projector"] == [2048, 128]


def test_a_bad_declaration_is_refused_at_registration():
    class Bad(Method):
        name = "bad"
        trains = ("encoder", "backbone")

    with pytest.raises(TypeError, match="trains"):
        register_method(Bad)
    assert "bad" not in METHODS

"""The field's protocols under its names, with the RobustSSL benchmark's settings (GodXuxilie/RobustSSL_Benchmark
@ 19dc714, Finetuning_Methods/Vanilla_Finetuning): SLF (standard linear fine-tuning), ALF (adversarial linear
fine-tuning), AFF (adversarial full fine-tuning, with TRADES).

They are the RoCL paper's `linear`, `robust-linear` and `finetune` with the benchmark's defaults: SGD momentum 0.9,
weight decay 2e-4, 25 epochs; SLF / ALF batch 512 at lr 0.01 ÷10 at epochs 10 and 20 (the ACL / DynACL rows;
AdvCL's are 15 and 20), the encoder frozen in eval mode; ALF trains the head on PGD-10 (2/255 at 8/255, uniform
start) made against encoder + head; AFF batch 128 at lr 0.1 ÷10 at 15 and 20, TRADES β 6, 10 steps of 2/255,
start 0.001·N(0, 1), BatchNorm in train mode. The old names keep RoCL's own settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .base import register_method
from .linear import Finetune, FinetuneParams, LinearEval, RobustLinearEval

BENCH_STEP_RATIO = 0.25                  # 2/255 per step at ε = 8/255
LINEAR_BENCH = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 2e-4, "schedule": "step",
                "milestones": [10, 20], "gamma": 0.1, "epochs": 25, "batch_size": 512}
FULL_BENCH = {**LINEAR_BENCH, "lr": 0.1, "milestones": [15, 20], "batch_size": 128}


@register_method
class SLF(LinearEval):
    name = "slf"
    train_defaults = LINEAR_BENCH


@register_method
class ALF(RobustLinearEval):
    name = "alf"
    train_defaults = LINEAR_BENCH
    step_ratio = BENCH_STEP_RATIO


@dataclass(frozen=True)
class AFFParams(FinetuneParams):
    objective: Literal["madry", "trades"] = "trades"
    step_ratio: float = BENCH_STEP_RATIO
    batchnorm: Literal["official", "train"] = "train"


@register_method
class AFF(Finetune):
    name = "aff"
    Params = AFFParams
    train_defaults = FULL_BENCH
    keyed_before: dict = {}              # a new method: nothing was keyed before its parameters existed

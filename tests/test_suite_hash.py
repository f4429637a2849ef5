"""Suite.hash(): `check`'s "the suite changed" warning must see every change that moves a number, and only those."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from util import quick_train

from rocl_bench.bench.suite import load_suite

BASE = {
    "name": "h", "seed": 0, "device": "cpu", "data": {"dataset": "digits", "test_limit": 50},
    "models": {
        "rocl": {"method": "rocl", "epochs": 1},
        "rocl_le": {"label": "RoCL + LE", "method": "linear", "encoder": "rocl", "epochs": 1},
        "standard": {"label": "Standard", "method": "standard", "epochs": 1, "lr": 0.1},
    },
    "attacks": {"clean": {"type": "clean"}, "pgd": {"type": "pgd", "eps": 0.1, "steps": 5, "seen": True}},
    "transfer": {"sources": ["standard"], "attacks": ["pgd"]},
}


def _hash(tmp_path: Path, change: dict | None = None, name: str = "suite.yaml") -> str:
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in (change or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return load_suite(path).hash()


@pytest.mark.parametrize("change", [
    {"models.standard.lr": 0.2},                        # a training setting of an evaluated model
    {"models.rocl.epochs": 2},                          # the encoder's training: changes rocl_le too
    {"models.rocl_le.batch_size": 64},
    {"models.standard.smoothing": {"samples": 4}},
    {"attacks.pgd.steps": 6},
    {"attacks.pgd.seen": False},                        # moves the Worst column
    {"data.test_limit": 60},
    {"seed": 1},
    {"transfer.sources": ["standard", "rocl_le"]},
    {"output": {"batch_size": 32}},                     # library attacks draw once per batch
], ids=lambda c: next(iter(c)))
def test_a_change_that_moves_a_number_changes_the_hash(tmp_path: Path, change: dict) -> None:
    assert _hash(tmp_path, change) != _hash(tmp_path)


@pytest.mark.parametrize("change", [
    {"models.standard.label": "Plain"}, {"device": "auto"}, {"output": {"dir": "elsewhere"}},
], ids=lambda c: next(iter(c)))
def test_what_does_not_move_a_number_keeps_the_hash(tmp_path: Path, change: dict) -> None:
    assert _hash(tmp_path, change) == _hash(tmp_path)


def test_a_checkpoint_counts_by_its_content_not_its_path(tmp_path: Path) -> None:
    """A moved checkpoint is the same model; different weights at the same path are not."""
    for seed in (0, 1):
        quick_train(tmp_path / f"run{seed}", method="standard", epochs=1, seed=seed)
    suite = {"name": "c", "models": {"m": {"checkpoint": "m.pt"}}, "attacks": {"clean": {"type": "clean"}}}
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(tmp_path / "run0" / "checkpoint.pt", tmp_path / folder / "m.pt")
        (tmp_path / folder / "s.yaml").write_text(yaml.safe_dump(suite))
    assert load_suite(tmp_path / "a" / "s.yaml").hash() == load_suite(tmp_path / "b" / "s.yaml").hash()
    shutil.copy(tmp_path / "run1" / "checkpoint.pt", tmp_path / "b" / "m.pt")
    assert load_suite(tmp_path / "a" / "s.yaml").hash() != load_suite(tmp_path / "b" / "s.yaml").hash()

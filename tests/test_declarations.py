"""Attacks declare what they are, and the alarms, tables and Worst column read those declarations.

An attack registered in one place (here: inside the test) must be alarmed, placed and counted without being
added to any list; the declarations of the built-in attacks must keep today's table layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterator

import numpy as np
import pytest
import torch

from rocl_bench.api import list_attacks
from rocl_bench.attacks import ATTACKS, Attack, Family, build_attack, family_of
from rocl_bench.attacks.base import register_attack
from rocl_bench.bench.sanity import cell_warnings
from rocl_bench.errors import UserError
from rocl_bench.record import Record, encode_mask
from rocl_bench.report.tables import build_main_table
from rocl_bench.report.worst import worst_mask


@dataclass(frozen=True)
class _Probe(Attack):
    """A score-based black-box attack that exists only in this test."""

    name: ClassVar[str] = "probe-bb"
    family: ClassVar[Family] = Family.BLACK_BOX
    title: ClassVar[str] = "Probe"
    eps: float = 0.1
    norm: str = "linf"

    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return x.clone()


@dataclass(frozen=True)
class _First(Attack):
    """A white-box attack that declares it comes before PGD among the budget columns."""

    name: ClassVar[str] = "first-wb"
    family: ClassVar[Family] = Family.WHITE_BOX
    title: ClassVar[str] = "First"
    table_order: ClassVar[int] = -1
    eps: float = 0.1
    norm: str = "linf"


@pytest.fixture
def registered() -> Iterator[None]:
    for cls in (_Probe, _First):
        register_attack(cls)
    yield
    for cls in (_Probe, _First):
        del ATTACKS._items[cls.name]


N = 8


def _rec(attack: str, spec: dict, robust: list[int], index: int, seen: bool = False, **extra) -> Record:
    mask = np.zeros(N, dtype=bool)
    mask[robust] = True
    return Record.make(model="m", model_index=0, label="M", attack=attack, attack_index=index, attack_spec=spec,
                       seen=seen, n=N, clean_accuracy=1.0, robust_accuracy=float(mask.mean()),
                       robust_mask=encode_mask(mask), source=None, **extra)


def _records() -> list[Record]:
    return [
        _rec("clean", {"type": "clean"}, list(range(N)), 0),
        _rec("pgd", {"type": "pgd", "norm": "linf", "eps": 0.1}, [0, 1, 2, 3, 4, 5], 1, seen=True),
        _rec("first", {"type": "first-wb", "norm": "linf", "eps": 0.1}, [0, 1, 2, 3, 4, 5, 6], 2, seen=True),
        _rec("probe", {"type": "probe-bb", "norm": "linf", "eps": 0.1}, [0, 1], 3),
        _rec("aa", {"type": "autoattack", "norm": "linf", "eps": 0.1}, [0, 1, 2, 3, 4], 4),
        _rec("square", {"type": "square", "norm": "linf", "eps": 0.1}, [0, 1, 2, 3, 4, 5], 5),
        _rec("transfer:pgd", {"type": "transfer", "source": "s", "crafted_with": {"type": "pgd", "norm": "linf",
                                                                                  "eps": 0.1}}, [0, 1, 2], 6),
    ]


def test_every_registered_attack_declares_a_family_and_registration_demands_one() -> None:
    assert all(isinstance(ATTACKS.get(n).family, Family) for n in ATTACKS.names())

    @dataclass(frozen=True)
    class NoFamily(Attack):
        name: ClassVar[str] = "no-family"
        eps: float = 0.1
        norm: str = "linf"

    with pytest.raises(TypeError, match="family"):
        register_attack(NoFamily)
    assert "no-family" not in ATTACKS


def test_the_builtin_families() -> None:
    assert {n: family_of(n).value for n in ATTACKS.names()} == {
        "clean": "clean", "pgd": "white-box", "eot-pgd": "white-box", "fgsm": "white-box", "cw": "white-box",
        "apgd": "white-box", "autoattack": "white-box", "square": "black-box", "transfer": "transfer",
        "fmn": "min-norm", "fab": "min-norm"}


def test_a_new_black_box_attack_is_alarmed_without_any_list(registered: None) -> None:
    recs = _records()
    pgd, probe = recs[1], recs[3]
    warnings = cell_warnings(probe, [pgd])
    assert any("black-box probe beats white-box pgd" in w for w in warnings), warnings
    # a white-box attack of its own family is compared with black-box ones too
    assert any("black-box probe beats white-box first" in w for w in cell_warnings(recs[2], [probe]))


def test_tables_place_attacks_by_their_declarations(registered: None) -> None:
    table = build_main_table(_records(), warn=lambda s: None, per_attack=True)
    headers = [c.flat for c in table.columns]
    assert headers == ["Clean", "Seen ℓ∞ ε=0.1 First", "Seen ℓ∞ ε=0.1", "AutoAttack ℓ∞ ε=0.1", "Probe ℓ∞ ε=0.1",
                       "Square ℓ∞ ε=0.1", "Transfer ℓ∞ ε=0.1", "Worst ℓ∞ ε=0.1"]
    assert "Probe: black-box (score-based) attack" in table.notes
    worst = next(c for c in table.columns if c.kind == "worst")
    assert table.value("m", worst) == pytest.approx(100 * 2 / N)      # the probe's mask counts in the worst case


def test_worst_case_counts_every_family_but_clean(registered: None) -> None:
    mask = worst_mask(_records(), {"norm": "linf", "eps": 0.1})
    assert mask is not None and mask.tolist() == [True, True] + [False] * (N - 2)
    clean_only = worst_mask(_records()[:1], {"norm": None, "eps": None})
    assert clean_only is None


def test_transfer_is_a_record_kind_not_a_suite_attack() -> None:
    assert "transfer" not in list_attacks() and "transfer" in ATTACKS
    with pytest.raises(UserError, match="transfer' section"):
        build_attack({"type": "transfer", "source": "x", "crafted_with": {}}, "attacks.t")
    with pytest.raises(UserError, match="unknown attack 'pgdd'.*choose from: apgd, autoattack, clean"):
        build_attack({"type": "pgdd"}, "attacks.t")

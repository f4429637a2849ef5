"""The columns of the main table: which threat model a record's cell belongs to, its order and its headers.

A column is a (kind, norm, ε, attack type) with text and TeX headers; `column_of` files a record under one,
`label_columns` writes the headers (and tells apart two attacks that land on the same one).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..attacks import ATTACKS, Family, attack_class
from ..record import Record
from .records import NORM_ORDER, NORM_TEX, eps_text, norm_text
from ..render import tex_escape

# column groups in table order; "own" holds one group per attack type shown apart (its kind is the type name)
GROUP_ORDER = {"clean": 0, "seen": 1, "unseen": 2, "own": 3, "median": 5, "other": 6, "worst": 7}


def own_column_kinds() -> list[str]:
    """Attack types shown in a column group of their own (autoattack, square, transfer), in table order."""
    classes = [c for c in map(ATTACKS.get, ATTACKS.names()) if c.family is not Family.CLEAN and not c.budget_column()]
    return [c.name for c in sorted(classes, key=lambda c: (c.family.rank, c.table_order, c.name))]


@dataclass(frozen=True)
class Column:
    kind: str                 # clean | seen | unseen | other | worst | an attack type shown apart (autoattack, ...)
    norm: str | None
    eps: float | None
    atype: str                # attack_spec.type (the crafted_with type is not used here)
    attack: str | None        # attack id (None for clean and worst)
    order: tuple = ()
    group: str = ""
    sub: str = ""
    group_tex: str = ""
    sub_tex: str = ""
    role: str = "value"       # value | ref | diff (ref/diff only with --compare) | distance (a median ε, not a %)
    target: str | None = None  # transfer matrix only: the attacked model
    attacks: tuple[str, ...] = ()   # headline (worst-case) budget columns: the attack ids that made the value
    smaller: tuple[str, ...] = ()   # ... and the attack ids at smaller ε of the norm that count too (best known)

    @property
    def flat(self) -> str:
        return f"{self.group} {self.sub}".strip()


def eps_tex(eps: float | None) -> str:
    """ε in TeX math, with eps_text's k/255 form."""
    return rf"$\epsilon={eps_text(eps)}$"


def norm_tex(norm: str | None) -> str:
    """The norm as a TeX ℓ_p symbol, else its escaped name."""
    return NORM_TEX.get(norm or "", tex_escape(str(norm)))


def label_columns(cols: list[Column]) -> list[Column]:
    """The columns with their text and TeX headers; two attacks on one header get their ids in brackets."""
    out = []
    for c in cols:
        e, et, nt, nx = eps_text(c.eps), eps_tex(c.eps), norm_text(c.norm), norm_tex(c.norm)
        cls = attack_class(c.atype)
        suffix = "" if cls is not None and cls.reference else " " + (cls.display_name() if cls else c.atype.upper())
        if c.atype == "budget":            # a headline column: the worst case over this many attacks
            k = len(c.attacks) + len(c.smaller)
            suffix = f" ({k} attack{'s' if k != 1 else ''})"
        own = attack_class(c.kind) if c.kind not in ("clean", "seen", "unseen", "other", "worst", "median") else None
        if c.kind == "median":
            title = cls.display_name() if cls else c.atype.upper()
            g, gt, s, st = f"{title} {nt}", f"{title} {nx}", "median ε", r"median $\epsilon$"
        elif c.kind == "clean":
            g, s, gt, st = "Clean", "", "Clean", ""
        elif c.kind in ("seen", "unseen"):
            g = f"{'Seen' if c.kind == 'seen' else 'Unseen'} {nt}"
            gt = f"{'Seen' if c.kind == 'seen' else 'Unseen'} {nx}"
            s, st = f"ε={e}{suffix}", f"{et}{suffix}"
        elif own is not None or c.kind == "worst":
            name = own.display_name() if own is not None else "Worst"
            g, gt, s, st = f"{name} {nt}", f"{name} {nx}", f"ε={e}", et
        else:
            g, gt, s, st = "Other", "Other", str(c.attack), tex_escape(str(c.attack))
        out.append(dataclasses.replace(c, group=g, sub=s, group_tex=gt, sub_tex=st))
    seen: dict[tuple[str, str], int] = {}
    for c in out:
        seen[(c.group, c.sub)] = seen.get((c.group, c.sub), 0) + 1
    return [dataclasses.replace(c, sub=f"{c.sub} [{c.attack}]", sub_tex=f"{c.sub_tex} [{tex_escape(c.attack)}]")
            if seen[(c.group, c.sub)] > 1 and c.attack else c for c in out]


def median_column(rec: Record) -> Column:
    """The median-distance column of a minimum-norm cell (distances.is_min_norm), after the budget groups."""
    kind, norm, _ = rec.threat
    cls = attack_class(kind)
    idx = rec.attack_index if rec.attack_index is not None else math.inf
    order = (GROUP_ORDER["median"], NORM_ORDER.get(norm or "", 9), cls.table_order if cls else 100, idx, rec.attack)
    return Column("median", norm, None, kind, rec.attack, order, role="distance")


def column_of(rec: Record) -> Column:
    """The (unlabelled) main-table column a record's cell belongs to, with its sort key, from what its attack
    type declares (attacks.base.Attack: family, table_order, own_column; see report/tables.py)."""
    kind, norm, eps = rec.threat
    cls = attack_class(kind)
    idx = rec.attack_index if rec.attack_index is not None else math.inf
    budget = (NORM_ORDER.get(norm or "", 9), eps if eps is not None else math.inf)
    if cls is not None and cls.budget_column():
        k = "seen" if rec.seen else "unseen"
        order = (GROUP_ORDER[k], (), *budget, cls.table_order, idx, rec.attack)
    elif cls is not None and cls.family is not Family.CLEAN:
        k = kind
        order = (GROUP_ORDER["own"], (cls.family.rank, cls.table_order, kind), *budget, 0, idx, rec.attack)
    else:
        k = "other"
        order = (GROUP_ORDER["other"], (), *budget, 0, idx, rec.attack)
    return Column(k, norm, eps, kind, rec.attack, order)

"""`rocl-bench analyze`: representation metrics of every encoder in a results folder or a list of checkpoints."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Callable

import torch

from ..attacks.instance import instance_attack
from ..data import dataset_info, epoch_batches, load_dataset
from ..data.augment import AugmentSpec, augment
from ..errors import UserError
from ..models.loading import classifier_from_checkpoint
from ..render import csv, latex, markdown, tex_escape
from ..train import load_checkpoint
from ..train.checkpoint import atomic_write_bytes
from .metrics import alignment, class_margin, false_negative_fraction, relative_change, uniformity

SKIP = ("linear", "robust-linear")          # these share another model's encoder
EPS_SCALES = (0.25, 0.5, 1.0)               # sensitivity budgets, as multiples of the dataset's ℓ∞ budget


def find_checkpoints(paths: list[str]) -> list[tuple[str, Path]]:
    """(name, checkpoint) for each file, run folder, or results folder (its models/*/checkpoint.pt)."""
    found: list[tuple[str, Path]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            found.append((p.parent.name if p.name == "checkpoint.pt" else p.stem, p))
        elif (p / "checkpoint.pt").is_file():
            found.append((p.name, p / "checkpoint.pt"))
        elif p.is_dir():
            hits = sorted(p.glob("models/*/checkpoint.pt")) or sorted(p.glob("**/checkpoint.pt"))
            if not hits:
                raise UserError(f"{p}: no checkpoint.pt found (looked in {p}/models/*/); pass a results folder, a "
                                "run folder or checkpoint files")
            found += [(h.parent.name, h) for h in hits]
        else:
            raise UserError(f"{p}: not found; pass a results folder, a run folder or checkpoint files")
    return [(re.sub(r"-[0-9a-f]{16}$", "", name), path) for name, path in found]


@torch.no_grad()
def _features(model: torch.nn.Module, x: torch.Tensor, bs: int = 512) -> torch.Tensor:
    return torch.cat([model.features(xb) for xb in x.split(bs)])


def analyze_one(name: str, path: Path, data_root: str | None, limit: int, seed: int,
                log: Callable[[str], None]) -> dict[str, Any] | None:
    ck = load_checkpoint(path, f"checkpoint {path}")
    method = ck.get("method", "external")
    if method in SKIP:
        log(f"skip {name}: a {method} head on another model's encoder")
        return None
    tc = ck.get("train_config", {})
    dataset = tc.get("dataset")
    if not dataset:
        raise UserError(f"{path}: has no training config naming its dataset; analyze needs rocl-bench checkpoints")
    info = dataset_info(dataset)
    model = classifier_from_checkpoint(ck, path).eval()
    root = data_root or tc.get("data_root")
    test = load_dataset(dataset, False, root, False, limit, seed)
    x, y = test.batch()
    g = torch.Generator().manual_seed(seed)
    spec = AugmentSpec.for_kind(info.augment)
    f = _features(model, x)
    f1, f2 = _features(model, augment(x, spec, g)), _features(model, augment(x, spec, g))
    train_labels = load_dataset(dataset, True, root, False, tc.get("train_limit"), seed).labels
    bs = int(tc.get("batch_size", 256))
    batches = list(epoch_batches(len(train_labels), bs, torch.Generator().manual_seed(seed)))
    row: dict[str, Any] = {"encoder": name, "method": method, "dataset": info.label or info.name,
                           "arch": ck["model_spec"]["arch"], "n": len(y),
                           "test_accuracy": ck.get("final_metrics", {}).get("test_accuracy"),
                           "alignment": alignment(f1, f2), "uniformity": uniformity(f),
                           "class_margin": class_margin(f, y), "false_negative_fraction":
                               false_negative_fraction(train_labels, batches)}
    for scale in EPS_SCALES:
        eps = info.eps * scale
        noise = (torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1) * eps
        row[f"sens_random@{scale:g}eps"] = relative_change(f, _features(model, (x + noise).clamp(0, 1)))
        x_adv = instance_attack(model, x, x, eps=eps, step=eps / 4, steps=10, rand_init=True, generator=g,
                                embed=model.features)
        row[f"sens_instance@{scale:g}eps"] = relative_change(f, _features(model, x_adv))
    row["eps_unit"] = info.eps
    log(f"{name}: alignment {row['alignment']:.3f}  uniformity {row['uniformity']:.3f}  "
        f"margin {row['class_margin']:.3f}  adversarial sensitivity {row[f'sens_instance@1eps']:.3f}")
    return row


def _cell_tex(v: Any) -> str:
    """Strings escaped, counts as integers, measurements to 3 decimals, missing values (None/NaN) as --."""
    if isinstance(v, str):
        return tex_escape(v)
    if v is None or v != v:
        return "--"
    return str(v) if isinstance(v, int) else f"{v:.3f}"


def _cell_md(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("–" if v is None else str(v))


def render_analysis(df: Any, caption: str) -> dict[str, str]:
    """analysis.{csv,md,tex} of the metrics table (one row per encoder), through the shared renderer."""
    import pandas as pd

    header = [str(c) for c in df.columns]
    rows = [list(r) for _, r in df.iterrows()]
    numeric = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) else "l" for c in df.columns)
    return {"analysis.csv": csv(header, df.itertuples(index=False)),
            "analysis.md": markdown(header, [[_cell_md(v) for v in r] for r in rows], caption),
            "analysis.tex": latex(header, [[_cell_tex(v) for v in r] for r in rows], tex_escape(caption),
                                  "tab:rocl-bench-analysis", column_format=numeric)}


def sensitivity_figure(rows: list[dict[str, Any]]) -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, dpi=150)
    for ax, kind, title in ((axes[0], "random", "Random sign noise"), (axes[1], "instance", "Instance-wise attack")):
        for r in rows:
            eps = [s * r["eps_unit"] for s in EPS_SCALES]
            ax.plot(eps, [r[f"sens_{kind}@{s:g}eps"] for s in EPS_SCALES], marker="o", label=r["encoder"])
        ax.set_title(title)
        ax.set_xlabel("ℓ∞ budget ε")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean ‖f(x+δ) − f(x)‖ / ‖f(x)‖")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"Representation sensitivity on {rows[0]['dataset']} (encoder features, {rows[0]['n']} test points)")
    fig.tight_layout()
    return fig


def analyze(paths: list[str], out: str | Path, data_root: str | None = None, limit: int = 500, seed: int = 0,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Analyse every encoder found; write analysis.{csv,md,tex} and sensitivity.png into `out`."""
    import pandas as pd

    rows = [r for name, path in find_checkpoints(paths)
            if (r := analyze_one(name, path, data_root, limit, seed, log)) is not None]
    if not rows:
        raise UserError("no encoder to analyse (only linear heads found); pass the pre-training checkpoints too")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:                  # read-only file system, a file in the way, no permission
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e.__class__.__name__}); nothing was "
                        "written; choose a writable folder") from None
    df = pd.DataFrame(rows)
    caption = (f"Representation analysis on {rows[0]['dataset']} ({rows[0]['n']} test points): alignment and "
               "uniformity (Wang & Isola 2020; lower is better for both), class margin (nearest other-class "
               "centroid minus own centroid, over the class spread), false-negative share of a training batch, "
               "and relative representation change under random and instance-wise perturbations")
    for name, text in render_analysis(df.drop(columns=["eps_unit"]), caption).items():
        atomic_write_bytes(out / name, lambda f, t=text: f.write(t.encode()))
    fig = sensitivity_figure(rows)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(out / "sensitivity.png", lambda f: f.write(buf.getvalue()))
    log(f"wrote {out}/analysis.md, analysis.tex, analysis.csv, sensitivity.png")
    return rows

"""The command line: `rocl-bench train | run | table | plot | check | baseline | analyze`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from . import __version__
from .errors import UserError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def add(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn
    return add


def _parse_set(items: list[str]) -> dict[str, Any]:
    """--set key=value (value read as YAML, so numbers, lists and 8/255 fractions work); dots nest."""
    params: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set {item}: expected KEY=VALUE, e.g. --set eps=8/255")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else None
        node = params
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return params


TRAIN_FLAGS = ["method", "dataset", "model", "epochs", "batch_size", "lr", "optimizer", "seed", "device",
               "data_root", "train_limit", "test_limit", "encoder", "weight_decay", "schedule"]


@command("train")
def _train(args: argparse.Namespace) -> int:
    from .config import load_yaml
    from .train import make_train_config, train

    fields: dict[str, Any] = {}
    where = "command line"
    base = None
    if args.config:
        loaded = load_yaml(args.config)
        if not isinstance(loaded, dict):
            raise UserError(f"{args.config}: expected a mapping of training fields at the top level")
        fields.update(loaded)
        where, base = str(args.config), Path(args.config).resolve().parent
    for flag in TRAIN_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            fields[flag] = value
    if args.download:
        fields["download"] = True
    extra = _parse_set(args.set)
    if extra:
        fields["params"] = {**fields.get("params", {}), **extra}
    cfg = make_train_config(fields, where, base)
    train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    print(f"wrote {Path(args.out) / 'checkpoint.pt'}")
    return 0


@command("run")
def _run(args: argparse.Namespace) -> int:
    from .bench.runner import run_suite
    from .bench.summary import summary_markdown

    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    records = run_suite(args.suite, out=args.out, device=args.device, limit=args.limit, only=only,
                        data_root=args.data_root, progress=not args.quiet)
    print(summary_markdown(records))
    return 0


@command("analyze")
def _analyze(args: argparse.Namespace) -> int:
    from .analysis.run import analyze

    analyze(args.paths, args.out, data_root=args.data_root, limit=args.limit)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rocl-bench", description="Adversarial-robustness benchmarking: train "
                                     "defenses and evaluate them against a fixed attack battery.")
    parser.add_argument("--version", action="version", version=f"rocl-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train one model (any method) into --out")
    t.add_argument("config", nargs="?", help="YAML file with the same fields as the flags")
    t.add_argument("--out", required=True, help="output folder (checkpoint.pt, last.pt, metrics.jsonl)")
    t.add_argument("--method")
    t.add_argument("--dataset")
    t.add_argument("--model")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--weight-decay", dest="weight_decay", type=float)
    t.add_argument("--optimizer", choices=["sgd", "lars"])
    t.add_argument("--schedule", choices=["cosine", "step", "constant"])
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=["auto", "cpu", "cuda"])
    t.add_argument("--data-root", dest="data_root", help="data folder (else $ROCL_BENCH_DATA, else ./data)")
    t.add_argument("--download", action="store_true", help="let torchvision download missing data")
    t.add_argument("--train-limit", dest="train_limit", type=int, help="seeded stratified subset size")
    t.add_argument("--test-limit", dest="test_limit", type=int)
    t.add_argument("--encoder", help="pretrained checkpoint (linear, robust-linear, finetune)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="method parameter, e.g. eps=8/255")
    t.add_argument("--resume", action="store_true", help="continue from --out/last.pt")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=COMMANDS["train"])

    r = sub.add_parser("run", help="train what a YAML suite needs and evaluate every (model, attack) cell")
    r.add_argument("suite", help="suite YAML file, e.g. suites/quickstart.yaml")
    r.add_argument("--out", help="results folder (default results/<suite name>/)")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"])
    r.add_argument("--limit", type=int, help="cap training and test points (seeded, stratified)")
    r.add_argument("--only", help="comma-separated model names to evaluate")
    r.add_argument("--data-root", dest="data_root")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=COMMANDS["run"])

    from .report.commands import add_report_parsers

    add_report_parsers(sub)
    a = sub.add_parser("analyze", help="representation analysis of encoders (alignment, uniformity, margins, "
                                       "sensitivity)")
    a.add_argument("paths", nargs="+", help="results folders, run folders or checkpoint files")
    a.add_argument("--out", default="analysis", help="output folder (default ./analysis)")
    a.add_argument("--data-root", dest="data_root")
    a.add_argument("--limit", type=int, default=500, help="test points (seeded, stratified)")
    a.set_defaults(func=COMMANDS["analyze"])
    return parser


def fast_cpu_math() -> None:
    """Flush denormal floats to zero on the CPU: attacks drive logits' gradients into the denormal range, where
    every CPU op slows down many times (AutoAttack on a digits MLP: 115 s -> 8 s). Values below 1e-38 become 0."""
    import torch

    torch.set_flush_denormal(True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    fast_cpu_math()
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"rocl-bench: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("rocl-bench: interrupted; finished work is saved, rerun the same command with --resume to continue",
              file=sys.stderr)
        return 130

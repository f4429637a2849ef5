"""The command line: `rocl-bench train | run | table | compare | plot | check | baseline | analyze`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

import yaml

from .version import __version__
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
        if not key or any(not part for part in key.split(".")):
            raise UserError(f"--set {item}: the key is empty; expected KEY=VALUE or KEY.SUB=VALUE, "
                            "e.g. --set eps=8/255")
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as e:
            problem = " ".join(str(getattr(e, "problem", None) or (str(e).splitlines() or ["?"])[0]).split())
            raise UserError(f"--set {item}: the value is not valid YAML ({problem}); quote it, e.g. "
                            f"--set '{key}=\"...\"'") from None
        node = params
        *parents, leaf = key.split(".")
        for i, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item}: '{'.'.join(parents[:i + 1])}' was already set to a value, not a "
                                "mapping; set it once")
        node[leaf] = value
    return params


TRAIN_FLAGS = ["method", "dataset", "model", "epochs", "batch_size", "lr", "optimizer", "seed", "device",
               "data_root", "train_limit", "test_limit", "encoder", "weight_decay", "schedule"]


def _hand_over_to_torchrun(args: argparse.Namespace) -> None:
    """--nproc N (N > 1): replace this process by torchrun (torch.distributed.run) starting N copies of the same
    command without --nproc; every copy joins the process group from torchrun's environment variables."""
    import os

    from . import distributed

    n = args.nproc
    if n is None:
        return
    if n < 1:
        raise UserError(f"--nproc: must be a positive number of processes, got {n}")
    if distributed.env_world() > 1:
        raise UserError("--nproc: this command already runs under torchrun; drop --nproc")
    if n == 1:
        return
    given = sys.argv[1:]

    def plain(ns: argparse.Namespace) -> dict[str, Any]:
        return {k: v for k, v in vars(ns).items() if not k.startswith("_")}

    if plain(build_parser().parse_known_args(given)[0]) != plain(args):
        raise UserError("--nproc works from the command line; from Python, start torchrun yourself")
    rest: list[str] = []
    skip = False
    for token in given:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if token != "--" and len(name) > 3 and "--nproc".startswith(name):   # argparse takes abbreviations
            skip = "=" not in token
            continue
        rest.append(token)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
           "-m", "rocl_bench", *rest]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)


def _main_rank() -> bool:
    from . import distributed

    return distributed.is_main()


def _train_field_names(message: str, where: str) -> str:
    """Name fields the way the user wrote them: `--batch-size` / `--set eps` on the command line, `FILE: lr`."""
    import re

    if where == "command line":
        message = re.sub(r"^command line\.params\.([\w.]+)", r"--set \1", message)
        return re.sub(r"^command line\.(\w+)", lambda m: "--" + m.group(1).replace("_", "-"), message)
    if message.startswith(where + "."):
        return f"{where}: {message[len(where) + 1:]}"
    return message


@command("train")
def _train(args: argparse.Namespace) -> int:
    _hand_over_to_torchrun(args)
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
        if value is not None:     # paths on the command line are relative to where it runs, not to --config
            fields[flag] = str(Path(value).expanduser().resolve()) if flag in ("data_root", "encoder") else value
    if args.download:
        fields["download"] = True
    extra = _parse_set(args.set)
    if extra:
        fields["params"] = {**fields.get("params", {}), **extra}
    try:
        cfg = make_train_config(fields, where, base)
    except UserError as e:
        raise UserError(_train_field_names(str(e), where)) from None
    train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if _main_rank():
        print(f"wrote {Path(args.out) / 'checkpoint.pt'}")
    return 0


@command("run")
def _run(args: argparse.Namespace) -> int:
    _hand_over_to_torchrun(args)
    from .bench.runner import run_suite
    from .bench.summary import summary_markdown

    if args.limit is not None and args.limit < 1:       # run_suite reads --limit 0 as "no limit"
        raise UserError(f"--limit: must be a positive number of points, got {args.limit}")
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    records = run_suite(args.suite, out=args.out, device=args.device, limit=args.limit, only=only,
                        data_root=args.data_root, progress=not args.quiet)
    if _main_rank():
        print(summary_markdown(records))
    return 0


@command("analyze")
def _analyze(args: argparse.Namespace) -> int:
    from .analysis.run import analyze

    analyze(args.paths, args.out, data_root=args.data_root, limit=args.limit)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): the same contract as every other user error."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        import re

        from .errors import suggest

        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if bad:
            message += suggest(bad.group(1), re.findall(r"'([^']*)'", bad.group(2)))
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rocl-bench", description="Adversarial-robustness benchmarking: train "
                                     "defenses and evaluate them against a fixed attack battery.")
    parser.add_argument("--version", action="version", version=f"rocl-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.set_defaults(_subparsers=sub)

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
    t.add_argument("--nproc", type=int, help="train with N processes (hands over to torchrun --nproc_per_node N)")
    t.set_defaults(func=COMMANDS["train"])

    r = sub.add_parser("run", help="train what a YAML suite needs and evaluate every (model, attack) cell")
    r.add_argument("suite", help="suite YAML file, e.g. suites/quickstart.yaml")
    r.add_argument("--out", help="results folder (default results/<suite name>/)")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"])
    r.add_argument("--limit", type=int, help="cap training and test points (seeded, stratified)")
    r.add_argument("--only", help="comma-separated model names to evaluate")
    r.add_argument("--data-root", dest="data_root")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--nproc", type=int, help="run with N processes (hands over to torchrun --nproc_per_node N)")
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


def _unknown_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> str:
    """One line for arguments the command does not take, with the closest flag it does take."""
    from .errors import suggest

    sub = getattr(args, "_subparsers", None)
    command = sub.choices.get(getattr(args, "command", None) or "") if sub else None
    target = command or parser
    flags = [o for o in target._option_string_actions if o.startswith("--")]
    first = extra[0]
    hint = suggest(first.split("=", 1)[0], flags) if first.startswith("-") else ""
    return (f"{target.prog}: error: unrecognized argument(s): {' '.join(extra)}{hint}; "
            f"see '{target.prog} --help'")


def _new_dirs(path: str | Path | None) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first (what a failed run may leave)."""
    if not path:
        return []
    out: list[Path] = []
    p = Path(path).absolute()
    try:
        while not p.exists() and p != p.parent:
            out.append(p)
            p = p.parent
    except (OSError, ValueError):
        return []
    return out


def _remove_empty(dirs: list[Path]) -> None:
    """A command that failed on bad input leaves nothing behind: remove the empty folders it created."""
    for d in dirs:
        try:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
            else:
                return
        except OSError:
            return


def _output_folder(args: argparse.Namespace) -> str | Path | None:
    if getattr(args, "out", None):
        return args.out
    if getattr(args, "command", None) == "run":           # bench.runner.output_dir's rule, without validating twice
        try:
            from .bench.suite import results_folder
            from .config import load_yaml

            raw = load_yaml(args.suite)
            return results_folder(Path(args.suite), (raw.get("output") or {}).get("dir"),
                                  str(raw.get("name") or Path(args.suite).stem))
        except Exception:                                  # an invalid suite: run_suite will say why
            return None
    return None


def _interrupted(args: argparse.Namespace) -> str:
    """What was kept and how to go on, for Ctrl-C."""
    command = getattr(args, "command", None)
    if command == "run":
        where = f"{args.out}/records.jsonl" if args.out else "the results folder's records.jsonl"
        return (f"interrupted; every finished cell is saved in {where}; rerun the same command to resume "
                "(finished cells and models are reused)")
    if command == "train":
        epochs = 0
        try:
            epochs = sum(1 for line in (Path(args.out) / "metrics.jsonl").read_text().splitlines() if line.strip())
        except (OSError, UnicodeDecodeError):
            pass
        kept = f"{args.out}/last.pt keeps epoch {epochs}" if epochs else "no epoch had finished"
        return f"interrupted; {kept}; rerun the same command with --resume to continue"
    return "interrupted"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        print(_unknown_flags(parser, args, extra), file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .runtime import fast_cpu_math

    fast_cpu_math()
    created = _new_dirs(_output_folder(args))
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"rocl-bench: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        _remove_empty(created)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"rocl-bench: {_interrupted(args)}", file=sys.stderr)
        return 130

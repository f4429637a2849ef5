"""`rocl-bench run`: train what a suite needs, evaluate every (model, attack) cell, append trusted records."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .. import distributed as dist
from ..attacks import Attack, Family
from ..attacks.base import Skip
from ..attacks.evaluate import EvalResult, MinNormResult, check_bounds, evaluate, evaluate_min_norm
from ..attacks.transfer import Transfer
from ..config import config_hash
from ..data import load_dataset, stratified_subset
from ..errors import UserError, suggest
from ..methods import METHODS
from ..models.smoothing import SmoothedClassifier
from ..distances import encode_distances, median_distance
from ..record import RECORDS_FILE, Record, append, encode_mask, load
from ..runtime import eval_mode, fast_cpu_math, forked_rng, resolve_device
from ..train.checkpoint import atomic_write_bytes
from .models import ReadyModel, prepare_models
from .provenance import ResultsLock, git_commit, peak_memory_mb, timestamp, versions
from .sanity import cell_warnings, suite_warnings
from .suite import AttackEntry, Suite, load_suite, results_folder


def _limited(suite: Suite, limit: int | None) -> Suite:
    """--limit N caps both the training and the test subsets (seeded, stratified), e.g. to try a GPU suite on a CPU."""
    if limit is None:
        return suite
    if limit < 1:
        raise UserError(f"--limit: must be a positive number of points, got {limit}")
    data = dataclasses.replace(suite.data, train_limit=min(limit, suite.data.train_limit or limit),
                               test_limit=min(limit, suite.data.test_limit or limit))
    models = {}
    for name, m in suite.models.items():
        if m.train is not None:
            m = dataclasses.replace(m, train=dataclasses.replace(m.train, train_limit=data.train_limit,
                                                                 test_limit=data.test_limit))
        models[name] = m
    return dataclasses.replace(suite, data=data, models=models)


def output_dir(suite: Suite, out: str | None) -> Path:
    """--out, else the suite's own results folder (bench.suite.results_folder)."""
    return Path(out) if out else results_folder(suite.path, suite.output.dir, suite.name)


def selected_pairs(suite: Suite, names: list[str]) -> list[tuple[str, str, str]]:
    """Transfer cells among the selected models: with --only, sources and targets both come from the selection."""
    return [(s, a, t) for s, a, t in suite.transfer_pairs()
            if s in names and t in names and is_classifier(suite, s) and is_classifier(suite, t)]


def plan_lines(suite: Suite, names: list[str]) -> list[str]:
    evaluated = [n for n in names if is_classifier(suite, n)]
    cells = len(evaluated) * len(suite.attacks)
    pairs = selected_pairs(suite, names)
    lines = [f"suite {suite.name}: dataset {suite.data.info().label or suite.data.dataset}, "
             f"train limit {suite.data.train_limit or 'all'}, test limit {suite.data.test_limit or 'all'}, "
             f"seed {suite.seed}",
             f"  models ({len(names)}): " + ", ".join(_model_summary(suite, n) for n in names),
             f"  attacks ({len(suite.attacks)}): " + ", ".join(suite.attacks),
             f"  evaluated: {', '.join(evaluated)} (contrastive pre-training serves as encoders only)",
             f"  cells: {cells} white-box/black-box + {len(pairs)} transfer"]
    return lines


def _model_summary(suite: Suite, name: str) -> str:
    """'rocl [rocl, cnn-small, 10 ep]', naming its own data when it is pre-trained on other data than the suite's."""
    t = suite.models[name].train
    if t is None:
        return f"{name} [checkpoint]"
    own = t.data_info().label or t.dataset
    other = f", pre-trained on {own}" if own != (suite.data.info().label or suite.data.dataset) else ""
    return f"{name} [{t.method}, {t.model}, {t.epochs} ep{other}]"


def is_classifier(suite: Suite, name: str) -> bool:
    """Contrastive pre-training (simclr, rocl) leaves an untrained head: such models serve as encoders only."""
    m = suite.models[name]
    return m.train is None or METHODS.get(m.train.method).yields == "classifier"


# ---------------------------------------------------------------- sharding over torchrun's ranks
def deterministic(module: nn.Module) -> bool:
    """A randomized model draws from its own stream batch after batch: it cannot be split over ranks. This is
    what the module's type says (SmoothedClassifier); `randomized` also asks the model itself."""
    return not any(isinstance(m, SmoothedClassifier) for m in module.modules())


RANDOMIZED = ("model outputs differ between two calls on the same inputs: the model is randomized; "
              "evaluate it with eot-pgd (expectation over transformation)")


@torch.no_grad()
def randomized(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether the model's outputs on x change between two calls under two different seeds of torch's global RNG.

    Every cell reseeds the global RNG identically, so a model that adds its own noise shows the same clean
    accuracy in every cell and no cross-cell alarm can see it; asking it twice can. Runs in eval mode inside
    forked_rng (the caller's RNG does not move). A SmoothedClassifier is randomized by construction and is not
    called (that would advance its own generator)."""
    if not deterministic(module):
        return True
    with eval_mode(module):
        with forked_rng(x.device, 1):
            first = module(x)
        with forked_rng(x.device, 2):
            second = module(x)
    return not torch.equal(first, second)


def can_shard(attack: Attack, *models: ReadyModel) -> bool:
    """A cell may be split over torchrun's ranks only when the attack's draws per batch can be replayed
    (Attack.skip_draws) and no model it runs is randomized (its draws would depend on which rank runs what)."""
    return attack.skip_draws() is not None and not any(m.randomized or not deterministic(m.module) for m in models)


def _on_cpu(result: EvalResult) -> EvalResult:
    if isinstance(result, MinNormResult) and result.distances is not None:
        return MinNormResult(result.clean_correct.cpu(), result.robust.cpu(), list(result.flags), None,
                             result.distances.cpu())
    return EvalResult(result.clean_correct.cpu(), result.robust.cpu(), list(result.flags))


def sharded_evaluate(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     seed: int, skip: Skip) -> EvalResult:
    """evaluate() with its batches dealt round-robin over the ranks, giving the same result on every rank.

    The batches are exactly evaluate()'s (clean predictions over x in batches of batch_size, then the
    clean-correct points in batches of batch_size) and batch k goes to rank k mod world; a rank moves the seeded
    generator past the others' batches with `skip`, so every batch is attacked with the same random draws as in
    one process, and the masks, all-reduced, are identical to evaluate()'s.
    """
    rank, world = dist.rank(), dist.world()
    attack.check_input(x)
    y = y.to(x.device)
    clean = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    robust = torch.zeros_like(clean)
    flags_at: dict[int, list[str]] = {}
    with eval_mode(model), forked_rng(x.device, seed):
        g = torch.Generator().manual_seed(seed)

        def clean_pass() -> None:
            with torch.no_grad():
                for k, start in enumerate(range(0, len(x), batch_size)):
                    if k % world == rank:
                        part = slice(start, start + batch_size)
                        clean[part] = attack.predict(model, x[part]) == y[part]

        dist.agree(clean_pass)
        clean = dist.all_reduce_sum(clean)

        def attack_pass() -> None:
            for k, idx in enumerate(clean.nonzero().flatten().split(batch_size)):
                xb, yb = x[idx], y[idx]
                if k % world != rank:
                    skip(xb, g)
                    continue
                x_adv, flags_at[k] = attack.run_with_flags(model, xb, yb, g, batch_size=batch_size)
                check_bounds(attack, xb, x_adv)
                with torch.no_grad():
                    robust[idx] = attack.predict(model, x_adv) == yb

        dist.agree(attack_pass)
    robust = dist.all_reduce_sum(robust)
    flags: list[str] = []
    for _, new in sorted((k, f) for part in dist.all_gather_object(flags_at) for k, f in part.items()):
        flags.extend(f for f in new if f not in flags)
    return EvalResult(clean, robust, flags)


class Runner:
    """Holds one run's state: the test set, the models, the records so far."""

    def __init__(self, suite: Suite, out: Path, device: torch.device, progress: bool,
                 log: Callable[[str], None]) -> None:
        self.suite, self.out, self.device, self.progress, self.log = suite, out, device, progress, log
        self.records_path = out / RECORDS_FILE
        self.done: dict[str, Record] = {}               # config hash -> record (this folder, any run)
        self.latest_hash: dict[tuple, str] = {}         # (model, attack, source) -> config hash of its last line
        self.current: list[str] = []                     # this run's cells, in suite order
        self.new: list[Record] = []
        self.randomized: set[str] = set()               # models whose outputs change between calls
        self.suite_hash = suite.hash()                   # once per run: it reads checkpoints and factory files

    def load_test_set(self) -> None:
        d = self.suite.data
        full = load_dataset(d.dataset, False, d.root, d.download, classes=d.classes, image_size=d.image_size)
        idx = (stratified_subset(full.labels, d.test_limit, self.suite.seed)
               if d.test_limit and d.test_limit < len(full) else torch.arange(len(full)))
        self.x, self.y = full.batch(idx)
        self.x, self.y = self.x.to(self.device), self.y.to(self.device)
        self.indices = idx
        self.chance = float(torch.bincount(self.y.cpu()).max()) / max(len(self.y), 1)
        self.indices_hash = config_hash(idx.tolist())
        index_file = self.out / "test_indices.json"
        text = json.dumps({"dataset": d.dataset, **({"classes": d.classes} if d.classes else {}), "split": "test",
                           "indices": idx.tolist()})
        if dist.is_main() and (not index_file.exists() or index_file.read_text() != text):
            atomic_write_bytes(index_file, lambda f: f.write(text.encode()))

    def base_record(self, m: ReadyModel, attack_id: str, spec: dict[str, Any], seen: bool,
                    source: str | None, cell_hash: str) -> dict[str, Any]:
        info = self.suite.data.info()
        return {"suite": self.suite.name, "suite_hash": self.suite_hash, "model": m.name,
                "model_index": list(self.suite.models).index(m.name), "label": m.label, "method": m.method,
                "dataset": info.label or info.name, "arch": m.arch, "split": "test", "n": len(self.y),
                "test_indices_hash": self.indices_hash, "attack": attack_id,
                "attack_index": list(self.suite.attacks).index(attack_id) if attack_id in self.suite.attacks else -1,
                "attack_spec": spec, "seen": seen, "source": source, "seed": self.suite.seed,
                "config_hash": cell_hash, "model_key": m.key, "checkpoint_sha256": m.checkpoint_sha256,
                "train_seconds": m.train_seconds, "versions": versions(), "git_commit": git_commit(),
                "device": str(self.device), "world_size": dist.world()}

    def cell_hash(self, m: ReadyModel, spec: dict[str, Any], attacks: Sequence[Attack],
                  source_key: str | None = None) -> str:
        """The cell's key: what produced the model, the attack's spec and the revision of each attack class that
        computes the cell (a transfer cell: Transfer and its crafting attack), the source, the test points."""
        return config_hash({"model": m.key, "attack": spec, "source": source_key, "test": self.indices_hash,
                            "revisions": [[type(a).name, type(a).revision] for a in attacks],
                            "seed": self.suite.seed, "smoothing": dataclasses.asdict(self.suite.models[m.name].smoothing)
                            if self.suite.models[m.name].smoothing else None})

    def reuse(self, h: str) -> bool:
        """Serve the cell of config hash `h` from the folder's records, if it is there. Reports read the LAST record
        of each (model, attack, source), so when a later line holds another configuration of the same cell (the
        suite was changed and changed back), the reused record is appended again to be the latest."""
        rec = self.done.get(h)
        if rec is None:
            return False
        latest = self.latest_hash.get(rec.cell)
        if latest is not None and latest != h:
            if dist.is_main():
                append(self.out, rec)
            self.latest_hash[rec.cell] = h
        self.current.append(h)
        return True

    def check_randomness(self, m: ReadyModel) -> None:
        """Once per evaluated model, before its cells: ask it twice (`randomized`); rank 0 decides for all ranks."""
        probe = self.x[:self.suite.output.batch_size]
        m.randomized = dist.on_main(lambda: randomized(m.module, probe))
        if m.randomized:
            self.randomized.add(m.name)
            self.log(f"  warning: {m.name}: {RANDOMIZED}")

    def finish(self, fields: dict[str, Any], result: EvalResult, seconds: float) -> None:
        """Make the cell's Record (validated as a reader would), add its alarms, append it to the file."""
        fields.update({"clean_accuracy": result.clean_accuracy, "robust_accuracy": result.robust_accuracy,
                       "robust_mask": encode_mask(result.robust.cpu().numpy()),
                       "clean_mask": encode_mask(result.clean_correct.cpu().numpy()),
                       "seconds": round(seconds, 3), "peak_memory_mb": round(peak_memory_mb(self.device.type), 1),
                       "timestamp": timestamp(), "flags": list(result.flags)})
        if isinstance(result, MinNormResult) and result.distances is not None:
            fields["distances"] = encode_distances(result.distances.cpu().numpy())
        rec = Record.make(**fields)
        alarms = cell_warnings(rec, [self.done[h] for h in self.current], chance=self.chance)
        rec = dataclasses.replace(rec, warnings=self.warnings_of(rec, alarms))
        for warning in rec.warnings:
            self.log(f"  warning: {rec.model} / {rec.attack}: {warning}")
        if dist.is_main():                  # under torchrun every rank holds the record, rank 0 writes it
            append(self.out, rec)
        self.done[fields["config_hash"]] = rec
        self.latest_hash[rec.cell] = fields["config_hash"]
        self.current.append(fields["config_hash"])
        self.new.append(rec)

    def warnings_of(self, rec: Record, alarms: Sequence[str]) -> tuple[str, ...]:
        """A record's warnings: the randomized-model warning first (Runner.check_randomness), then its alarms."""
        return ((RANDOMIZED,) if rec.model in self.randomized else ()) + tuple(alarms)

    def refresh_warnings(self) -> None:
        """After every cell of the run: recompute each cell's alarms over all cells of its model (an alarm may
        need a cell that ran after it, e.g. a stronger attack at the same budget, or a record reused from an
        earlier run) and append a record whose alarms changed; the later line wins, so tables see the new list."""
        records = [self.done[h] for h in dict.fromkeys(self.current)]
        alarms = suite_warnings(records, chance=self.chance)
        for h in dict.fromkeys(self.current):
            rec = self.done[h]
            want = self.warnings_of(rec, alarms.get(rec.cell, ()))
            if want == rec.warnings:
                continue
            for warning in want:
                if warning not in rec.warnings:
                    self.log(f"  warning: {rec.name} / {rec.attack}: {warning}")
            rec = dataclasses.replace(rec, warnings=want, timestamp=timestamp())
            if dist.is_main():
                append(self.out, rec)
            self.done[h] = rec

    def _start_cell(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        return time.perf_counter()

    def run_cell(self, m: ReadyModel, entry: AttackEntry) -> None:
        spec = entry.attack.describe()
        h = self.cell_hash(m, spec, [entry.attack])
        if self.reuse(h):
            return
        t0 = self._start_cell()
        result = self.evaluate(m, entry.attack)
        self.finish(self.base_record(m, entry.id, spec, entry.seen, None, h), result, time.perf_counter() - t0)
        what = (f"median distance {median_distance(result.distances.cpu().numpy()):.4g}"
                if isinstance(result, MinNormResult) and result.distances is not None
                else f"robust {result.robust_accuracy:6.1%}")
        self.log(f"  {m.name:<16} {entry.id:<20} clean {result.clean_accuracy:6.1%}  {what}  "
                 f"({time.perf_counter() - t0:.1f}s)")

    def evaluate(self, m: ReadyModel, attack: Attack) -> EvalResult:
        """evaluate() on the test set; under torchrun sharded over the ranks where that is exact (can_shard),
        else run whole by rank 0 and shared, so the record is the single-process one."""
        bs, seed, module = self.suite.output.batch_size, self.suite.seed, m.module
        if attack.family is Family.MIN_NORM:       # per-point distances: one process runs it, every rank shares it
            return dist.on_main(lambda: _on_cpu(evaluate_min_norm(module, attack, self.x, self.y, batch_size=bs,
                                                                  seed=seed)))
        if dist.world() == 1:
            return evaluate(module, attack, self.x, self.y, batch_size=bs, seed=seed)
        if not can_shard(attack, m):
            return dist.on_main(lambda: _on_cpu(evaluate(module, attack, self.x, self.y, batch_size=bs, seed=seed)))
        return sharded_evaluate(module, attack, self.x, self.y, bs, seed, attack.skip_draws())

    def craft(self, source: ReadyModel, entry: AttackEntry, mine: Callable[[int], bool] | None = None) -> torch.Tensor:
        """Adversarial examples for every test point from the source's gradients alone, crafted with the entry's
        attack at full strength (Attack.for_transfer: every step, no stop at the first iterate fooling the source).

        Under torchrun only the batches k with mine(k) are crafted; the others keep their clean inputs and the
        generator is moved past them exactly as crafting them would (Attack.skip_draws), or not at all when this
        rank crafts nothing."""
        module = source.module
        attack = entry.attack.for_transfer()
        bs = self.suite.output.batch_size
        skip = attack.skip_draws() if mine is not None else None
        outs = []
        with eval_mode(module), forked_rng(self.x.device, self.suite.seed):
            g = torch.Generator().manual_seed(self.suite.seed)
            for k, (xb, yb) in enumerate(zip(self.x.split(bs), self.y.split(bs))):
                if mine is not None and not mine(k):
                    if skip is not None:
                        skip(xb, g)
                    outs.append(xb)
                    continue
                x_adv, _ = attack.run_with_flags(module, xb, yb, g, batch_size=bs)
                check_bounds(attack, xb, x_adv)
                outs.append(x_adv.detach())
        return torch.cat(outs)

    @torch.no_grad()
    def transfer_cell(self, source: ReadyModel, entry: AttackEntry, target: ReadyModel,
                      cache: dict[tuple[str, str], torch.Tensor]) -> None:
        crafting = entry.attack.for_transfer()           # what craft() runs; the record names it
        transfer = Transfer(source.name, crafting.describe())
        spec = transfer.describe()
        h = self.cell_hash(target, spec, [transfer, crafting], source.key)
        if self.reuse(h):
            return
        t0 = self._start_cell()
        rank, world = dist.rank(), dist.world()
        # under torchrun batch k is crafted and judged by rank k mod world when that is exact, else by rank 0
        shard = world > 1 and can_shard(crafting, source, target)
        mine = (lambda k: k % world == rank) if shard else (lambda k: rank == 0)
        key = (source.name, entry.id, shard)
        if key not in cache:
            with torch.enable_grad():
                cache[key] = dist.agree(lambda: self.craft(source, entry, mine if world > 1 else None))
        x_adv = cache[key]
        bs = self.suite.output.batch_size
        clean = torch.zeros(len(self.y), dtype=torch.bool, device=self.y.device)
        fooled_not = torch.zeros_like(clean)
        parts = [(k, slice(start, start + bs)) for k, start in enumerate(range(0, len(self.y), bs)) if mine(k)]
        with eval_mode(target.module):
            for _, part in parts:
                clean[part] = target.module(self.x[part]).argmax(1) == self.y[part]
            for _, part in parts:
                fooled_not[part] = target.module(x_adv[part]).argmax(1) == self.y[part]
        clean, fooled_not = dist.all_reduce_sum(clean), dist.all_reduce_sum(fooled_not)
        result = EvalResult(clean, clean & fooled_not, [])
        self.finish(self.base_record(target, f"transfer:{entry.id}", spec, entry.seen, source.name, h), result,
                    time.perf_counter() - t0)
        self.log(f"  {target.name:<16} from {source.name:<11} {entry.id:<14} robust {result.robust_accuracy:6.1%}")


def run_suite(path: str | Path, out: str | None = None, device: str | None = None, limit: int | None = None,
              only: list[str] | None = None, data_root: str | None = None, progress: bool = True,
              log: Callable[[str], None] = print) -> list[Record]:
    """Run a suite; return the records of this suite's cells (new and reused), in suite order."""
    fast_cpu_math()
    suite = _limited(load_suite(path, data_root), limit)
    names = list(suite.models)
    if only:
        for n in only:
            if n not in suite.models:
                raise UserError(f"--only: model '{n}' is not in {suite.path}{suggest(n, names)}; "
                                f"models: {', '.join(names)}")
        names = [n for n in names if n in only]
    folder = output_dir(suite, out)
    dev = dist.setup(resolve_device(device or suite.device))
    if not dist.is_main():          # under torchrun rank 0 alone logs, shows progress and writes
        log, progress = _silent, False
    dist.on_main(lambda: _writable_folder(folder))
    for line in plan_lines(suite, names):
        log(line)
    runner = Runner(suite, folder, dev, progress, log)
    with contextlib.ExitStack() as stack:

        def lock() -> None:
            stack.enter_context(ResultsLock(folder))

        dist.on_main(lock)              # rank 0 holds the results lock
        runner.done = dist.on_main(lambda: finished_cells(folder, log) if runner.records_path.exists() else {})
        runner.latest_hash = {r.cell: r.config_hash for r in sorted(runner.done.values(), key=lambda r: r.line or 0)}
        try:
            runner.load_test_set()
            probe = runner.x[:suite.output.batch_size]       # a model with non-finite outputs on it is refused
            models = prepare_models(suite, folder, dev, names, progress, log, probe=probe)
            where = f"{dev}" if dist.world() == 1 else f"{dev}, {dist.world()} processes"
            log(f"evaluating on {len(runner.y)} test points ({where})")
            for name in names:
                if is_classifier(suite, name):
                    runner.check_randomness(models[name])
            for name in names:
                if not is_classifier(suite, name):
                    continue
                for entry in suite.attacks.values():
                    runner.run_cell(models[name], entry)
            cache: dict[tuple[str, str, bool], torch.Tensor] = {}
            for source, aid, target in selected_pairs(suite, names):
                runner.transfer_cell(models[source], suite.attacks[aid], models[target], cache)
            runner.refresh_warnings()
        except KeyboardInterrupt:
            log(f"interrupted: {len(runner.new)} cell(s) finished in this run and saved in {runner.records_path}; "
                "rerun the same command to resume")
            raise
    return [runner.done[h] for h in runner.current]


def finished_cells(folder: Path, log: Callable[[str], None]) -> dict[str, Record]:
    """The cells already in records.jsonl, by config hash. A line that fails validation is reported (by `load`)
    and its cell run again; so is a record without the config hash, clean accuracy or attack spec that reuse needs. The bad
    line stays in the file; the new record, later in the file, wins."""
    done = {}
    for rec in load(folder, allow_empty=True).all:
        missing = [k for k, absent in (("clean_accuracy", rec.clean_accuracy is None),
                                       ("config_hash", not rec.config_hash), ("attack_spec", not rec.attack_spec))
                   if absent]
        if missing:
            log(f"  warning: {folder / RECORDS_FILE}:{rec.line}: cannot be reused (missing field(s) "
                f"{', '.join(missing)}); that cell is run again")
            continue
        done[rec.config_hash] = rec
    return done


def _silent(line: str) -> None:
    pass


def _writable_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder}: is a file, not a folder; choose a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".write-test").write_bytes(b"")
        (folder / ".write-test").unlink()
    except OSError as e:
        raise UserError(f"--out {folder}: cannot write there ({e.strerror}); choose a writable folder") from None

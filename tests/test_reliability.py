"""Reliability and security of `rocl-bench run` and `rocl-bench train`.

SIGKILL at random moments then a rerun gives exactly the uninterrupted records; Ctrl-C stops cleanly; one
writer per results folder; corrupted record lines are reported and skipped; divergence stops with the last good
checkpoint; pickles that run code and python/* YAML tags are refused at every entry point; suite paths are
relative to the suite file and nothing is written outside --out; the same seed gives bit-identical records.

Kills: a fresh `python -m rocl_bench` spends ~3-5 s importing torch before doing any work, so the random kills
are delivered to children forked from a warm "zygote" process that has already imported rocl_bench: each child
is a real process running the real CLI (`rocl_bench.cli.main`) and dies by a real SIGKILL at a seeded random
delay, without paying the import time each time. Each chain of kills ends with a fresh `python -m rocl_bench`
run, and a few kills also hit fresh subprocesses.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rocl_bench.cli import main
from rocl_bench.errors import UserError

TIMING = ("seconds", "peak_memory_mb", "timestamp", "train_seconds")
SEED = 20240611

TINY = """\
name: tiny
seed: 0
device: cpu
data: {dataset: digits, train_limit: 300, test_limit: 60, root: data}
models:
  a: {method: standard, epochs: 12, batch_size: 32}
  b: {method: trades, epochs: 4, batch_size: 64}
  ext: {label: External, factory: 'tinynets:make', checkpoint: nets/ext.pt}
attacks:
  clean: {type: clean}
  pgd_linf: {type: pgd, norm: linf, eps: 0.1, steps: 10}
  pgd_l2: {type: pgd, norm: l2, eps: 1.0, steps: 10}
transfer: {sources: [a, b], attacks: [pgd_linf]}
"""

TINYNETS = """\
import torch


def make():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
"""

TRAIN_ARGS = ["train", "--method", "madry", "--dataset", "digits", "--model", "mlp", "--epochs", "10",
              "--train-limit", "400", "--test-limit", "60", "--batch-size", "64", "--seed", "1", "--device", "cpu",
              "--quiet"]

ZYGOTE = r"""
import json, os, signal, sys, time
import rocl_bench.cli as cli
import rocl_bench.bench.runner, rocl_bench.train            # warm imports: the children start working at once
import sklearn.datasets, sklearn.model_selection
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    if "wait" in job:
        status = os.waitpid(job["wait"], 0)[1]
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
        continue
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.chdir(job["cwd"])
            if "code" in job:
                exec(job["code"], {"__name__": "__job__"})
                code = 0
            else:
                sys.argv = ["rocl-bench", *job["argv"]]
                code = cli.main(job["argv"])
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(log)
    if job.get("detach"):
        print(json.dumps({"pid": pid}), flush=True)
        continue
    killed, status = False, None
    while True:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        if job.get("delay") is not None and time.perf_counter() - t0 >= job["delay"]:
            os.kill(pid, signal.SIGKILL)
            killed = True
            status = os.waitpid(pid, 0)[1]
            break
        time.sleep(0.002)
    print(json.dumps({"killed": killed, "rc": os.waitstatus_to_exitcode(status),
                      "seconds": time.perf_counter() - t0}), flush=True)
"""


class Zygote:
    """A warm process that forks children to run the real CLI (or a snippet) in their own process."""

    def __init__(self, log: Path) -> None:
        self.log = log
        # SIGINT at its default in the zygote (and so in its forked children), whatever the test process inherited
        self.p = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                                  text=True, env=env())
        self._ready = False

    def ready(self) -> "Zygote":
        if not self._ready:
            assert self.p.stdout.readline().strip() == "ready"
            self._ready = True
        return self

    def _ask(self, job: dict) -> dict:
        self.ready()                # any test may be the first to use it (pytest -k)
        job.setdefault("log", str(self.log))
        self.p.stdin.write(json.dumps(job) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def job(self, argv: list[str], cwd: Path, delay: float | None = None) -> dict:
        """Run the CLI in a child; SIGKILL it after `delay` seconds if it is still running."""
        return self._ask({"argv": argv, "cwd": str(cwd), "delay": delay})

    def start(self, argv: list[str], cwd: Path, log: Path) -> int:
        """Start the CLI in a child and return its pid at once (then `wait` for it)."""
        return self._ask({"argv": argv, "cwd": str(cwd), "detach": True, "log": str(log)})["pid"]

    def wait(self, pid: int) -> int:
        return self._ask({"wait": pid})["rc"]

    def code(self, code: str, cwd: Path) -> dict:
        return self._ask({"code": code, "cwd": str(cwd)})

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=60)


def env() -> dict[str, str]:
    """One torch thread (a loaded 2-core machine is 100x slower with two spinning OpenMP threads), unbuffered
    output, and bytecode writing left on, so that a .pyc written next to the suite would be caught."""
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    return e


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rocl_bench", *args], capture_output=True, text=True, cwd=cwd,
                          env=env(), timeout=300)


def stderr_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs use one torch thread too; both settings are restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    torch.set_flush_denormal(False)         # rocl_bench.cli.main turned it on for this whole process


# --------------------------------------------------------------------------- the tiny suite and its baselines
@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("suite")
    (root / "tiny.yaml").write_text(TINY)
    (root / "tinynets.py").write_text(TINYNETS)
    (root / "nets").mkdir()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.save(net.state_dict(), root / "nets" / "ext.pt")
    return root / "tiny.yaml"


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("zygote") / "zygote.log")
    yield z
    z.close()


@pytest.fixture(scope="module")
def baselines(suite, zygote, tmp_path_factory):
    """Uninterrupted runs of the tiny suite: A in a fresh `python -m rocl_bench` process, B in a child of the
    warm zygote (each from its own cwd, with a relative --out), and one uninterrupted `rocl-bench train`."""
    root = tmp_path_factory.mktemp("baselines")
    before = snapshot(suite.parent)
    for name in ("A", "B", "T"):
        (root / name).mkdir()
    a = subprocess.Popen([sys.executable, "-m", "rocl_bench", "run", str(suite), "--out", "out", "--quiet"],
                         cwd=root / "A", env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    zygote.ready()
    b = zygote.job(["run", str(suite), "--out", "out", "--quiet"], root / "B")
    t = zygote.job([*TRAIN_ARGS, "--out", "full"], root / "T")
    out, err = a.communicate(timeout=300)
    assert a.returncode == 0, (out, err)
    assert b["rc"] == 0 and t["rc"] == 0, zygote.log.read_text()[-3000:]
    return {"A": root / "A" / "out", "B": root / "B" / "out", "train": root / "T" / "full", "root": root,
            "suite_before": before, "run_seconds": b["seconds"], "train_seconds": t["seconds"]}


def trained_checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("models/*/checkpoint.pt"))


def assert_same_tensors(a: Path, b: Path) -> None:
    ca, cb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert ca["state_dict"].keys() == cb["state_dict"].keys()
    for k, v in ca["state_dict"].items():
        assert torch.equal(v, cb["state_dict"][k]), (a, k)


def read_records(folder: Path) -> list[dict]:
    """Every line of records.jsonl must be a whole JSON object (no truncated line) and each cell appear once."""
    text = (folder / "records.jsonl").read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]
    hashes = [r["config_hash"] for r in records]
    assert len(hashes) == len(set(hashes)), "duplicate cell"
    return records


def assert_same_records(a: Path, b: Path) -> None:
    """Equal records, ignoring timing fields. `checkpoint_sha256` of a trained model hashes checkpoint.pt, which
    also stores the wall-clock `train_seconds`; while it does, that hash is compared through the tensors."""
    ignored = set(TIMING)
    cks = trained_checkpoints(a)
    if any("train_seconds" in torch.load(p, weights_only=True) for p in cks):
        ignored.add("checkpoint_sha256")
        assert [p.relative_to(a) for p in cks] == [p.relative_to(b) for p in trained_checkpoints(b)]
        for p in cks:
            assert_same_tensors(p, b / p.relative_to(a))
    ra, rb = read_records(a), read_records(b)
    assert len(ra) == len(rb) == 3 * 3 + 4
    for x, y in zip(ra, rb):
        x = {k: v for k, v in x.items() if k not in ignored}
        y = {k: v for k, v in y.items() if k not in ignored}
        assert x == y


def test_same_seed_gives_bit_identical_records(baselines):
    assert_same_records(baselines["A"], baselines["B"])


def test_suite_paths_are_relative_to_the_suite_and_nothing_is_written_outside_out(suite, baselines):
    for name in ("A", "B"):
        assert sorted(p.name for p in (baselines["root"] / name).iterdir()) == ["out"]
    assert snapshot(suite.parent) == baselines["suite_before"]       # no .pyc of tinynets, no data/ folder
    recs = read_records(baselines["A"])
    ext = [r for r in recs if r["model"] == "ext"]
    assert ext and ext[0]["label"] == "External"
    assert not (baselines["A"] / ".lock").exists()


# --------------------------------------------------------------------------- SIGKILL
def kill_fresh_process(args: list[str], cwd: Path, after_line: str) -> bool:
    """SIGKILL a fresh `python -m rocl_bench` process (real start-up included) right after it prints `after_line`."""
    p = subprocess.Popen([sys.executable, "-m", "rocl_bench", *args], cwd=cwd, env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        if line.startswith(after_line):
            break
    killed = p.poll() is None
    p.kill()
    p.communicate(timeout=60)
    return killed


def kill_chains(zygote: Zygote, first: list[str], again: list[str], work: Path, rng: random.Random, window: float,
                kills: int, on_kill=None, fresh_kill_after: str = "") -> tuple[list[Path], int]:
    """Run `first`, then `again`, in one folder, SIGKILLing each run at a seeded random delay, until `kills` runs
    died midway. A run that finishes before its kill ends the chain; the next chain starts in a new folder.

    `window` is how long an uninterrupted run takes (in a warm child). A rerun skips the finished work, so each
    delay is drawn from what is probably left: [0, window - work already done], never less than a quarter of
    the window (the fixed cost of a start). The first chain opens with the SIGKILL of a fresh process just
    after it prints `fresh_kill_after`. Returns the chains' folders (all complete but the last) and the kills."""
    folders: list[Path] = []
    done = 0
    fixed = window / 4
    while done < kills:
        cwd = work / f"chain{len(folders)}"
        cwd.mkdir()
        folders.append(cwd)
        argv, progress = first, 0.0
        if fresh_kill_after and len(folders) == 1 and kill_fresh_process(first, cwd, fresh_kill_after):
            done += 1
            if on_kill:
                on_kill(cwd)
            argv, progress = again, window / 2
        while done < kills:
            delay = rng.uniform(0.0, max(fixed, window - progress))
            r = zygote.job(argv, cwd, delay)
            if not r["killed"]:
                assert r["rc"] == 0, zygote.log.read_text()[-3000:]
                break
            done += 1
            progress += max(0.0, delay - fixed)
            if on_kill:
                on_kill(cwd)
            argv = again
    return folders, done


def test_sigkill_at_random_points_then_rerun_equals_the_uninterrupted_run(suite, baselines, zygote, tmp_path):
    rng = random.Random(SEED)
    stale = []

    def saw_kill(cwd: Path) -> None:
        lock = cwd / "out" / ".lock"
        if lock.exists():
            stale.append(lock.read_text())

    run_argv = ["run", str(suite), "--out", "out", "--quiet"]
    (tmp_path / "run").mkdir()
    run_folders, run_kills = kill_chains(zygote, run_argv, run_argv, tmp_path / "run", rng,
                                         baselines["run_seconds"], 10, saw_kill, fresh_kill_after="training b")
    train_first, train_again = [*TRAIN_ARGS, "--out", "out"], [*TRAIN_ARGS, "--out", "out", "--resume"]
    (tmp_path / "train").mkdir()
    train_folders, train_kills = kill_chains(zygote, train_first, train_again, tmp_path / "train", rng,
                                             baselines["train_seconds"], 10)
    assert run_kills >= 10 and train_kills >= 10
    assert stale, "no kill left a lock file behind: the stale-lock takeover was not exercised"

    # the last chain of each kind ends with the same command in a fresh process (both at once)
    finals = [subprocess.Popen([sys.executable, "-m", "rocl_bench", *argv], cwd=cwd, env=env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for argv, cwd in ((run_argv, run_folders[-1]), (train_again, train_folders[-1]))]
    for p in finals:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "Traceback" not in err, err
    for cwd in run_folders:
        assert_same_records(baselines["A"], cwd / "out")
        assert not (cwd / "out" / ".lock").exists()
        assert sorted(p.name for p in cwd.iterdir()) == ["out"]
        assert not [p for p in (cwd / "out").rglob(".*") if p.is_file()], "leftovers of killed writes"
    full = baselines["train"]
    for cwd in train_folders:
        out = cwd / "out"
        assert not [p for p in out.rglob(".*") if p.is_file()], "leftovers of killed writes"
        assert (out / "metrics.jsonl").read_bytes() == (full / "metrics.jsonl").read_bytes()
        assert_same_tensors(full / "checkpoint.pt", out / "checkpoint.pt")
        assert_same_tensors(full / "last.pt", out / "last.pt")
        a = torch.load(full / "last.pt", weights_only=True)["optimizer"]
        b = torch.load(out / "last.pt", weights_only=True)["optimizer"]
        for i, state in a["state"].items():
            for name, v in state.items():
                assert torch.equal(v, b["state"][i][name]) if isinstance(v, torch.Tensor) else v == b["state"][i][name]


# --------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(suite, zygote, tmp_path):
    # a terminal's Ctrl-C reaches a process whose SIGINT is at its default; reset it in the child, since an
    # ignored SIGINT is inherited and Python then installs no KeyboardInterrupt handler (in the full test run the
    # child once finished with exit 0, as if it had never received the signal)
    p = subprocess.Popen([sys.executable, "-m", "rocl_bench", "run", str(suite), "--out", "out", "--quiet"],
                         cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in p.stdout:
        seen.append(line)
        if line.startswith("training"):
            break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (seen, out, err)
    assert "Traceback" not in err
    lines = stderr_lines(err)
    assert len(lines) == 1 and "resume" in lines[0] and "records.jsonl" in lines[0], err
    assert "interrupted:" in out and "cell(s) finished" in out       # what was finished
    assert not (tmp_path / "out" / ".lock").exists()

    # train, in a child of the warm zygote: Ctrl-C once epoch 2 is saved
    log = tmp_path / "train.log"
    pid = zygote.start([*TRAIN_ARGS, "--epochs", "2000", "--out", "t"], tmp_path, log)
    deadline = time.time() + 120
    while not ((tmp_path / "t" / "metrics.jsonl").exists()
               and len((tmp_path / "t" / "metrics.jsonl").read_text().splitlines()) >= 2) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(pid, signal.SIGINT)
    assert zygote.wait(pid) == 130, log.read_text()
    err = log.read_text()
    assert "Traceback" not in err
    lines = [ln for ln in stderr_lines(err) if ln.startswith("rocl-bench")]
    epochs = len((tmp_path / "t" / "metrics.jsonl").read_text().splitlines())
    assert len(lines) == 1 and "--resume" in lines[0] and f"keeps epoch {epochs}" in lines[0], err


# --------------------------------------------------------------------------- one writer per results folder
RACE = """
import json, os, sys, time
from pathlib import Path
from rocl_bench.bench.provenance import ResultsLock
from rocl_bench.errors import UserError

start = time.time() + 0.3
children = []
for i in range(6):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        while time.time() < start:
            pass
        try:
            with ResultsLock(Path("results")):
                t0 = time.time()
                time.sleep(0.3)
                out = {"got": [t0, time.time()], "pid": os.getpid()}
        except UserError as e:
            out = {"refused": str(e)}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    children.append((pid, r))
results = []
for pid, r in children:
    os.waitpid(pid, 0)
    results.append(json.loads(os.read(r, 65536)))
Path("race.json").write_text(json.dumps(results))
"""


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_racing_for_a_stale_lock_gives_one_owner_at_a_time(zygote, tmp_path):
    (tmp_path / "results").mkdir()
    dead = dead_pid()
    (tmp_path / "results" / ".lock").write_text(str(dead))
    assert zygote.code(RACE, tmp_path)["rc"] == 0, zygote.log.read_text()[-3000:]
    results = json.loads((tmp_path / "race.json").read_text())
    held = sorted(r["got"] for r in results if "got" in r)
    assert held, results
    for (_, end), (start, _) in zip(held, held[1:]):
        assert start >= end, f"two owners at once: {results}"
    pids = {str(r["pid"]) for r in results if "got" in r}
    for r in results:
        if "refused" in r:        # names the owner (or, if it is already gone, says so), never the dead one
            assert any(f"another rocl-bench run (pid {p}{end}" in r["refused"] for p in [*pids, "unknown"]
                       for end in (")", ", started")), r
            assert f"pid {dead}" not in r["refused"]
    assert not (tmp_path / "results" / ".lock").exists()


def test_a_lock_whose_pid_was_reused_is_stale_and_a_live_owner_is_named_with_its_start_time(tmp_path):
    """The lock file holds "PID START": a live process with that pid but another start time is not the owner."""
    from rocl_bench.errors import UserError
    from rocl_bench.locking import FolderLock, start_time

    me = os.getpid()
    if start_time(me) is None:
        pytest.skip("no /proc/PID/stat: start times unknown on this OS")
    lock = tmp_path / ".lock"
    lock.write_text(f"1 {start_time(1) + 1}")           # pid 1 is alive, but it started at another time
    with FolderLock(tmp_path, "busy ({who})"):
        assert lock.read_text().split() == [str(me), str(start_time(me))]
    assert not lock.exists()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{child.pid} {start_time(child.pid)}")     # hand-written, not flocked, owner alive
        with pytest.raises(UserError, match=rf"busy \(pid {child.pid}, started \d{{4}}-\d\d-\d\d "):
            with FolderLock(tmp_path, "busy ({who})"):
                pass
    finally:
        child.kill()
        child.wait()
    assert lock.exists()                       # a refusal leaves the owner's lock alone


LONG = """\
name: long
seed: 0
device: cpu
data: {dataset: digits, train_limit: 300, test_limit: 60}
models:
  slow: {method: standard, epochs: 20000, batch_size: 300}
attacks:
  clean: {type: clean}
"""


def test_a_second_run_on_the_same_folder_refuses_and_a_dead_owner_is_taken_over(zygote, tmp_path):
    from rocl_bench.bench.provenance import ResultsLock
    from rocl_bench.locking import start_time

    (tmp_path / "long.yaml").write_text(LONG)
    log = tmp_path / "first.log"
    first = zygote.start(["run", "long.yaml", "--out", "out", "--quiet"], tmp_path, log)
    try:
        deadline = time.time() + 120
        while "training slow" not in (log.read_text() if log.exists() else "") and time.time() < deadline:
            time.sleep(0.01)
        second = cli("run", "long.yaml", "--out", "out", "--quiet", cwd=tmp_path)
        assert "training slow" in log.read_text() and "epoch 20000/" not in log.read_text()
    finally:
        os.kill(first, signal.SIGKILL)
        assert zygote.wait(first) == -signal.SIGKILL
    assert second.returncode == 2 and "Traceback" not in second.stderr
    lines = stderr_lines(second.stderr)
    assert len(lines) == 1, second.stderr
    assert f"another rocl-bench run (pid {first}, started " in lines[0] and "--out" in lines[0]
    assert not (tmp_path / "out" / "records.jsonl").exists()
    lock = tmp_path / "out" / ".lock"
    assert lock.read_text().split()[0] == str(first)   # SIGKILL left it behind: stale now
    with ResultsLock(tmp_path / "out"):
        assert lock.read_text().split() == [str(os.getpid()), str(start_time(os.getpid()))]
    assert not lock.exists()


def test_a_second_training_into_the_same_folder_is_refused(zygote, tmp_path):
    args = ["train", "--method", "standard", "--dataset", "digits", "--model", "mlp", "--epochs", "20000",
            "--out", "t", "--quiet"]
    first = zygote.start(args, tmp_path, tmp_path / "first.log")
    try:
        deadline = time.time() + 120
        while not (tmp_path / "t" / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.01)
        second = cli(*args, "--resume", cwd=tmp_path)
    finally:
        os.kill(first, signal.SIGKILL)
        assert zygote.wait(first) == -signal.SIGKILL
    assert second.returncode == 2 and "Traceback" not in second.stderr
    lines = stderr_lines(second.stderr)
    assert len(lines) == 1 and f"another training run (pid {first}, started " in lines[0], second.stderr
    from rocl_bench.locking import FolderLock

    with FolderLock(tmp_path / "t", "busy"):        # SIGKILL left the lock file; its flock died with the owner
        pass
    assert not (tmp_path / "t" / ".lock").exists()


# --------------------------------------------------------------------------- corrupted records
def test_corrupted_record_lines_are_reported_with_their_line_numbers_and_skipped(suite, baselines, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(baselines["A"], out)
    lines = (out / "records.jsonl").read_text().splitlines()
    n = len(lines)
    lines[1] = lines[1][: len(lines[1]) // 2]                  # truncated by a crash in an older version
    lines[4] = "{this was edited by hand"
    text = "\n".join(lines) + "\n" + '{"model": "a", "attack": "cl'   # torn last line, no newline
    (out / "records.jsonl").write_text(text)

    assert main(["run", str(suite), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    for number in (2, 5, n + 1):
        assert f"records.jsonl:{number}:" in err and "skipped" in err, err
    assert "Traceback" not in err
    kept = (out / "records.jsonl").read_text()
    assert kept.startswith(text)                               # bad lines kept for inspection, never dropped
    base = read_records(baselines["A"])
    redone = [json.loads(x) for x in kept.splitlines()[n + 1:]]  # the two lost cells, recomputed
    assert [r["config_hash"] for r in redone] == [base[1]["config_hash"], base[4]["config_hash"]]

    assert main(["table", str(out)]) == 0
    captured = capsys.readouterr()
    for number in (2, 5, n + 1):
        assert f"records.jsonl:{number}:" in captured.err
    assert "| External |" in captured.out

    from rocl_bench.record import load

    latest = {r.config_hash: r.to_dict() for r in load(out, warn=lambda s: None).latest()}
    assert latest.keys() == {r["config_hash"] for r in base}
    for r in base:
        h = r["config_hash"]
        assert latest[h]["robust_accuracy"] == r["robust_accuracy"] and latest[h]["robust_mask"] == r["robust_mask"]


# --------------------------------------------------------------------------- divergence
def test_diverging_training_stops_with_the_last_good_checkpoint(tmp_path, capsys):
    """A step schedule whose rate jumps ×1e8 after epoch 1: epoch 1 trains, epoch 2 blows up (verified: NaN)."""
    (tmp_path / "div.yaml").write_text("method: standard\ndataset: digits\nmodel: mlp\nepochs: 3\nbatch_size: 64\n"
                                       "lr: 0.05\nschedule: step\nmilestones: [1]\ngamma: 1.0e8\ntrain_limit: 200\n"
                                       "device: cpu\n")
    code = main(["train", str(tmp_path / "div.yaml"), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = stderr_lines(err)
    assert len(lines) == 1 and "diverged" in lines[0] and "epoch 2, step" in lines[0] and "last.pt" in lines[0]
    from rocl_bench.train import load_checkpoint

    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


# --------------------------------------------------------------------------- security
class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_code_running_pickles_are_refused_at_every_entry_point(tmp_path, capsys):
    from rocl_bench.bench.runner import run_suite
    from rocl_bench.train import load_checkpoint

    marker = tmp_path / "pwned"
    evil_zip = tmp_path / "evil.pt"            # torch.save format
    torch.save({"format_version": 1, "state_dict": {"w": torch.zeros(1)}, "x": _Payload(str(marker))}, evil_zip)
    evil_raw = tmp_path / "evil_raw.pt"        # a bare pickle
    with open(evil_raw, "wb") as f:
        pickle.dump({"w": _Payload(str(marker))}, f)
    marker.unlink(missing_ok=True)
    (tmp_path / "nets.py").write_text(TINYNETS)

    def refused(code: int) -> None:
        err = capsys.readouterr().err
        assert code == 2, err
        lines = stderr_lines(err)
        assert len(lines) == 1 and "refused" in lines[0] and "Traceback" not in err, err
        assert not marker.exists()

    for evil in (evil_zip, evil_raw):
        with pytest.raises(UserError, match="refused"):
            load_checkpoint(evil)
        assert not marker.exists()
        # rocl-bench train --encoder
        refused(main(["train", "--method", "linear", "--encoder", str(evil), "--epochs", "1", "--quiet",
                      "--out", str(tmp_path / "o1")]))
        assert not (tmp_path / "o1").exists()
        # --resume with a poisoned last.pt
        out = tmp_path / "o2"
        out.mkdir(exist_ok=True)
        shutil.copy(evil, out / "last.pt")
        refused(main(["train", "--method", "standard", "--epochs", "1", "--quiet", "--resume", "--out", str(out)]))
        # a suite model's checkpoint (classifier_from_checkpoint), a factory's checkpoint, a training encoder
        for i, model in enumerate([f"{{checkpoint: {evil.name}}}",
                                   f"{{factory: 'nets:make', checkpoint: {evil.name}}}",
                                   f"{{method: linear, epochs: 1, encoder: {evil.name}}}"]):
            suite = tmp_path / f"s{i}.yaml"
            suite.write_text(f"name: s\ndata: {{dataset: digits, test_limit: 20}}\nmodels:\n  m: {model}\n"
                             "attacks:\n  clean: {type: clean}\n")
            refused(main(["run", str(suite), "--out", str(tmp_path / f"r{i}"), "--quiet"]))
            assert not (tmp_path / f"r{i}").exists()
            with pytest.raises(UserError, match="refused"):
                run_suite(suite, out=str(tmp_path / f"api{i}"), progress=False, log=lambda s: None)
            assert not marker.exists() and not (tmp_path / f"api{i}").exists()


def test_python_yaml_tags_are_refused_in_suites_and_train_configs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    tags = [f"!!python/object/apply:os.system ['touch {marker}']",
            f"!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
            "!!python/name:os.system",
            "!!python/module:os"]
    for i, tag in enumerate(tags):
        for kind, text in (("suite", f"name: {tag}\nmodels: {{m: {{method: standard}}}}\nattacks: {{c: clean}}\n"),
                           ("train", f"method: standard\nepochs: {tag}\n"),
                           ("whole", f"{tag}\n")):
            path = tmp_path / f"{kind}{i}.yaml"
            path.write_text(text)
            argv = (["run", str(path)] if kind != "train" else ["train", str(path)]) + ["--out", str(tmp_path / "o")]
            code = main(argv)
            err = capsys.readouterr().err
            assert code == 2 and "Traceback" not in err, err
            lines = stderr_lines(err)
            assert len(lines) == 1 and path.name in lines[0] and "python/" in lines[0], err
            assert not marker.exists() and not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- a really full disk
@pytest.fixture
def tiny_disk(tmp_path):
    """A 160 KiB tmpfs (needs root and mount); skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the bad-input corpus simulates ENOSPC instead")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_really_full_disk_gives_one_line_and_leaves_nothing(tiny_disk, tmp_path):
    """Issue 17: torch.save's RuntimeError, an empty .lock and an empty model folder were left on ENOSPC."""
    trained = cli("train", "--epochs", "1", "--train-limit", "64", "--test-limit", "20", "--quiet", "--out",
                  str(tiny_disk / "run"), cwd=tmp_path)
    assert trained.returncode == 2 and "Traceback" not in trained.stderr, trained.stderr
    lines = stderr_lines(trained.stderr)
    assert len(lines) == 1 and "last.pt" in lines[0] and "No space left on device" in lines[0], trained.stderr
    assert list(tiny_disk.iterdir()) == []                     # no model folder, no lock, no temporary file
    filler = tiny_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)             # now fill it up completely
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    (tmp_path / "s.yaml").write_text("name: s\ndata: {dataset: digits, test_limit: 20}\nmodels:\n"
                                     "  m: {method: standard, epochs: 1}\nattacks:\n  clean: {type: clean}\n")
    records = tmp_path / "r.jsonl"
    records.write_text(json.dumps({"model": "m", "attack": "clean", "robust_accuracy": 0.5}) + "\n")
    for args, name in ((["run", "s.yaml", "--quiet", "--out", str(tiny_disk / "out")], ".lock"),
                       (["table", str(records), "--out", str(tiny_disk / "t.md")], "t.md")):
        r = cli(*args, cwd=tmp_path)
        lines = stderr_lines(r.stderr)
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert name in lines[0] and "No space left on device" in lines[0], r.stderr
        assert [p.name for p in tiny_disk.iterdir()] == ["filler"], r.stderr

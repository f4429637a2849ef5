"""Bad input, through the real CLI: one line on stderr naming the file, the field and the fix; exit 2; no
traceback; nothing left behind.

The corpus is tests/bad_inputs/ (suites and train configs as files, the cases in manifest.yaml). A run that fails
validation leaves no output folder at all: the suite is checked completely before anything is written, and
when a check only fails once the run has started (a missing data folder, no CUDA), the CLI removes the empty
folders it created. Starting Python and importing torch costs ~4 s, so the cases run in ONE subprocess
(tests/bad_inputs/driver.py calls `rocl_bench.cli.main` per case, with a fresh sys.argv and cwd); those marked
`subprocess: true` run as their own `python -m rocl_bench` process, so the real stderr and exit code are
checked too.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
sys.path.insert(0, str(CORPUS))
from driver import snapshot  # noqa: E402  (the driver's own view of a folder, so both compare alike)

sys.path.pop(0)
MANIFEST = yaml.safe_load((CORPUS / "manifest.yaml").read_text())
IDS = [c["id"] for c in MANIFEST]
assert len(IDS) >= 40 and len(set(IDS)) == len(IDS)

ROOT_IGNORES_PERMISSIONS = hasattr(os, "geteuid") and os.geteuid() == 0


def env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def make_checkpoints(ckpt: Path, marker: Path) -> None:
    from rocl_bench.data import dataset_info
    from rocl_bench.models import ModelSpec, build_model
    from rocl_bench.train.checkpoint import save_checkpoint

    digits, cifar = dataset_info("digits"), dataset_info("cifar10")
    ckpt.mkdir()

    def save(name: str, arch: str, classes: int = 10, info=digits) -> torch.nn.Module:
        spec = ModelSpec(arch, classes, info.channels, info.image_size, tuple(info.mean), tuple(info.std))
        model = build_model(spec)
        save_checkpoint(ckpt / name, {"model_spec": spec.to_dict(), "method": "standard", "epoch": 1,
                                      "config_hash": "another-run", "state_dict": model.state_dict()})
        return model

    torch.manual_seed(0)
    save("good_mlp.pt", "mlp")
    cnn = save("cnn.pt", "cnn-small")
    save("mlp3.pt", "mlp", classes=3)
    save("cifar_encoder.pt", "mlp", info=cifar)
    torch.save(cnn.state_dict(), ckpt / "statedict_cnn.pt")
    torch.save({"format_version": 1, "model_spec": {"arch": "mlp"}, "state_dict": {"w": torch.zeros(1)}},
               ckpt / "badspec.pt")
    (ckpt / "empty.pt").write_bytes(b"")
    good = (ckpt / "good_mlp.pt").read_bytes()
    (ckpt / "truncated.pt").write_bytes(good[: len(good) // 2])
    (ckpt / "text.pt").write_text("this is not a checkpoint\n")
    torch.save({"format_version": 1, "state_dict": {"w": torch.zeros(1)}, "x": _Payload(str(marker))},
               ckpt / "evil.pt")
    marker.unlink(missing_ok=True)
    # garbage models: each must be refused at load, naming the tensor or the spec field
    good = torch.load(ckpt / "good_mlp.pt", weights_only=True)
    first = next(k for k, v in good["state_dict"].items() if v.is_floating_point() and v.dim() == 2)

    def variant(name: str, spec: dict | None = None, tensors: dict | None = None) -> None:
        torch.save({**good, "model_spec": {**good["model_spec"], **(spec or {})},
                    "state_dict": {**good["state_dict"], **(tensors or {})}}, ckpt / name)

    w = good["state_dict"][first]
    variant("nan_mlp.pt", tensors={first: torch.full_like(w, float("nan"))})
    variant("int8_mlp.pt", tensors={first: w.to(torch.int8)})
    variant("complex_mlp.pt", tensors={first: w.to(torch.complex64)})
    variant("zero_std.pt", spec={"std": [0.0]})
    variant("inf_outputs.pt", tensors={k: torch.full_like(v, 3e38) for k, v in good["state_dict"].items()
                                       if v.is_floating_point()})
    torch.save({**good, "train_config": {"dataset": "digits"}}, ckpt / "analyzable.pt")


def setup_case(kind: str | None, work: Path, out: Path, ckpt: Path) -> None:
    if kind is None:
        return
    if kind == "out_file":
        out.write_text("a file where the output folder should be\n")
    elif kind == "under_file":
        (work / "afile").write_text("a file, so nothing can be created under it\n")
    elif kind == "read_only":
        (work / "ro").mkdir()
        (work / "ro").chmod(0o555)
    elif kind.startswith("resume_"):
        out.mkdir()
        source = {"resume_evil": "evil.pt", "resume_truncated": "truncated.pt", "resume_other": "good_mlp.pt"}[kind]
        shutil.copy(ckpt / source, out / "last.pt")
    elif kind == "binary":
        (work / "binary.yaml").write_bytes(b"name: \xff\xfe\xfa not utf-8\n")
    elif kind == "empty_records":
        (work / "records.jsonl").write_text("")
    elif kind == "fifo":
        os.mkfifo(work / "suite.fifo")
    else:
        raise AssertionError(f"unknown setup {kind}")


def skip_reason(case: dict) -> str | None:
    if case.get("setup") == "read_only" and ROOT_IGNORES_PERMISSIONS:
        return ("running as root, which ignores permissions: a read-only folder is writable; the --out-under-a-"
                "file cases cover an unwritable --out")
    if case.get("skip_if_cuda") and torch.cuda.is_available():
        return "needs a machine without CUDA"
    if (case.get("fault") or case.get("setup") == "fifo") and not Path("/proc/self/fd").is_dir():
        return "fault injection and FIFOs need Linux (/proc/self/fd, mkfifo)"
    return None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    corpus = root / "corpus"
    shutil.copytree(CORPUS, corpus, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    ckpt = corpus / "ckpt"
    marker = root / "PWNED-by-pickle"
    make_checkpoints(ckpt, marker)
    cases = {}
    for c in MANIFEST:
        work = root / "work" / c["id"]
        work.mkdir(parents=True)
        out = work / "out"

        def fill(text: str, work: Path = work, out: Path = out) -> str:
            return str(text).format(corpus=corpus, ckpt=ckpt, work=work, out=out)

        setup_case(c.get("setup"), work, out, ckpt)
        cases[c["id"]] = {**c, "argv": [fill(a) for a in c["argv"]], "expect": [fill(e) for e in c["expect"]],
                          "work": str(work)}
    before = snapshot(corpus)
    batch = [c for c in cases.values() if not c.get("subprocess") and not skip_reason(c)]
    (root / "cases.json").write_text(json.dumps(batch))
    driver = subprocess.Popen([sys.executable, str(CORPUS / "driver.py"), str(root / "cases.json"),
                               str(root / "results.json")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env())
    alone = {}                      # the cases that run as their own process, alongside the driver
    for c in cases.values():
        if c.get("subprocess") and not skip_reason(c):
            work = Path(c["work"])
            alone[c["id"]] = (snapshot(work), subprocess.Popen(
                [sys.executable, "-m", "rocl_bench", *c["argv"]], cwd=work, env=env(), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, stdin=subprocess.PIPE if "stdin" in c else None))
    output = driver.communicate(timeout=600)[0]
    assert driver.returncode == 0, output
    results = {x["id"]: x for x in json.loads((root / "results.json").read_text())}
    for case_id, (snap, p) in alone.items():
        _, err = p.communicate(input=cases[case_id].get("stdin"), timeout=300)
        results[case_id] = {"code": p.returncode, "stderr": err, "before": snap,
                            "after": snapshot(Path(cases[case_id]["work"]))}
    yield {"cases": cases, "results": results, "corpus": corpus, "before": before, "marker": marker}
    ro = root / "work" / "run-out-read-only" / "ro"
    if ro.exists():
        ro.chmod(0o755)


@pytest.mark.parametrize("case_id", IDS)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(corpus, case_id):
    case = corpus["cases"][case_id]
    reason = skip_reason(case)
    if reason:
        pytest.skip(reason)
    res = corpus["results"][case_id]
    code, stderr, before, after = res["code"], res["stderr"], res["before"], res["after"]
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == case.get("code", 2), stderr
    assert len(lines) == 1, stderr
    for needle in case["expect"]:
        assert needle in lines[0], f"{needle!r} not in: {lines[0]}"
    allowed = set(case.get("may_leave", []))
    assert {k: v for k, v in after.items() if k not in allowed} == before, "files were left behind"
    assert not any(".tmp" in name for name in after), "a temporary file was left behind"
    assert not corpus["marker"].exists(), "a pickle ran code"
    assert snapshot(corpus["corpus"]) == corpus["before"]

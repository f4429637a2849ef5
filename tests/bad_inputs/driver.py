"""Run many bad-input cases through `rocl_bench.cli.main` in ONE process (start-up costs ~4 s per process).

Usage: python driver.py CASES.json RESULTS.json. CASES.json is a list of {id, argv, work} with placeholders
already filled in. Each case runs with cwd = its work folder and a fresh sys.argv; its stdout is discarded and
its stderr captured. A case that raises anything but SystemExit is recorded with its traceback. A case with
`fault` runs with one os call failing as a full disk or read-only file system would make it fail.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder`, with its size and mode (folders marked), to spot anything left behind."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = "dir" if p.is_dir() else f"{st.st_size}:{oct(st.st_mode)}"
    return out


@contextlib.contextmanager
def fault(spec: dict | None):
    """Simulate a full disk or a read-only file system: os.<call> (fsync, pwrite, mkdir) fails with `errno` for
    files whose name matches `match` (fnmatch), as the kernel would report it. Restored after the case."""
    if not spec:
        yield
        return
    import errno
    import fnmatch

    code = getattr(errno, spec["errno"])
    real = getattr(os, spec["call"])

    def failing(target, *args, **kwargs):
        path = os.readlink(f"/proc/self/fd/{target}") if isinstance(target, int) else os.fspath(target)
        if fnmatch.fnmatch(os.path.basename(path), spec.get("match", "*")):
            raise OSError(code, os.strerror(code))
        return real(target, *args, **kwargs)

    setattr(os, spec["call"], failing)
    try:
        yield
    finally:
        setattr(os, spec["call"], real)


def run_case(case: dict) -> dict:
    from rocl_bench.cli import main

    work = Path(case["work"])
    os.chdir(work)
    before = snapshot(work)
    err, out = io.StringIO(), io.StringIO()
    sys.argv = ["rocl-bench", *case["argv"]]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), fault(case.get("fault")):
        try:
            code = main(list(case["argv"]))
        except SystemExit as e:            # argparse
            code = e.code if isinstance(e.code, int) else 2
        except BaseException:              # noqa: BLE001 - a bug: keep the traceback for the report
            traceback.print_exc(file=err)
            code = "crashed"
    return {"id": case["id"], "code": code, "stderr": err.getvalue(), "before": before, "after": snapshot(work),
            "seconds": round(time.perf_counter() - t0, 3)}


def main() -> None:
    cases_file, results_file = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    cases = json.loads(cases_file.read_text())
    results = [run_case(c) for c in cases]
    results_file.write_text(json.dumps(results))


if __name__ == "__main__":
    main()

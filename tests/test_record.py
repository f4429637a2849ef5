"""The Record type: every field read back as written, 0.1.0 records read, bad lines named and skipped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rocl_bench.bench.runner import finished_cells
from rocl_bench.errors import UserError
from rocl_bench.record import (RECORDS_FILE, SCHEMA, Record, RecordError, append, encode_mask, latest_per_cell,
                               load)

ROOT = Path(__file__).resolve().parents[1]
# records written by 0.1.0: results/ci's as committed at e05a1d0 (before the #16 re-run), results/mnist's as
# committed at 5c52c0a (before its re-run), and the report fixture
OLD = [ROOT / "tests" / "fixtures" / "records_0_1_0_ci.jsonl", ROOT / "tests" / "fixtures" / "records_0_1_0_mnist.jsonl",
       ROOT / "tests" / "fixtures" / "records_small.jsonl"]


def good(**changes) -> dict:
    base = {"model": "m", "attack": "pgd", "robust_accuracy": 0.25, "clean_accuracy": 0.75, "n": 4,
            "robust_mask": encode_mask(np.array([1, 0, 0, 0], bool)),
            "clean_mask": encode_mask(np.array([1, 1, 1, 0], bool)), "config_hash": "h",
            "attack_spec": {"type": "pgd", "norm": "linf", "eps": 0.1}, "seen": True, "flags": ["f"],
            "versions": {"rocl_bench": "0.2.0"}, "model_index": 0, "attack_index": 1, "seconds": 0.5}
    base.update(changes)
    return base


@pytest.mark.parametrize("path", OLD, ids=lambda p: p.stem if p.parent.name == "fixtures" else p.parent.name)
def test_records_of_0_1_0_read_as_schema_1_and_keep_every_value(path):
    lines = path.read_text().splitlines()
    recs = load(path, warn=pytest.fail)
    assert len(recs.all) == len(lines) and recs.skipped == []
    for rec in recs.all:
        assert rec.schema == 1
        written = rec.to_dict()
        for key, value in json.loads(lines[rec.line - 1]).items():
            assert written[key] == value, key           # no field lost or changed on the way through


def test_round_trip_and_schema_written():
    rec = Record.make(**good())
    assert Record.from_dict(good()).schema == 1                 # no "schema" field: a 0.1.0 record
    assert rec.schema == SCHEMA and json.loads(rec.to_json())["schema"] == SCHEMA
    assert Record.from_json(rec.to_json()) == rec
    assert rec.flags == ("f",) and rec.robust().tolist() == [True, False, False, False]
    assert rec.threat == ("pgd", "linf", 0.1) and rec.cell == ("m", "pgd", None)


@pytest.mark.parametrize("changes, why", [
    ({"robust_accuracy": 1.5}, "robust_accuracy=1.5 is not a fraction in [0, 1]"),
    ({"clean_accuracy": True}, "clean_accuracy=True is not a fraction"),
    ({"model": ""}, "model is '', not a non-empty string"),
    ({"attack": None}, "missing field(s) attack"),
    ({"n": 0}, "n=0 is not a positive integer"),
    ({"n": 3.5}, "n=3.5 is not a positive integer"),
    ({"seconds": -1}, "seconds=-1 is not a finite number >= 0"),
    ({"seen": "yes"}, "seen is 'yes', not true or false"),
    ({"flags": "x"}, "flags is 'x', not a list of strings"),
    ({"label": 3}, "label is 3, not a string"),
    ({"attack_spec": []}, "attack_spec is not an object"),
    ({"attack_spec": {"type": "pgd", "eps": "8/255"}}, "attack_spec.eps='8/255' is not a finite number"),
    ({"attack_spec": {"type": "transfer", "crafted_with": {"norm": 2}}}, "attack_spec.crafted_with.norm is 2"),
    ({"robust_mask": "AAA="}, "robust_mask holds 2 bytes, 1 expected for n=4"),
    ({"n": 40}, "robust_mask holds 1 bytes, 5 expected for n=40"),
    ({"clean_mask": "not base64!"}, "clean_mask is not base64"),
    ({"schema": 3}, "newer than this rocl-bench reads"),
    ({"schema": 0}, "schema=0 is not a record schema version"),
])
def test_invalid_records_are_refused_with_the_reason(changes, why):
    with pytest.raises(RecordError) as e:
        Record.from_dict(good(**changes))
    assert why in str(e.value)


def test_a_bad_line_is_reported_with_its_number_skipped_and_the_rest_read(tmp_path):
    lines = [json.dumps(good()), json.dumps(good(robust_accuracy=float("nan"))),
             json.dumps(good(attack="fgsm", n=-2)), "[1]", json.dumps(good(attack="cw"))]
    (tmp_path / RECORDS_FILE).write_text("\n".join(lines) + "\n")
    said: list[str] = []
    recs = load(tmp_path, warn=said.append)
    assert [r.attack for r in recs.all] == ["pgd", "cw"] and recs.skipped == [2, 3, 4]
    assert said[0].endswith(":2: not a usable record (NaN is not a number this file may hold), line skipped")
    assert ":3: not a usable record (n=-2 is not a positive integer), line skipped" in said[1]
    assert ":4: not a usable record (a JSON list, not an object), line skipped" in said[2]
    (tmp_path / RECORDS_FILE).write_text(lines[1] + "\n")
    with pytest.raises(UserError, match="no usable records"):
        load(tmp_path, warn=said.append)


def test_append_adds_one_line_and_latest_record_per_cell_wins(tmp_path):
    (tmp_path / RECORDS_FILE).write_text(json.dumps(good()))          # a last line without its newline
    append(tmp_path, Record.from_dict(good(robust_accuracy=0.5, robust_mask=encode_mask(np.array([1, 1, 0, 0])))))
    append(tmp_path, Record.from_dict(good(attack="t", source="s", attack_index=-1)))
    text = (tmp_path / RECORDS_FILE).read_text()
    assert text.count("\n") == 3 and text.endswith("\n")
    recs = load(tmp_path)
    latest = latest_per_cell(recs.all)
    assert [(r.attack, r.robust_accuracy, r.line) for r in latest] == [("t", 0.25, 3), ("pgd", 0.5, 2)]


def test_run_reruns_the_cells_of_invalid_or_unreusable_records(tmp_path):
    lines = [json.dumps(good(config_hash="ok")), json.dumps(good(config_hash="bad", robust_accuracy=2)),
             json.dumps(good(config_hash=None)), json.dumps(good(config_hash="noclean", clean_accuracy=None))]
    (tmp_path / RECORDS_FILE).write_text("\n".join(lines) + "\n")
    log: list[str] = []
    done = finished_cells(tmp_path, log.append)
    assert list(done) == ["ok"]
    assert [line.split(RECORDS_FILE)[1][:3] for line in log] == [":3:", ":4:"]

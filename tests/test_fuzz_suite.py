"""Fuzz the suite loader: any YAML document gives a valid Suite or one clean UserError, never another exception.

Documents are generated structured data (nested mappings, lists and scalars that mix the suite's real keys and
names with wrong types, odd numbers and random text), dumped with yaml.safe_dump, plus raw random text. The
search is derandomized so CI sees the same examples every run. No subnormal floats: `rocl_bench.cli.main` and
`run_suite` flush denormals to zero for the whole process (torch.set_flush_denormal), so once any test has run
them in-process, hypothesis cannot represent subnormals.
"""
from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rocl_bench.bench.suite import DataSection, OutputSection, Smoothing, Suite, load_suite
from rocl_bench.errors import UserError

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TOP = ["name", "seed", "device", "data", "models", "attacks", "transfer", "output", "description"]
DATA = ["dataset", "root", "download", "train_limit", "test_limit"]
MODEL = ["method", "model", "epochs", "batch_size", "lr", "optimizer", "schedule", "encoder", "checkpoint", "factory",
         "label", "smoothing", "params", "milestones", "warmup_epochs", "seed", "dataset", "amp"]
ATTACK = ["type", "eps", "norm", "steps", "step_size", "restarts", "loss", "seen", "version", "attacks", "queries",
          "eot_samples", "c", "seed", "random_start", "l1_sparsity"]
OTHER = ["sources", "targets", "samples", "augment", "dir", "beta", "false_negatives", "mode", "top_k"]
NAMES = ["digits", "mnist", "cifar10", "imagefolder", "mlp", "cnn-small", "resnet18", "standard", "madry", "trades",
         "simclr", "rocl", "linear", "robust-linear", "finetune", "pgd", "clean", "fgsm", "cw", "apgd", "square",
         "autoattack", "eot-pgd", "linf", "Linf", "l2", "l1", "L3", "ce", "cw", "dlr", "all", "auto", "cpu", "cuda",
         "custom", "standard", "natural", "digit", "8/255", "1/0", "0.1", "-1", "m", "a", "b",
         "model.pt", "missing.pt", "../model.pt", "nets:make", "json:loads", "no_such_mod:f", "nets", "nets:nothing"]

keys = st.sampled_from(TOP + DATA + MODEL + ATTACK + OTHER) | st.text(max_size=8)
scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.integers()
           | st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False) | st.sampled_from(NAMES)
           | st.text(max_size=12))
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys, inner, max_size=5), max_leaves=25)


valid_trained = st.fixed_dictionaries(
    {"method": st.sampled_from(["standard", "madry", "trades"]), "epochs": st.integers(1, 3)},
    optional={"batch_size": st.integers(2, 128), "lr": st.floats(0.001, 1.0), "label": st.text(max_size=6),
              "model": st.sampled_from(["mlp", "cnn-small"]), "optimizer": st.sampled_from(["sgd", "lars"]),
              "smoothing": st.fixed_dictionaries({"samples": st.integers(1, 10)})})
valid_loaded = st.sampled_from([{"checkpoint": "model.pt", "model": "mlp"},
                                {"checkpoint": "../model.pt", "model": "mlp"},
                                {"factory": "nets:make"}, {"factory": "nets:make", "checkpoint": "model.pt"}])
valid_attack = st.one_of(
    st.just("clean"), st.just({"type": "clean"}),
    st.fixed_dictionaries({"type": st.just("pgd"), "eps": st.floats(0.001, 1.0)},
                          optional={"norm": st.sampled_from(["linf", "Linf"]), "steps": st.integers(1, 50),
                                    "restarts": st.integers(1, 3), "seen": st.booleans(),
                                    "loss": st.sampled_from(["ce", "cw"])}),
    st.fixed_dictionaries({"type": st.just("pgd"), "norm": st.just("l2"), "eps": st.floats(0.01, 8.0)}),
    st.fixed_dictionaries({"type": st.just("pgd"), "norm": st.just("l1"), "eps": st.floats(0.1, 64.0)}),
    st.fixed_dictionaries({"type": st.just("fgsm"), "eps": st.sampled_from([0.1, "8/255"])}),
    st.fixed_dictionaries({"type": st.just("square"), "eps": st.floats(0.01, 0.5), "queries": st.integers(1, 100)}),
    st.fixed_dictionaries({"type": st.sampled_from(["apgd", "autoattack"]), "eps": st.floats(0.01, 0.5)}))


@st.composite
def valid_suites(draw) -> dict:
    names = draw(st.lists(st.sampled_from(["a", "b", "m", "madry", "std"]), min_size=1, max_size=3, unique=True))
    models = {n: draw(valid_trained | valid_loaded) for n in names}
    if draw(st.booleans()):
        models["enc"] = {"method": draw(st.sampled_from(["simclr", "rocl"])), "epochs": 1}
        models["le"] = {"method": draw(st.sampled_from(["linear", "robust-linear", "finetune"])), "encoder": "enc",
                        "epochs": 1}
    ids = draw(st.lists(st.sampled_from(["clean", "pgd", "pgd2", "sq", "f"]), min_size=1, max_size=3, unique=True))
    attacks = {i: draw(valid_attack) for i in ids}
    doc = {"name": draw(st.sampled_from(["fuzz", "x", "suite-1"])), "seed": draw(st.integers(0, 5)),
           "device": draw(st.sampled_from(["cpu", "auto"])),
           "data": {"dataset": "digits", "test_limit": draw(st.integers(1, 100))}, "models": models,
           "attacks": attacks}
    white = [i for i, a in attacks.items() if isinstance(a, dict) and a["type"] != "clean"]
    if white and draw(st.booleans()):
        doc["transfer"] = {"sources": draw(st.sampled_from(["all", names[:1]])), "attacks": white[:1]}
    if draw(st.booleans()):
        doc["output"] = {"batch_size": draw(st.integers(1, 512))}
    return doc


def slots(node) -> list[tuple]:
    """Every (container, key) of a document, to mutate one place."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in list(items):
        out.append((node, k))
        out.extend(slots(v))
    return out


@st.composite
def mutated_suites(draw) -> object:
    """A valid suite with 0-3 random edits: a value replaced by anything, a key deleted, a key added."""
    doc = copy.deepcopy(draw(valid_suites()))       # sampled values are shared objects: never edit them
    for _ in range(draw(st.integers(0, 3))):
        places = slots(doc)
        container, key = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            container[key] = draw(anything)
        elif action == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[draw(keys)] = draw(anything)
        else:
            container.append(draw(anything))
    return doc


@pytest.fixture(scope="module")
def folder():
    """A suite folder with a real checkpoint, an empty one and a factory module next to where suites are written."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "suites"
        root.mkdir()
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        torch.save(net.state_dict(), root / "model.pt")
        torch.save(net.state_dict(), Path(d) / "model.pt")
        (root / "empty.pt").write_bytes(b"")
        (root / "nets.py").write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                                      "torch.nn.Linear(64, 10))\n")
        yield root


def check(path: Path) -> None:
    try:
        suite = load_suite(path)
    except UserError as e:
        text = str(e)
        assert text and "\n" not in text, repr(text)
        return
    assert isinstance(suite, Suite)
    assert suite.models and suite.attacks
    assert isinstance(suite.data, DataSection) and isinstance(suite.output, OutputSection)
    for m in suite.models.values():
        assert (m.train is None) != (m.checkpoint is None and m.factory is None)
        assert m.smoothing is None or isinstance(m.smoothing, Smoothing)
    for a in suite.attacks.values():
        assert a.attack.norm is None or a.attack.eps > 0 and math.isfinite(a.attack.eps)
    suite.hash()
    suite.transfer_pairs()


@FUZZ
@given(doc=st.one_of(mutated_suites(), mutated_suites(), mutated_suites(), anything))
def test_any_yaml_document_gives_a_suite_or_a_user_error(folder, doc):
    path = folder / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    check(path)


@settings(FUZZ, max_examples=100)
@given(text=st.text(max_size=200) | st.text(alphabet="{}[]:-,'\"!&*#|>%@`\n\t ab1.", max_size=120))
def test_any_text_gives_a_suite_or_a_user_error(folder, text):
    path = folder / "raw.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    check(path)

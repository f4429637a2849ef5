"""`rocl-bench analyze`: metrics against hand-made cases, and the command on real (tiny) encoders."""
import math

import pytest
import torch

from rocl_bench.analysis.metrics import alignment, class_margin, false_negative_fraction, relative_change, uniformity
from rocl_bench.analysis.run import analyze
from rocl_bench.errors import UserError

from util import quick_train


def test_alignment_and_uniformity_on_known_configurations():
    z = torch.randn(50, 8)
    assert alignment(z, z) == pytest.approx(0.0, abs=1e-6)
    assert alignment(z, -z) == pytest.approx(4.0, abs=1e-4)          # antipodal pairs: ‖2u‖² = 4
    collapsed = torch.ones(30, 4)
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-6)     # all at one point: log E e^0 = 0
    assert uniformity(torch.randn(200, 4)) < -1.0


def test_class_margin_sign():
    labels = torch.tensor([0] * 20 + [1] * 20)
    separated = torch.cat([torch.tensor([[1.0, 0.0]]) + 0.05 * torch.randn(20, 2),
                           torch.tensor([[0.0, 1.0]]) + 0.05 * torch.randn(20, 2)])
    assert class_margin(separated, labels) > 1.0
    mixed = torch.randn(40, 2)
    assert class_margin(mixed, labels) < class_margin(separated, labels)


def test_false_negative_fraction_counts_same_class_pairs():
    labels = torch.tensor([0, 0, 1, 1])
    assert false_negative_fraction(labels, [torch.arange(4)]) == pytest.approx(4 / 12)
    assert relative_change(torch.ones(3, 2), torch.ones(3, 2) * 2) == pytest.approx(1.0)


def test_analyze_writes_tables_and_plot(tmp_path):
    quick_train(tmp_path / "runs" / "simclr", method="simclr", epochs=1, batch_size=256)
    quick_train(tmp_path / "runs" / "standard", method="standard", epochs=1)
    quick_train(tmp_path / "runs" / "le", method="linear", encoder=str(tmp_path / "runs" / "simclr" / "checkpoint.pt"),
                epochs=1)
    rows = analyze([str(tmp_path / "runs")], tmp_path / "out", limit=100, log=lambda s: None)
    assert [r["encoder"] for r in rows] == ["simclr", "standard"]     # the linear head is skipped
    for r in rows:
        for key in ("alignment", "uniformity", "class_margin", "false_negative_fraction", "sens_instance@1eps"):
            assert math.isfinite(r[key]), key
        assert r["sens_instance@1eps"] >= r["sens_instance@0.25eps"]
    for name in ("analysis.md", "analysis.tex", "analysis.csv", "sensitivity.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert r"\toprule" in (tmp_path / "out" / "analysis.tex").read_text()
    with pytest.raises(UserError):
        analyze([str(tmp_path / "nowhere")], tmp_path / "out2", log=lambda s: None)

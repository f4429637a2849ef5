"""Every table in results/README.md is a copy of a file that `rocl-bench table` generated from records."""
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_readme_tables_equal_their_generated_files():
    r = subprocess.run([sys.executable, str(RESULTS / "fill_tables.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (RESULTS / "README.md").read_text().count("<!-- include: ") >= 4


def test_a_hand_edited_table_is_caught(tmp_path, monkeypatch):
    sys.path.insert(0, str(RESULTS))
    try:
        import fill_tables
    finally:
        sys.path.pop(0)
    text = (RESULTS / "README.md").read_text()
    block = text.index("<!-- include: ")
    body = text.index("\n", block) + 1
    edited = text[:body] + "| typed | by | hand |\n" + text[body:]
    assert fill_tables.filled(edited) != edited and fill_tables.filled(text) == text

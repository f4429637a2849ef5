"""`rocl-bench report`: the static leaderboard site, on disk and in a real browser (headless Chromium).

The site is built once per module from a copy of the committed results/ci records (5 models, transfer cells, a
warned cell), with two small training logs added under models/ so the training curves are drawn too. The
browser tests drive the system's Chromium through its DevTools protocol (websocket-client); they skip, saying
why, when no Chromium is installed (`apt-get install chromium`; .ci/run installs it)."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from rocl_bench.cli import main
from rocl_bench.record import load
from rocl_bench.report import plots, site, tables

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "results" / "ci"
TRAINED = ("madry", "standard")          # models given a metrics.jsonl


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("results") / "ci"
    folder.mkdir()
    shutil.copyfile(CI / "records.jsonl", folder / "records.jsonl")
    latest = load(folder).latest()
    for model in TRAINED:
        key = next(r.model_key for r in latest if r.model == model)
        run = folder / "models" / f"{model}-{key}"
        run.mkdir(parents=True)
        run.joinpath("metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e, "loss": 2.0 / e, "train_accuracy": 0.3 + 0.1 * e}) + "\n" for e in (1, 2, 3)))
    return folder


@pytest.fixture(scope="module")
def built(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    assert main(["report", str(results), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def latest(results):
    return load(results).latest()


class Refs(HTMLParser):
    """Every href and src of a page, its element ids, and the rows of each table (cell texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()
        self.imgs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key) is not None:
                self.refs.append(a[key])
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if a.get("id"):
            self.ids.add(a["id"])


def parse(path: Path) -> Refs:
    p = Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def pages(site_dir: Path) -> list[Path]:
    return sorted(site_dir.rglob("*.html"))


# ---------------------------------------------------------------------------------------- the site on disk
def test_every_page_and_data_file_is_written(built, latest):
    main_table = tables.build_main_table(latest)
    models = list(dict.fromkeys(r.model for r in latest))
    assert (built / "index.html").is_file() and (built / site.SITE_MARK).is_file()
    suite = built / "ci"
    assert (suite / "index.html").is_file()
    assert (suite / "records.jsonl").read_bytes() == (CI / "records.jsonl").read_bytes()
    assert (suite / "table.csv").read_text() == tables.render(main_table, "csv")        # what `table` writes
    assert (suite / "table.tex").read_text() == tables.render(main_table, "latex")
    for m in models:
        assert (suite / "models" / f"{m}.html").is_file(), m
    assert len(pages(built)) == 2 + len(models)
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".site.")]       # no temporary folder left


def test_links_and_images_are_relative_and_resolve_on_disk(built):
    checked = 0
    for page in pages(built):
        refs = parse(page)
        for ref in refs.refs:
            if ref.startswith("data:"):
                continue
            url = urlparse(ref)
            assert not url.scheme and not url.netloc and not ref.startswith("/"), f"{page}: {ref} is not relative"
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            assert target.is_file(), f"{page.relative_to(built)}: {ref} does not resolve"
            if url.fragment:
                assert url.fragment in parse(target).ids, f"{page}: #{url.fragment} is not in {target}"
            checked += 1
        text = page.read_text()
        assert "http://" not in text and "https://" not in text, f"{page}: refers to the network"
    assert checked > 50


def test_suite_and_model_pages_show_their_images(built, latest):
    suite_imgs = parse(built / "ci" / "index.html").imgs
    assert {"eps_curve.png", "transfer.png", "training.png"} <= set(suite_imgs)
    for m in dict.fromkeys(r.model for r in latest):
        imgs = parse(built / "ci" / "models" / f"{m}.html").imgs
        assert f"{m}-eps.png" in imgs
        assert (f"{m}-training.png" in imgs) == (m in TRAINED), m
    for png in built.rglob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_one_leaderboard_per_threat_model_with_the_tables_numbers(built, latest):
    main_table = tables.build_main_table(latest)
    per_attack = tables.build_main_table(latest, per_attack=True)
    index = (built / "index.html").read_text()
    boards = re.findall(r'<section class="board"><h4>(.*?)</h4>(.*?)</section>', index, re.S)
    wanted = [c.flat for c in main_table.columns] + [c.flat for c in per_attack.columns
                                                     if c.kind in ("transfer", "worst")]
    assert [site.esc(w) for w in wanted] == [title for title, _ in boards]
    for col, (_, board) in zip(main_table.columns, boards):
        one = tables._cells(tables.dataclasses.replace(main_table, columns=[col]), "html")
        rows = re.findall(r'<tr><th scope="row"><a href="ci/models/([^"]+)\.html">[^<]*</a></th><td>(.*?)</td>', board)
        assert sorted(m for m, _ in rows) == sorted(r.model for r in main_table.rows)       # every model
        shown = dict(rows)
        for r, cell in zip(main_table.rows, one):
            assert shown[r.model] == cell[0], (col.flat, r.model)                         # the table's own text
        values = [main_table.value(m, col) for m, _ in rows]
        finite = [v for v in values if math.isfinite(v)]
        assert finite == sorted(finite, reverse=True)                                     # best first
    assert "†" in index and "carry a warning" in index                                    # the trust markers
    assert "train (s)" in index and "evaluation (s)" in index and "peak memory (MB)" in index


def test_model_page_has_every_cell_and_its_provenance(built, latest):
    for m in dict.fromkeys(r.model for r in latest):
        text = (built / "ci" / "models" / f"{m}.html").read_text()
        mine = [r for r in latest if r.model == m]
        for r in mine:
            assert f"<th scope=\"row\">{site.esc(r.attack)}</th>" in text, (m, r.attack)
            assert f"{100 * r.robust_accuracy:.1f}" in text
        one = mine[0]
        for value in (one.git_commit, one.checkpoint_sha256, str(one.seed), one.device, one.timestamp,
                      one.config_hash, *(f"{k} {v}" for k, v in one.versions.items())):
            assert value and site.esc(value) in text, (m, value)
        assert "As the target" in text


def test_model_styles_are_colour_blind_safe_and_unique_for_many_models():
    styles = plots.model_styles([f"m{i}" for i in range(56)])
    assert len(set(styles.values())) == 56
    assert {c for c, _ in styles.values()} == set(plots.PALETTE)
    names = list(styles)
    for a, b in zip(names, names[1:]):
        assert styles[a][0] != styles[b][0] and styles[a][1] != styles[b][1]


def test_a_model_keeps_its_colour_and_marker_in_every_plot(results, latest):
    styles = plots.model_styles(plots.suite_models(latest))
    fig = plots.eps_curve_figure(latest)
    label = {r.model: r.name for r in latest}
    drawn = {ln.get_label(): (ln.get_color(), ln.get_marker()) for ax in fig.axes for ln in ax.get_lines()
             if not ln.get_label().startswith("_") and ln.get_label() != "training ε (seen)"}
    assert drawn == {label[m]: styles[m] for m in styles}
    assert len(set(drawn.values())) == len(drawn)
    alone = plots.eps_curve_figure([r for r in latest if r.model == "madry"], styles)   # a model page's plot
    assert {(ln.get_color(), ln.get_marker()) for ln in alone.axes[0].get_lines() if ln.get_label() == "Madry AT"} \
        == {styles["madry"]}
    train = plots.training_figure(results / "models")
    for ln in train.axes[0].get_lines():
        model = Path(ln.get_label()).name.rsplit("-", 1)[0]
        assert (ln.get_color(), ln.get_marker()) == styles[model], ln.get_label()


def test_table_html_is_the_sites_renderer(tmp_path, built, latest):
    out = tmp_path / "t.html"
    assert main(["table", str(CI), "--format", "html", "--out", str(out)]) == 0
    text = out.read_text()
    fragment = tables.render(tables.build_main_table(latest), "html")
    assert text.startswith("<!DOCTYPE html>") and fragment in text
    assert site._asset("sort.js") in text and 'class="rocl-bench sortable"' in text
    suite = (built / "ci" / "index.html").read_text()
    links = {m: f"models/{m}.html" for m in dict.fromkeys(r.model for r in latest)}
    assert tables.render(tables.build_main_table(latest), "html", links) in suite


# ------------------------------------------------------------------------------------------------ bad input
def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("rocl-bench: error: "), err
    return err


def test_a_folder_without_records_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "site")]) == 2
    assert "no records.jsonl" in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_a_corrupt_record_line_names_its_number(tmp_path, capsys):
    lines = (CI / "records.jsonl").read_text().splitlines()
    lines[6] = lines[6][:40]                         # a truncated write on line 7
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "records.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "site")]) == 2
    err = _error(capsys)
    assert "records.jsonl:7:" in err and "not valid JSON" in err
    assert not (tmp_path / "site").exists()


def test_an_out_that_is_a_file_or_a_foreign_folder_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["report", str(CI), "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in _error(capsys)
    assert (tmp_path / "f").read_text() == "x"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["report", str(CI), "--out", str(tmp_path / "mine")]) == 2
    assert "not a rocl-bench site" in _error(capsys)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert main(["report", str(CI), "--out", str(CI)]) == 2                   # never over a results folder
    assert "not a rocl-bench site" in _error(capsys)


def test_a_failed_report_leaves_the_previous_site_and_nothing_half_written(tmp_path, monkeypatch, capsys):
    out = tmp_path / "site"
    out.mkdir()
    (out / site.SITE_MARK).write_text("")
    (out / "index.html").write_text("previous")

    def boom(*a, **k):
        raise site.UserError("simulated failure while writing the index")

    monkeypatch.setattr(site, "index_page", boom)
    monkeypatch.setattr(site, "_figures", lambda *a: ({}, {m: {} for m in a[0].models}, {}))   # fast
    assert main(["report", str(CI), "--out", str(out)]) == 2
    assert "simulated failure" in _error(capsys)
    assert (out / "index.html").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]            # no temporary folder left
    monkeypatch.undo()
    monkeypatch.setattr(site, "_figures", lambda *a: ({}, {m: {} for m in a[0].models}, {}))
    assert main(["report", str(CI), "--out", str(out)]) == 0                 # a site written before is replaced
    assert "rocl-bench leaderboard" in (out / "index.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]            # the old one is gone too


def test_gap_and_pair_names_are_checked(tmp_path, capsys):
    assert main(["report", str(CI), "--out", str(tmp_path / "s"), "--pair", "madry,madri"]) == 2
    assert "--pair madry,madri" in (err := _error(capsys)) and "did you mean 'madry'" in err
    assert main(["report", str(CI), "--out", str(tmp_path / "s"), "--gap", "madry"]) == 2
    assert "two model ids" in _error(capsys)
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------------------- in a browser
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _chromium()
try:
    import websocket  # websocket-client: the DevTools protocol is spoken over a websocket
except ImportError:       # pragma: no cover
    websocket = None

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or websocket is None,
    reason="browser tests skipped: no headless Chromium on PATH (install the system package: apt-get install "
           "chromium; .ci/run does) or no websocket-client (pip install -e '.[test]')")


class Browser:
    """Headless Chromium driven over its DevTools protocol: navigate, evaluate JavaScript, collect console errors."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="rocl-bench-chromium-")
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("headless Chromium did not start")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        from urllib.request import urlopen

        for _ in range(100):
            targets = json.loads(urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            page = next((t for t in targets if t.get("type") == "page"), None)
            if page:
                break
            time.sleep(0.1)
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(e.get("method") == event for e in self.events):
                return
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(event)

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str):
        out = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in out:
            raise AssertionError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:300])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                out.append(json.dumps(p.get("args", []))[:300])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or websocket is None:
        pytest.skip("no headless Chromium")
    b = Browser(CHROMIUM)
    yield b
    b.close()


ROWS = "Array.from(document.querySelector('table.sortable').tBodies[0].rows)"


@needs_browser
def test_the_leaderboard_renders_every_model_in_a_browser(browser, built, latest):
    browser.open(built / "index.html")
    labels = browser.js(f"{ROWS}.map(r => r.cells[0].textContent)")
    assert labels == [r.label for r in tables.build_main_table(latest).rows]
    boards = browser.js("Array.from(document.querySelectorAll('section.board table')).map(t => t.tBodies[0].rows.length)")
    assert boards and set(boards) == {len(labels)}
    assert browser.js("document.querySelector('table.sortable').getBoundingClientRect().height") > 100


@needs_browser
def test_clicking_a_header_resorts_the_rows(browser, built):
    browser.open(built / "index.html")
    before = browser.js(f"{ROWS}.map(r => r.cells[0].textContent)")
    clean = f"{ROWS}.map(r => parseFloat(r.cells[1].textContent))"
    browser.js("document.querySelector('table.sortable th.sort[data-col=\"1\"]').click()")
    first = browser.js(clean)
    assert first == sorted(first, reverse=True) and browser.js(f"{ROWS}.map(r => r.cells[0].textContent)") != before
    assert browser.js("document.querySelector('table.sortable th.sort[data-col=\"1\"]').getAttribute('aria-sort')") \
        == "descending"
    browser.js("document.querySelector('table.sortable th.sort[data-col=\"1\"]').click()")
    assert browser.js(clean) == sorted(first)
    browser.js("document.querySelector('table.sortable th.sort[data-col=\"0\"]').click()")        # names: A to Z
    names = browser.js(f"{ROWS}.map(r => r.cells[0].textContent)")
    assert names == sorted(names, key=str.lower) or names == sorted(names)


@needs_browser
def test_every_image_loads_and_no_page_logs_an_error(browser, built):
    images = 0
    for page in pages(built):
        browser.open(page)
        browser.js("Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")
        broken = browser.js("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                            ".map(i => i.getAttribute('src'))")
        assert broken == [], f"{page}: images that did not load: {broken}"
        images += browser.js("document.images.length")
        assert browser.errors() == [], f"{page.relative_to(built)}: {browser.errors()}"
    assert images == sum(1 for _ in built.rglob("*.png"))


@needs_browser
def test_every_link_resolves_in_the_browser(browser, built):
    seen = 0
    for page in pages(built):
        browser.open(page)
        for href in browser.js("Array.from(document.links).map(a => a.href)"):
            url = urlparse(href)
            assert url.scheme == "file", f"{page}: {href} leaves the site"
            target = Path(unquote(url.path))
            assert target.is_file() and built.resolve() in target.resolve().parents, f"{page}: {href}"
            seen += 1
    assert seen > 50


def test_a_model_page_bolds_nothing_in_its_one_row_tables(built, latest):
    m = next(iter(dict.fromkeys(r.model for r in latest)))
    text = (built / "ci" / "models" / f"{m}.html").read_text()
    section = text.split("<h2>Main table row</h2>", 1)[1].split("<h2>Every cell</h2>", 1)[0]
    assert "<strong>" not in section and "<b>" not in section and "Best per column in bold" not in section

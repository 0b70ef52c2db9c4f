"""report.html and `trainlab report`: the page's content, the plots, and a real headless Chromium
(Debian's chromium + chromium-driver through selenium) that renders them; screenshots are saved
into $TRAINLAB_TEST_ARTEFACTS (default: test-artefacts/ in the repository, git-ignored)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from test_compare import AT_LEAST, GRID, RANDOM, history, make_job, make_search, summary

from trainlab.cli import main
from trainlab.compare import compare, compare_searches
from trainlab.hydra_app import complete_query
from trainlab.report.html import job_counts, problem_kind
from trainlab.report.index import write_index
from trainlab.report.plots import Painter
from trainlab.sweep import Job

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
EXPERIMENT = {
    "name": "activations",
    "description": "relu against tanh and sigmoid <small MLP> & digits",
    "claims": [
        {"text": "relu beats tanh", "kind": "compare", "metric": "val_acc",
         "a": {"activation": "relu"}, "op": "higher", "b": {"activation": "tanh"}},
        {"text": "tanh above 0.95", "kind": "threshold", "metric": "val_acc",
         "where": {"activation": "tanh"}, "op": "above", "value": 0.95},
        {"text": "relu beats sigmoid", "kind": "compare", "metric": "val_acc",
         "a": {"activation": "relu"}, "op": "higher", "b": {"activation": "sigmoid"}},
    ],
}  # fmt: skip
VALS = {"relu": [0.90, 0.92, 0.94], "tanh": [0.80, 0.83, 0.81], "sigmoid": [0.93, 0.88]}


def make_sweep(root: Path, killed: bool = True) -> Path:
    """3 activations x 2-3 seeds with curves; sigmoid has a diverged, a failed and a killed seed."""
    for act, vals in VALS.items():
        for seed, v in enumerate(vals):
            make_job(root, [f"activation={act}", f"seed={seed}", "+experiment=activations"],
                     summary(v, seed=seed), history([v - 0.2, v - 0.1, v]), EXPERIMENT)  # fmt: skip
    sig = ["activation=sigmoid", "+experiment=activations"]
    diverged = {
        "status": "diverged",
        "error": "loss is nan",
        "diverged_at_step": 17,
        "val_acc": 0.1,
    }
    make_job(root, [*sig, "seed=2"], diverged, history([0.5]), EXPERIMENT)
    make_job(root, [*sig, "seed=3"], {"status": "failed", "error": "RuntimeError: boom"})
    if killed:
        make_job(root, [*sig, "seed=4"], None, experiment=EXPERIMENT)  # no summary.json
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One compared sweep for the tests that only read it."""
    return compare(make_sweep(tmp_path_factory.mktemp("sweep")))


def test_report_is_one_self_contained_page(compared) -> None:
    page = (compared.out / "report.html").read_text()
    assert compared.out / "report.html" in compared.files
    assert not re.search(r"""(src|href)=["']?(https?:|//|[\w./-]+\.(png|css|js))""", page)
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert len(imgs) == 2 and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert "&lt;small MLP&gt; &amp; digits" in page  # the description, escaped
    verdicts = re.findall(r'<tr class="claim (\w+)">', page)
    assert verdicts == ["confirmed", "refuted", "inconclusive"]
    assert "Welch t" in page and "detectable effect" in page  # numbers of the inconclusive one
    kinds = re.findall(r'<td class="kind \w+">([\w ]+)</td>', page)
    assert sorted(kinds) == ["diverged", "failed", "missing"]
    assert "1 confirmed" in page and "1 refuted" in page and "1 inconclusive" in page
    assert "0.920 ± 0.020 [95%" in page  # the results table with intervals
    assert '<th class="ranked" title="the rows are ranked by this column">val_acc (ranked)' in page


def test_loss_on_a_log_axis_and_diverged_seeds_marked(compared) -> None:
    fig = Painter().curves(compared, "train_loss")
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "training loss (log scale)"
    assert ax.get_xlabel() == "epoch" and "x: a diverged seed" in ax.get_title()
    labels = (
        [t.get_text() for t in fig.legends[0].get_texts()]
        if fig.legends
        else [t.get_text() for t in ax.get_legend().get_texts()]
    )
    assert "activation=sigmoid, 1/3 diverged (n=3)" in labels
    marks = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert [tuple(m.get_xdata()) for m in marks] == [(1,)]  # where the diverged seed ended


def test_report_command_help_and_bad_dir(tmp_path: Path, capsys, monkeypatch) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--help"])
    assert exit_.value.code == 0 and "DIR/index.html" in capsys.readouterr().out
    for bad in (tmp_path / "nope", tmp_path):  # missing; no sweep below it
        with pytest.raises(SystemExit) as exit_:
            main(["report", str(bad)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
        assert f"DIR={bad}" in err
    monkeypatch.setenv("COMP_LINE", "trainlab rep")  # bash's TAB completes the command
    complete_query(["train", "report"], lambda _: None)
    assert capsys.readouterr().out.strip() == "report"


def test_index_compares_only_what_is_safe(tmp_path: Path) -> None:
    done = make_sweep(tmp_path / "sweeps" / "2026-01-01_a", killed=False)
    busy = make_sweep(tmp_path / "sweeps" / "2026-01-02_b")  # a killed job: not compared
    for job in done.rglob("summary.json"):
        os.utime(job, (time.time() - 600,) * 2)
    _, entries = write_index(tmp_path)
    by_name = {e.path.name: e for e in entries}
    assert by_name["2026-01-01_a"].report == "sweeps/2026-01-01_a/report.html"
    assert by_name["2026-01-02_b"].report is None
    assert "1 jobs unfinished" in by_name["2026-01-02_b"].note
    assert not (busy / "report.html").exists()
    assert by_name["2026-01-01_a"].note == "compared now"
    assert by_name["2026-01-01_a"].verdicts == {"confirmed": 1, "refuted": 1, "inconclusive": 1}
    assert by_name["2026-01-01_a"].jobs == {"completed": 8, "diverged": 1, "failed": 1}
    recent = make_sweep(tmp_path / "sweeps" / "2026-01-03_c", killed=False)  # just written
    _, entries = write_index(tmp_path)
    assert "may still be running" in next(e.note for e in entries if e.path == recent)


def artefacts() -> Path:
    out = Path(os.environ.get("TRAINLAB_TEST_ARTEFACTS") or ROOT / "test-artefacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip(
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')"
    )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--window-size=1280,900"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def screenshot(driver, path: Path) -> None:
    """The whole page, beyond the window (Chrome DevTools' captureScreenshot)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))


COLOURS = """return [...document.querySelectorAll('.badge')].map(
  b => [b.textContent, getComputedStyle(b).backgroundColor])"""


def test_report_and_index_in_chromium(browser, compared, tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "2026-01-01_activations"
    shutil.copytree(compared.out, sweep)  # with its report.html
    index, _ = write_index(tmp_path)
    browser.get(index.as_uri())
    assert browser.title.startswith("trainlab sweeps")
    screenshot(browser, artefacts() / "index.png")
    hrefs = browser.execute_script("return [...document.links].map(a => a.href)")
    assert len(hrefs) == 1
    browser.get(hrefs[0])  # the link resolves to the sweep's page
    assert browser.title == "Experiment activations: trainlab compare"
    assert browser.find_element("tag name", "h1").text == "Experiment activations"
    widths = browser.execute_script(
        "return [...document.images].map(i => i.complete ? i.naturalWidth : 0)"
    )
    assert len(widths) == 2 and all(w > 0 for w in widths)
    colours = dict(browser.execute_script(COLOURS))
    assert colours == {
        "confirmed": "rgb(27, 122, 58)", "refuted": "rgb(179, 38, 30)",
        "inconclusive": "rgb(138, 90, 0)",
    }  # fmt: skip
    screenshot(browser, artefacts() / "report.png")
    assert (artefacts() / "report.png").stat().st_size > 10_000


def test_problem_jobs_are_named_by_what_happened(tmp_path: Path) -> None:
    reasons = {
        "killed: its summary says running but no process holds it": "killed",
        "interrupted: SIGTERM (re-run the sweep command to resume)": "interrupted",
        "never started": "never started",
        "no summary.json (job killed or still running)": "missing",
    }
    jobs = [Job(tmp_path, {}, "0", "missing", reason=r) for r in reasons]
    assert [problem_kind(j) for j in jobs] == list(reasons.values())
    jobs += [Job(tmp_path, {}, "1", s) for s in ("completed", "diverged", "failed")]
    assert job_counts(jobs) == dict.fromkeys(
        ["completed", "diverged", "failed", "killed", "interrupted", "never started", "missing"], 1
    )


def test_searches_get_a_page_too(tmp_path: Path) -> None:
    a = make_search(tmp_path / "search", "hparam_search", RANDOM, [AT_LEAST])
    b = make_search(tmp_path / "grid", "hparam_grid", GRID)
    result = compare_searches([a, b], tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert result.out_dir / "report.html" in result.files
    assert "<h1>Searches hparam_search vs hparam_grid</h1>" in page
    assert '<h2 id="per-seed">Per seed</h2>' in page and 'id="plots"' not in page
    assert re.findall(r'<tr class="claim (\w+)">', page) == ["confirmed"]
    assert "best_val_acc (best per seed) (ranked)" in page

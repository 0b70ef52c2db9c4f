"""TensorBoard shows the comparison: read back from a real `tensorboard` server over HTTP and
seen in headless Chromium. One sweep of MLP and CNN jobs in one logdir (two init scales, two
seeds each), compare's runs beside them, and a run in it that failed before training.

Screenshots of the HParams and Custom Scalars dashboards go to $TRAINLAB_TEST_ARTEFACTS
(default: test-artefacts/, git-ignored): tensorboard_hparams.png (the table),
tensorboard_parallel_coordinates.png and tensorboard_custom_scalars.png.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from test_report import artefacts, browser  # noqa: F401 (a fixture)
from test_sweeps import TensorBoard, _until, job_dirs, summary, trainlab

from trainlab.hparams import METRICS

pytestmark = pytest.mark.slow  # a sweep, a server and a browser: about a minute

SWEEP = ["model=mlp,cnn", "init=small_random", "init.weight.std=0.05,0.5", "seed=0,1",
         "data.subset=64", "trainer.epochs=2", "model.width=8", "model.depth=1", "threads=1"]  # fmt: skip
FAILS_AT_FIRST_STEP = ["norm=batch", "trainer.batch_size=1", "data.subset=64", "trainer.epochs=1"]
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tb")
    sweep_dir = tmp / "sweep"
    proc = trainlab(["train", "-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = trainlab(["train", *FAILS_AT_FIRST_STEP, f"hydra.run.dir={sweep_dir}/failed"], tmp)
    assert failed.returncode != 0
    return sweep_dir


@pytest.fixture(scope="module")
def server(logdir: Path):
    tb = TensorBoard(logdir)
    try:
        yield tb
    finally:
        tb.close()


def jobs(logdir: Path) -> dict[str, Path]:
    return {run: path for run, path in job_dirs(logdir).items() if run != "failed"}


def test_a_run_that_failed_before_training_leaves_no_tensorboard_run(logdir, server) -> None:
    assert summary(logdir / "failed")["status"] == "failed"
    assert not list((logdir / "failed").glob("events.out.tfevents.*"))
    compared = {
        f"_compare/init.weight.std={s},model={m}" for s in (0.05, 0.5) for m in ("mlp", "cnn")
    }
    runs = _until(lambda: server.get("/data/runs"), lambda r: len(r) >= 12)
    assert sorted(runs) == sorted(set(jobs(logdir)) | compared)  # one run per group, no 'failed'


def test_hparams_declare_the_swept_keys_and_group_the_seeds(logdir, server) -> None:
    experiment = server.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    assert [h["name"] for h in experiment["hparamInfos"][:2]] == ["init.weight.std", "model"]
    assert {n for n, h in infos.items() if h.get("differs")} == {"init.weight.std", "model"}
    assert infos["init.weight.std"]["type"] == "DATA_TYPE_FLOAT64"
    assert infos["init.weight.std"]["domainDiscrete"] == [0.05, 0.5]
    assert {"activation", "init", "optimizer", "data.subset", "trainer.epochs"} <= set(infos)
    assert "seed" not in infos and "hydra.sweep.dir" not in infos
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == list(METRICS)
    body = {"experimentName": "", "startIndex": 0, "sliceSize": 100, "allowedStatuses": STATUSES,
            "colParams": [{"hparam": n} for n in infos] + [{"metric": {"tag": m}} for m in METRICS],
            "aggregationType": "AGGREGATION_AVG"}  # fmt: skip
    groups = server.post("/data/plugin/hparams/session_groups", body)["sessionGroups"]
    assert len(groups) == 4 and all(len(g["sessions"]) == 2 for g in groups)  # the two seeds
    for g in groups:
        hp = g["hparams"]
        assert set(hp) == set(infos)  # every job: the same keys
        assert g["name"].startswith(
            f"init.weight.std={hp['init.weight.std']},model={hp['model']} #"
        )
        runs = [s["name"] for s in g["sessions"]]
        assert [r.rsplit("/", 1)[1] for r in runs] == ["seed=0", "seed=1"]
        assert all(f"model={hp['model']}," in r for r in runs)
        assert {s["status"] for s in g["sessions"]} == {"STATUS_SUCCESS"}
        accs = [summary(jobs(logdir)[r])["val_acc"] for r in runs]
        (val_acc,) = [m["value"] for m in g["metricValues"] if m["name"]["tag"] == "val/acc"]
        assert val_acc == pytest.approx(sum(accs) / 2, abs=1e-6)  # the seeds' mean


def test_custom_scalars_margin_charts_and_no_duplicate_charts(logdir, server) -> None:
    layout = server.get("/data/plugin/custom_scalars/layout")
    titles = [c["title"] for c in layout["category"]]
    assert len(titles) == len(set(titles))
    charts = {c["title"]: c["chart"] for c in layout["category"]}
    for category in charts.values():  # MLP and CNN runs share one chart per statistic
        names = [c["title"] for c in category]
        assert len(names) == len(set(names)), names
    (comparison,) = [t for t in titles if t.startswith("comparison")]
    margins = {c["title"]: c["margin"]["series"] for c in charts[comparison]}
    assert set(margins) == {f"{t} (mean ± std)" for t in ("val/acc", "val/loss", "train/loss", "train/acc")}  # fmt: skip
    assert margins["val/acc (mean ± std)"] == [
        {"value": "val/acc/mean", "lower": "val/acc/lower", "upper": "val/acc/upper"}
    ]
    assert {c["title"]: c["multiline"]["tag"] for c in charts["activations"]}["act_std"] == [
        "^act_std/"
    ]
    group = "_compare/init.weight.std=0.5,model=mlp"
    series = {
        bound: server.get("/data/plugin/scalars/scalars", run=group, tag=f"val/acc/{bound}")
        for bound in ("mean", "lower", "upper")
    }
    runs = [r for r in jobs(logdir) if "init.weight.std=0.5," in r and "model=mlp," in r]
    accs = [summary(jobs(logdir)[r])["val_acc"] for r in runs]
    mean = sum(accs) / 2
    std = math.sqrt(sum((a - mean) ** 2 for a in accs))  # n - 1 = 1
    assert series["mean"][-1][2] == pytest.approx(mean, abs=1e-6)
    assert series["lower"][-1][2] == pytest.approx(max(0.0, mean - std), abs=1e-6)
    assert series["upper"][-1][2] == pytest.approx(min(1.0, mean + std), abs=1e-6)


DEEP_TEXT = """const out = []; const walk = n => {
  if (n.shadowRoot) walk(n.shadowRoot);
  for (const c of n.children || []) walk(c);
  if (n.nodeType === 1 && n.childElementCount === 0 && n.textContent) out.push(n.textContent.trim());
}; walk(document.documentElement); return out.join('\\n');"""


CLICK = """const want = arguments[0].toLowerCase(); let hit = null; const walk = n => {
  if (hit) return; if (n.shadowRoot) walk(n.shadowRoot);
  for (const c of n.children || []) walk(c);
  if (!hit && n.nodeType === 1 && n.childElementCount === 0
      && (n.textContent || '').trim().toLowerCase() === want) hit = n;
}; walk(document.documentElement); if (hit) hit.click(); return hit !== null;"""


def _show(driver, url: str, wanted: list[str], path: Path, size: tuple[int, int]) -> str:
    """Open a dashboard, wait (bounded) until its text shows every wanted string, screenshot.

    A dashboard asks the server for its data once, when it loads: one that loaded before the
    server had read every event file is reloaded (every 20 s, for at most 2 minutes)."""
    driver.set_window_size(*size)
    driver.get(url)
    start = time.monotonic()
    reloaded = start
    text = ""
    while time.monotonic() < start + 120:
        text = driver.execute_script(DEEP_TEXT)
        if all(w in text for w in wanted):
            break
        if time.monotonic() > reloaded + 20:
            driver.refresh()
            reloaded = time.monotonic()
        time.sleep(0.5)
    time.sleep(2)  # the charts draw after their data arrive
    driver.save_screenshot(str(path))
    missing = [w for w in wanted if w not in text]
    words = [
        line for line in text.splitlines() if line and not line.startswith((" ", "@", "}", ":"))
    ]
    assert not missing, f"{url}: never showed {missing}; it showed: {words[-60:]}"
    return text


def test_screenshots_of_the_hparams_and_custom_scalars_dashboards(server, browser) -> None:  # noqa: F811
    out = artefacts()
    text = _show(browser, f"{server.url}/#hparams", ["init.weight.std=0.05,model=cnn #", "mlp"],
                 out / "tensorboard_hparams.png", (1400, 1000))  # fmt: skip
    assert "init.weight.std=0.5,model=mlp #" in text  # a session group: a row per config
    assert browser.execute_script(CLICK, "Parallel Coordinates View")
    time.sleep(3)  # one line per session group, drawn
    browser.save_screenshot(str(out / "tensorboard_parallel_coordinates.png"))
    text = _show(browser, f"{server.url}/#custom_scalars",
                 ["val/acc (mean ± std)", "act_std", "Matches (4)"],
                 out / "tensorboard_custom_scalars.png", (1400, 1400))  # fmt: skip
    assert text.count("val/acc (mean ± std)") == 1 and "Matches (4)" in text
    for name in ("hparams", "parallel_coordinates", "custom_scalars"):
        name = f"tensorboard_{name}.png"
        assert (out / name).stat().st_size > 20_000

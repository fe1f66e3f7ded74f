"""End to end in a real browser: `streamlit run` on localhost, Debian's headless Chromium via playwright.

Moves the alpha slider with the keyboard and checks that the live accuracy and the frontier's marker change.
Leaves a screenshot in test-artifacts/ for a human to look at.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(cwd: Path, env: dict | None = None):
    """``streamlit run`` of the dashboard on a free localhost port, started in ``cwd``; yields its URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("streamlit did not start in 120 s:\n" + proc.stdout.read())
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def app_url():
    with _serve(ROOT) as url:
        yield url


def _explorer_state(page) -> dict:
    """What the Patch page's alpha explorer shows: heading, digits accuracy, frontier caption, which marker of the
    frontier drawing is visible, and the first sample's caption."""
    return page.evaluate("""() => ({
      heading: document.querySelector('.pe-heading').textContent,
      digits: document.querySelector('.pe-metric[data-task="digits"] .pe-metric-value').textContent,
      caption: document.querySelector('.pe-frontier-caption').textContent,
      markers: [...document.querySelectorAll('.pe-marker')].filter(g => g.getAttribute('display') === 'inline')
                                                           .map(g => g.dataset.alpha),
      sample: document.querySelector('.pe-sample figcaption').textContent,
      whole: document.querySelector('.pe-metric[data-task="digits"] .pe-metric-whole').textContent,
      status: document.querySelector('.pe-status').textContent,
    })""")


def _wait_for_alpha(page, alpha: str, timeout: float = 120) -> dict:
    """The explorer's state once its heading names ``alpha`` (a computed position shows at once; another is
    asked of the server first)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        shown = _explorer_state(page)
        if shown["heading"].startswith(f"Live accuracy at alpha = {alpha} ") or shown["heading"] == f"Live accuracy at alpha = {alpha}":
            return shown
        page.wait_for_timeout(100)
    raise AssertionError(f"the explorer never showed alpha {alpha}: {_explorer_state(page)}")


def _digits_box(page):
    """The Task arithmetic explorer's box for the digits accuracy (drawn by the browser)."""
    return page.locator('.pe-coefficients .pe-metric[data-task="digits"]').first


def _digits_metric(page) -> str:
    return _digits_box(page).locator(".pe-metric-value").inner_text()


def _wait_for_change(page, old: str, timeout: float = 60) -> str:
    """The digits accuracy once it differs from ``old`` and the explorer is not waiting on the server."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        page.wait_for_timeout(300)
        if page.locator(".pe-coefficients.pe-waiting").count() == 0:
            value = _digits_metric(page)
            if value != old:
                return value
    raise AssertionError(f"the digits accuracy stayed at {old}")


@contextlib.contextmanager
def _browser_page():
    """A page of Debian's headless chromium (never a downloaded browser build); screenshots go to ARTIFACTS."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for this test: apt-get install chromium (scripts/test.sh does it)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1500})
        finally:
            browser.close()


def test_slider_moves_numbers_and_chart_in_a_real_browser(app_url):
    """The Patch page's explorer: keys move the slider, the numbers, the frontier's marker and the samples follow;
    the server learns the alpha (back on the page, the slider starts there) and its numbers are the engine's."""
    from paint_core.live.sessions import SLIDER_ALPHAS
    with _browser_page() as page:
        page.goto(app_url + "/patch", timeout=120_000)
        page.locator(".pe-metric").first.wait_for(timeout=180_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        slider = page.locator("input.pe-slider")
        slider.focus()
        page.keyboard.press("Home")
        start = _wait_for_alpha(page, "0")
        for _ in range(len(SLIDER_ALPHAS) - 1):  # every position once, as a student would drag through them
            page.keyboard.press("ArrowRight")
        end = _wait_for_alpha(page, "1")
        page.wait_for_timeout(2000)  # the browser reports its alpha half a second after the last move
        page.screenshot(path=str(ARTIFACTS / "dashboard_patch.png"), full_page=True)
        page.get_by_role("link", name="Counting").first.click()  # away and back in the same session
        page.get_by_role("link", name="Patch").first.click()
        page.locator(".pe-metric").first.wait_for(timeout=180_000)
        reloaded = _wait_for_alpha(page, "1", timeout=60)
        known = page.evaluate("() => document.querySelectorAll('.pe-marker').length")
        ready = page.locator(".pe-ready").inner_text()
    assert re.fullmatch(r"\d+\.\d%", start["digits"]) and re.fullmatch(r"\d+\.\d%", end["digits"])
    assert start["digits"] != end["digits"]
    import pandas as pd
    sweep = pd.read_csv(ROOT / "cached_results" / "micro-rn-l" / "digits" / "sweep.csv")
    digits = sweep[(sweep["split"] == "test") & (sweep["task"] == "digits")].set_index("alpha")
    pct = r"\d+\.\d%"
    for shown, alpha in ((start, 0), (end, 1)):  # the live sample and the whole split, each named
        assert re.fullmatch(rf"Frontier \(test\) at alpha {alpha}: live subsample patch {re.escape(shown['digits'])}, "
                            rf"supported {pct}; whole test split: patch {100 * digits.loc[alpha, 'accuracy']:.1f}%, "
                            rf"supported {pct}", shown["caption"]), shown["caption"]
        assert shown["whole"].startswith(f"whole test split ({int(digits.loc[alpha, 'n'])} images, from the sweep): "
                                         f"{100 * digits.loc[alpha, 'accuracy']:.1f}%, ")
    assert start["markers"] == ["0.00"] and end["markers"] == ["1.00"]  # one marker, the slider's
    assert start["sample"].startswith("true ") and " | now " in end["sample"]
    assert reloaded["digits"] == end["digits"]  # the server took the browser's alpha
    # one marker per position the server has sent (the warm-up may still be filling the others); the slider steps
    # with the sweep (0, 0.1, ..., 1)
    assert ready.startswith(f"{known} of {digits.index.nunique()} slider positions computed") and known >= 3


def test_task_arithmetic_slider_redraws_live_in_a_real_browser(app_url):
    """Negating the digits vector with its coefficient slider lowers the live digits accuracy on the page."""
    with _browser_page() as page:
        page.goto(app_url + "/arithmetic", timeout=120_000)
        _digits_box(page).wait_for(timeout=180_000)
        page.wait_for_timeout(1500)
        before = _digits_metric(page)
        page.get_by_role("slider", name="coefficient of tau(digits)").focus()
        page.keyboard.press("Home")  # -1.5: forget digits
        after = _wait_for_change(page, before)
        page.wait_for_timeout(1500)
        after = _digits_metric(page)
        page.screenshot(path=str(ARTIFACTS / "dashboard_arithmetic.png"), full_page=True)
        # the server computes the next steps and the browser asks for them: one step up is then drawn at once,
        # in the same event as the move, with the accuracy the server sent for it
        page.wait_for_function(NEXT_STEP_HELD, timeout=120_000)
        drawn = page.evaluate(STEP_UP_NOW)
    assert float(after.rstrip("%")) < float(before.rstrip("%")) - 20
    assert drawn["shown"] == drawn["sent"] and not drawn["waiting"] and drawn["value"] == "-1.4"


# JavaScript on the Task arithmetic page: whether the explorer holds the setting one digits step up, and that move
# made in one event (what the page shows right after it, what the server sent for that setting)
_NEXT = """const r = document.querySelector('.pe-coefficients'); const d = r.__data;
  const i = d.tasks.indexOf('digits'); const v = r.__values.slice(); v[i] = Number((v[i] + d.step).toFixed(4));
  const key = v.map((x) => x.toFixed(2)).join(',');"""
NEXT_STEP_HELD = "() => { " + _NEXT + " return d.settings[key] !== undefined; }"
STEP_UP_NOW = "() => { " + _NEXT + """
  const slider = r.querySelector('input[aria-label="coefficient of tau(digits)"]');
  slider.value = String(v[i]);
  slider.dispatchEvent(new Event('input'));
  return {shown: r.querySelector('.pe-metric[data-task="digits"] .pe-metric-value').textContent,
          sent: d.settings[key].find((m) => m.task === 'digits').value,
          waiting: r.classList.contains('pe-waiting'),
          value: r.querySelector('.pe-slider[data-task="digits"] + .pe-slider-value').textContent};
}"""


def test_typographic_upload_shows_the_word_sweep_in_a_real_browser(app_url, tmp_path):
    """Upload an image on the Typographic page: the verdict, both word-sweep heat-maps (drawn by the browser, each
    cell painted with its own p(true)) and the margin along alpha appear for it."""
    import numpy as np

    from paint_core.data.world import SHAPES, render_object
    picture = tmp_path / "circle.png"
    render_object(np.random.default_rng(5), "circle", "blue", radius=(0.3, 0.34)).resize((96, 96)).save(picture)
    with _browser_page() as page:
        page.goto(app_url + "/typographic", timeout=120_000)
        page.get_by_text("Verdict:").first.wait_for(timeout=180_000)
        page.get_by_text("Upload", exact=True).first.click()
        page.locator('input[type="file"]').first.set_input_files(str(picture))
        page.get_by_text("circle.png").first.wait_for(timeout=60_000)
        deadline = time.time() + 120
        while time.time() < deadline:
            page.wait_for_timeout(500)
            busy = page.locator('[data-testid="stStatusWidget"]').count()
            titles = page.locator(".pe-chart[data-kind=sweep] .pe-grid-title").all_text_contents()
            cells = page.locator(".pe-chart[data-kind=sweep] td.pe-sweep-cell").count()
            margin_points = page.locator(".pe-chart[data-kind=margin] .pe-margin-line circle").count()
            if not busy and len(titles) == 2 and cells and margin_points:
                break
        verdict = page.locator('[data-testid="stMarkdownContainer"] p').filter(has_text="Verdict:").first.inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard_typographic.png"), full_page=True)
        shape = page.locator(".pe-chart[data-kind=sweep] table").first.evaluate(
            "t => [t.tBodies[0].rows.length, t.tHead.rows[0].cells.length - 1]")
        first_cell = page.locator(".pe-chart[data-kind=sweep] td.pe-sweep-cell").first
        p_true, background = float(first_cell.get_attribute("data-p")), first_cell.evaluate(
            "c => getComputedStyle(c).backgroundColor")
    from dashboard.explorer.charts import heat_colour
    from paint_core.engine.attack import CONTROL_WORDS
    assert titles[0] == "zero-shot" and titles[1].startswith("patched"), titles
    assert shape[0] >= len(SHAPES) + len(CONTROL_WORDS) and cells == 2 * shape[0] * shape[1], (shape, cells)
    assert background.replace(" ", "") == heat_colour(p_true)  # each cell painted with its own p(true)
    assert margin_points == 2 * 21  # the written word is a class: clean and attacked along the 21 slider alphas
    assert "zero-shot" in verdict and "patched" in verdict


def test_the_story_page_opens_first_and_leads_to_the_patch_page(app_url):
    from paint_core.studies.patch import select_run
    chosen = select_run(ROOT / "cached_results" / "micro-rn-l" / "digits")["alpha"]
    with _browser_page() as page:
        page.goto(app_url, timeout=120_000)
        page.get_by_text("5. Choose alpha on held-out data").first.wait_for(timeout=180_000)
        metric = page.locator('[data-testid="stMetric"]').filter(has_text="chosen alpha").first
        shown = metric.locator('[data-testid="stMetricValue"]').inner_text()
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)  # both charts drawn (they render after the text)
        charts = page.locator(".js-plotly-plot").count()
        page.screenshot(path=str(ARTIFACTS / "dashboard_story.png"), full_page=True)
        deploy = page.get_by_text("Deploy", exact=True).count()  # hidden by .streamlit/config.toml
        page.get_by_role("link", name="Patch").first.click()
        page.locator('.pe-metric[data-task="digits"]').first.wait_for(timeout=180_000)
        patch_heading = _explorer_state(page)["heading"]
    assert shown == f"{chosen:g}" and charts >= 2 and deploy == 0
    assert patch_heading.startswith(f"Live accuracy at alpha = {chosen:g}")  # the Patch page opens at the choice


def test_a_job_started_in_the_browser_outlives_its_tab_and_opens_its_run(tmp_path):
    """Start a fine-tune on Models & runs, close the tab at once: the job finishes on the server all the same,
    and a new tab lists it as done, with a button that opens its run on the Patch page."""
    from paint_core.app.jobs import list_jobs, wait_job
    jobs = tmp_path / "runs" / ".jobs"
    with _serve(tmp_path) as url:
        with _browser_page() as page:
            page.goto(url + "/models_runs", timeout=120_000)
            page.get_by_label("run directory").first.wait_for(timeout=180_000)
            page.get_by_label("run directory").first.fill("runs/from-browser")
            page.get_by_label("fine-tune steps").fill("3")
            page.get_by_label("alphas").fill("0,1")
            page.get_by_label("images per split for the sweep").fill("20")
            page.get_by_role("button", name="Fine-tune and sweep").click()
            page.get_by_text("Job started").first.wait_for(timeout=60_000)
        # the tab is closed; the job runs on
        [job] = list_jobs(jobs)
        assert wait_job(jobs, job.id, timeout=300).state == "done"
        with _browser_page() as page:
            page.goto(url + "/models_runs", timeout=120_000)
            page.get_by_role("button", name="Open on the Patch page").first.wait_for(timeout=180_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard_jobs.png"), full_page=True)
            page.get_by_role("button", name="Open on the Patch page").first.click()
            page.locator('.pe-metric[data-task="digits"]').first.wait_for(timeout=180_000)
            box = page.locator('[data-testid="stSelectbox"]').first
            shown = box.get_by_text("runs/from-browser").count() + box.locator('input[value="runs/from-browser"]').count()
            html = box.inner_html()
    assert (tmp_path / "runs" / "from-browser" / "sweep.csv").is_file()
    assert shown >= 1, html  # the run selector shows the job's run


def test_per_block_mode_in_a_real_browser(app_url):
    """The Patch page's per-block mode: the searched plan's preset moves every block slider, and the page shows that
    plan's key, its live accuracies and the searched points beside the frontier (screenshot: docs/per-block.png)."""
    from paint_core.core.plan import Plan
    from paint_core.studies.search import read_searched_plan
    searched = read_searched_plan(ROOT / "cached_results" / "micro-rn-l" / "digits" / "plan-cma.json")
    rounded = Plan.per_block({b: round(c, 2) for b, c in searched.plan.blocks})
    with _browser_page() as page:
        page.goto(app_url + "/patch", timeout=120_000)
        page.locator(".pe-metric").first.wait_for(timeout=180_000)
        page.get_by_text("per block", exact=True).click()
        page.get_by_role("button", name=re.compile(r"^searched by cma")).click()
        page.get_by_text(rounded.key).first.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        label = page.locator('[data-testid="stMetricLabel"]').filter(has_text=re.compile(r"^\s*digits \(patch\)"))
        value = page.locator('[data-testid="stMetric"]').filter(has=label).first.locator(
            '[data-testid="stMetricValue"]').inner_text()
        legend = page.locator(".js-plotly-plot").first.inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard_per_block.png"), full_page=True)
    assert re.fullmatch(r"\d+\.\d%", value)
    assert "searched by cma (test)" in legend and "per-block plans measured by a search" in legend

"""What a slider move costs one browser, element by element (issue 15): a probe page, no model.

    python -m benchmarks.browser_cost [--moves 8] [--repeats 2]

Serves a small Streamlit page whose fragment holds a slider, a heading and three metrics (``base``), plus, by
variant, 12 thumbnails in 4 columns (``images``), a plotly scatter with a moving marker (``plotly``), a PNG
picture of the same scatter redrawn per position (``png``), or all of thumbnails and plotly (``all``). One
headless Debian chromium session per variant moves the slider ``--moves`` times (0.2 s apart); prints the
median latency (measured in the page, as benchmarks/load.py does) and the CPU seconds per move of the browser
and of the server, variants side by side, ``--repeats`` rounds. A 2-core machine: read the ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import load  # the same browser flags, CPU accounting and in-page latency

VARIANTS = ("base", "images", "plotly", "png", "all")
PAGE = '''
import io
import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

variant = st.query_params.get("v", "base")
xs, ys = np.linspace(40, 95, 21), np.linspace(99, 85, 21)


@st.cache_data
def thumbnails():
    rng = np.random.default_rng(0)
    out = []
    for _ in range(12):
        buffer = io.BytesIO()
        Image.fromarray((rng.random((96, 96, 3)) * 255).astype("uint8")).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


@st.cache_data
def picture(i):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5.2, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(xs, ys, "o-")
    ax.plot([xs[i]], [ys[i]], "rx", ms=12)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


@st.fragment
def view():
    alpha = st.slider("alpha", 0.0, 1.0, 0.0, 0.05, key="alpha")
    i = int(round(alpha * 20))
    st.subheader(f"Live accuracy at alpha = {alpha:g}")
    for col, task in zip(st.columns(3), ("digits", "shapes", "colours")):
        col.metric(f"{task} (n=100)", f"{50 + 40 * alpha + (task != 'digits'):.1f}%", f"{alpha:+.2f}")
    left, right = st.columns(2)
    if variant in ("plotly", "all"):
        left.plotly_chart(go.Figure([go.Scatter(x=xs, y=ys, mode="lines+markers"),
                                     go.Scatter(x=[xs[i]], y=[ys[i]], mode="markers",
                                                marker={"symbol": "x", "size": 14, "color": "red"})]), key="f")
    if variant == "png":
        left.image(picture(i), output_format="PNG")
    if variant in ("images", "all"):
        grid = right.columns(4)
        for k, thumb in enumerate(thumbnails()):
            grid[k % 4].image(thumb, caption=f"true a | zs b | now {'a' if alpha > 0.3 else 'b'}", output_format="PNG")


view()
'''


async def _measure(browser, url: str, server_pid: int, variant: str, moves: int) -> tuple[float, float, float]:
    context = await browser.new_context(viewport={"width": 1300, "height": 1200})
    page = await context.new_page()
    await page.goto(f"{url}/?v={variant}", timeout=120_000)
    await page.locator(load.METRIC).first.wait_for(timeout=120_000)
    await asyncio.sleep(1)
    slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
    await slider.focus()
    await load.move(page, "ArrowRight", 30)  # one move unmeasured: everything loaded
    browsers = load.browser_pids()
    cpu_browser, cpu_server, times = load.cpu_seconds(browsers), load.cpu_seconds([server_pid]), []
    for _ in range(moves):
        await slider.focus()
        times.append(await load.move(page, "ArrowRight", 30))
        await asyncio.sleep(0.2)
    cpu_browser = (load.cpu_seconds(browsers) - cpu_browser) / moves
    cpu_server = (load.cpu_seconds([server_pid]) - cpu_server) / moves
    await context.close()
    return statistics.median(times), cpu_browser, cpu_server


async def _main(args) -> None:
    from playwright.async_api import async_playwright
    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("needs Debian's chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "page.py").write_text(PAGE)
        port = load.free_port()
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(Path(tmp) / "page.py"),
                                   "--server.port", str(port), "--server.address", "127.0.0.1",
                                   "--server.headless", "true", "--browser.gatherUsageStats", "false",
                                   "--runner.postScriptGC", "false", "--server.fileWatcherType", "none"],
                                  cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            time.sleep(3)
            rows = []
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium, args=load.FLAGS, headless=True)
                for rep in range(args.repeats):
                    for variant in VARIANTS:
                        rows.append((rep + 1, variant, *await _measure(browser, url, server.pid, variant, args.moves)))
                        print(rows[-1], flush=True)
                await browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\n{args.moves} moves per variant, one browser session at a time\n")
    print("| round | variant | median latency | CPU-s per move: browser | server |")
    print("|---|---|---|---|---|")
    for rep, variant, median, browser_cpu, server_cpu in rows:
        print(f"| {rep} | {variant} | {median:.3f} s | {browser_cpu:.3f} | {server_cpu:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not 1 <= args.moves <= 20 or not 1 <= args.repeats <= 5:
        sys.exit("moves within 1..20, repeats within 1..5")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()

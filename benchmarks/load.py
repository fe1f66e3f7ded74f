"""A class on the Patch page at once (issue 15): slider-move latency and server memory per browser session.

    python benchmarks/load.py --sessions 1,10,30 --moves 8 [--compare]

Starts ``streamlit run dashboard/app.py`` with scripts/dashboard.sh's options on a free localhost port (in a temporary folder, so nothing is
written in the repository), waits until the run's slider positions are precomputed, then for each N opens N
sessions in one headless Debian chromium (N browser contexts: N Streamlit sessions), all on the Patch page of
the default run. All N move their alpha slider at the same time, ``--moves`` times each (ArrowRight, one
0.05 step), and a move's latency is the time from the key press until the page shows the new alpha's live
accuracies (the heading naming the alpha has changed) and Streamlit's "running" widget is gone. Server memory is the streamlit process's resident set (VmRSS): with the N
sessions open against the server before them, and again ``--settle`` seconds after they are closed.

Prints one table (median / p95 latency; CPU seconds per move of the server and of the browsers, which share the
machine's cores; MB per extra session; MB still held after closing) beside the numbers the issue measured
before this work. Bounded: at most 40 sessions and 20 moves; pages that fail count as errors.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BEFORE = {1: ("0.34 s", "0.51 s", "~265 MB"), 5: ("1.6 s", "3.4 s", "~240 MB"), 10: ("4.3 s", "17 s", "~260 MB")}
METRIC = '[data-testid="stMetric"]'


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _cpu_seconds(pids) -> float:
    """User + system CPU time of these processes so far (from /proc/<pid>/stat; gone ones count 0)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _browser_pids() -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"chromium" in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(workdir: Path, post_script_gc: bool) -> tuple[subprocess.Popen, str]:
    """The dashboard as scripts/dashboard.sh serves it (``post_script_gc=False``), or with Streamlit's default."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "none",
                             "--runner.postScriptGC", str(post_script_gc).lower()],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("streamlit did not start in 120 s")


async def _digits(page) -> str:
    """What a move must change: the heading that names the live alpha, and the digits accuracy under it."""
    heading = await page.get_by_text("Live accuracy at alpha").first.inner_text()
    value = await page.locator(METRIC).filter(has_text="digits (").first.locator(
        '[data-testid="stMetricValue"]').inner_text()
    return f"{heading} {value}"


async def _settled(page, old: str, timeout_s: float) -> str:
    """Wait until the digits metric differs from ``old`` and nothing is running; returns the new value."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if await page.locator('[data-testid="stStatusWidget"]').count() == 0:
            value = await _digits(page)
            if value != old:
                return value
        await asyncio.sleep(0.01)
    raise TimeoutError("no change")


async def _open(browser, url: str):
    context = await browser.new_context(viewport={"width": 1300, "height": 1200})
    page = await context.new_page()
    await page.goto(url + "/patch", timeout=300_000)
    await page.locator(METRIC).filter(has_text="digits (").first.wait_for(timeout=300_000)
    slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
    await slider.focus()
    old = await _digits(page)
    await page.keyboard.press("Home")  # alpha 0: every session starts from the same place
    try:
        await _settled(page, old, 60)
    except TimeoutError:
        pass  # already at 0
    return context, page


async def _moves(page, n: int, timeout_s: float) -> tuple[list[float], int]:
    from playwright.async_api import Error as PlaywrightError
    slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
    times, errors = [], 0
    for _ in range(n):
        try:
            old = await _digits(page)
            await slider.focus(timeout=timeout_s * 1000)
            t0 = time.perf_counter()
            await page.keyboard.press("ArrowRight")
            await _settled(page, old, timeout_s)
            times.append(time.perf_counter() - t0)
        except (TimeoutError, PlaywrightError):
            errors += 1  # a move whose page did not update (or could not be made) within the timeout
        await asyncio.sleep(0.2)  # a person's pause between moves
    return times, errors


async def _round(browser, url: str, server_pid: int, n: int, moves: int, settle: float) -> dict:
    base = _rss_mb(server_pid)
    tried = await asyncio.gather(*[_open(browser, url) for _ in range(n)], return_exceptions=True)
    opened = [o for o in tried if not isinstance(o, BaseException)]
    failed_opens = n - len(opened)
    loaded = _rss_mb(server_pid)
    browsers = _browser_pids()
    cpu_server, cpu_browser = _cpu_seconds([server_pid]), _cpu_seconds(browsers)
    results = await asyncio.gather(*[_moves(page, moves, 60) for _, page in opened])
    cpu_server, cpu_browser = _cpu_seconds([server_pid]) - cpu_server, _cpu_seconds(browsers) - cpu_browser
    during = _rss_mb(server_pid)
    for context, _ in opened:
        await context.close()
    await asyncio.sleep(settle)
    after = _rss_mb(server_pid)
    times = sorted(t for r in results for t in r[0])
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))] if times else float("nan")
    return {"n": n, "moves": len(times), "errors": sum(r[1] for r in results) + failed_opens * moves,
            "median": statistics.median(times) if times else float("nan"), "p95": p95,
            "mb_per_session": (max(loaded, during) - base) / n, "held_after_close": after - base,
            "server_cpu": cpu_server / max(1, len(times)), "browser_cpu": cpu_browser / max(1, len(times))}


async def _main(args) -> None:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("needs Debian's chromium: apt-get install chromium")
    counts = [int(c) for c in args.sessions.split(",")]
    if any(not 1 <= c <= 40 for c in counts) or not 1 <= args.moves <= 20:
        sys.exit("sessions must be within 1..40 and moves within 1..20")
    servers = [("dashboard.sh", False)] + ([("Streamlit default (GC after each rerun)", True)] if args.compare else [])
    rows = []
    for label, gc in servers:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = _serve(Path(tmp), gc)
            try:
                async with async_playwright() as p:
                    browser = await p.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
                    context, page = await _open(browser, url)  # warm: load the run, precompute the positions
                    deadline = time.time() + 600
                    while time.time() < deadline and await page.get_by_text("21 of 21 slider positions").count() == 0:
                        await page.reload()
                        await page.locator(METRIC).first.wait_for(timeout=300_000)
                        await asyncio.sleep(3)
                    await context.close()
                    for n in counts:
                        rows.append({"server": label, **await _round(browser, url, proc.pid, n, args.moves,
                                                                      args.settle)})
                        print(rows[-1], flush=True)  # as it comes: a later round that fails loses nothing
                    await browser.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    print(f"\nPatch page, {os.cpu_count()} cores, {args.moves} moves per session, memory = streamlit's VmRSS\n")
    print("| server | sessions | moves timed (errors) | median | p95 | CPU-s per move: server / browsers | MB per "
          f"session | MB held {args.settle:g} s after closing | the issue's numbers before: median / p95 / memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        before = " / ".join(BEFORE[r["n"]]) if r["n"] in BEFORE else "not measured"
        print(f"| {r['server']} | {r['n']} | {r['moves']} ({r['errors']}) | {r['median']:.2f} s | {r['p95']:.2f} s | "
              f"{r['server_cpu']:.2f} / {r['browser_cpu']:.2f} | {r['mb_per_session']:.0f} | "
              f"{r['held_after_close']:.0f} | {before} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,10,30", help="comma-separated session counts (default: %(default)s)")
    parser.add_argument("--moves", type=int, default=8, help="slider moves per session (default: %(default)s)")
    parser.add_argument("--compare", action="store_true",
                        help="also measure a server with Streamlit's default post-script garbage collection")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds after closing the sessions before memory is read again (default: %(default)s)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()

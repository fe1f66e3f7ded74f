"""A class on the Patch page at once (issue 15): slider-move latency and server memory per browser session.

    python -m benchmarks.load --sessions 1,10,30 --moves 8 [--clients browser,protocol] [--compare]

Starts ``streamlit run dashboard/app.py`` with scripts/dashboard.sh's options on a free localhost port (in a
temporary folder, so nothing is written in the repository), waits until the run's slider positions are
precomputed, then for each N opens N sessions in one headless Debian chromium (N browser contexts: N Streamlit
sessions), all on the Patch page of the default run. All N move their alpha slider at the same time, ``--moves``
times each (ArrowRight, one 0.05 step, 0.2 s apart), and a move's latency is the time, measured in the page, from
its keydown event until the page shows the new alpha's live accuracies (the alpha explorer's heading naming the
alpha and the digits accuracy under it have changed). The explorer (dashboard/explorer) holds every position the
server has computed, so a move to one of them is drawn by the browser alone and the server hears the alpha half a
second after a burst of moves. Moves start once the opened pages are quiet (server and browsers together below
0.3 of a core, at most 90 s), so the CPU per move counts moves, not first drawings. Server memory is the streamlit process's resident set (VmRSS): with the N sessions
open against the server before them, and again ``--settle`` seconds after they are closed.

Two kinds of client (``--clients``): ``browser`` sessions render the page on this machine, so their drawing
shares the 2 cores with the server (in a class each student's browser draws on its own laptop); ``protocol``
sessions speak Streamlit's websocket protocol directly and report every move to the server (the BackMsg the
explorer sends with its alpha, the ForwardMsgs until the fragment's run has finished): the server's worst case,
a class whose every move costs a rerun (latency from the move's message to the end of the answer).

Prints one table (median / p95 latency; CPU seconds per move of the server and of the browsers, which share the
machine's cores; MB per extra session; MB still held after closing) beside the numbers the issue measured
before this work. Bounded: at most 40 sessions and 20 moves; pages that fail count as errors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .common import rss_mb

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BEFORE = {1: ("0.34 s", "0.51 s", "~265 MB"), 5: ("1.6 s", "3.4 s", "~240 MB"), 10: ("4.3 s", "17 s", "~260 MB")}
METRIC = '.pe-metric[data-task="digits"]'  # the Patch page's alpha explorer (dashboard/explorer)
SLIDER = "input.pe-slider"


def cpu_seconds(pids) -> float:
    """User + system CPU time of these processes so far (from /proc/<pid>/stat; gone ones count 0)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def browser_pids() -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"chromium" in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(workdir: Path, post_script_gc: bool) -> tuple[subprocess.Popen, str]:
    """The dashboard as scripts/dashboard.sh serves it (``post_script_gc=False``), or with Streamlit's default."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "none",
                             "--runner.postScriptGC", str(post_script_gc).lower(),
                             "--server.fileWatcherType", "none"],
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


# In the page: the state a move must change (the explorer's heading that names the live alpha and the digits
# accuracy under it), and a watcher that resolves when it differs from the state at the last key press. The
# explorer draws a position only from numbers the server computed for it (a position it lacks shows the old
# heading and a "computing" line until the server's answer arrives), so the heading is what the student sees. It
# runs on the page's own DOM mutations, so measuring costs the browsers almost nothing (polling over the DevTools
# protocol every 10 ms, as this benchmark first did, cost each browser about as much as the page's own work).
PAGE_STATE = """() => {
  const heading = document.querySelector('.pe-heading');
  const value = document.querySelector('.pe-metric[data-task="digits"] .pe-metric-value');
  return heading && value && heading.textContent ? heading.textContent + ' ' + value.textContent : null;
}"""
ARM_WATCH = """(state) => {
  const current = eval(state);
  const old = current();
  window.__move = new Promise((resolve) => {
    let pressed = null;
    document.addEventListener('keydown', () => { pressed = performance.now(); }, {capture: true, once: true});
    const check = () => {
      const now = current();
      if (pressed !== null && now !== null && now !== old) {
        observer.disconnect(); clearTimeout(timer); resolve((performance.now() - pressed) / 1000);
      }
    };
    const observer = new MutationObserver(check);
    observer.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
    const timer = setTimeout(() => { observer.disconnect(); resolve(-1); }, %d);
  });
  return old;
}"""


async def move(page, key: str, timeout_s: float) -> float:
    """Press ``key`` on the focused slider; seconds from the page's keydown until it shows the new state."""
    await page.evaluate(ARM_WATCH % int(timeout_s * 1000), PAGE_STATE)
    await page.keyboard.press(key)
    seconds = await page.evaluate("window.__move")
    if seconds < 0:
        raise TimeoutError("no change")
    return seconds


async def _open(browser, url: str):
    context = await browser.new_context(viewport={"width": 1300, "height": 1200})
    page = await context.new_page()
    await page.goto(url + "/patch", timeout=300_000)
    await page.locator(METRIC).first.wait_for(timeout=300_000)
    slider = page.locator(SLIDER).first
    await slider.focus(timeout=120_000)  # 30 pages opening at once on 2 cores can take longer than 30 s
    try:
        await move(page, "Home", 60)  # alpha 0: every session starts from the same place
    except TimeoutError:
        pass  # already at 0
    return context, page


async def _moves(page, n: int, timeout_s: float) -> tuple[list[float], int]:
    from playwright.async_api import Error as PlaywrightError
    slider = page.locator(SLIDER).first
    times, errors = [], 0
    for _ in range(n):
        try:
            await slider.focus(timeout=timeout_s * 1000)
            times.append(await move(page, "ArrowRight", timeout_s))
        except (TimeoutError, PlaywrightError) as e:
            errors += 1  # a move whose page did not update (or could not be made) within the timeout
            print(f"a browser move failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr, flush=True)
        await asyncio.sleep(0.2)  # a person's pause between moves
    return times, errors


class ProtocolClient:
    """A Streamlit session without a browser: Streamlit's own websocket protocol (BackMsg / ForwardMsg protobufs),
    as the browser's frontend speaks it, so the server does exactly the work a student's browser asks of it while
    rendering costs this machine nothing (the students' browsers run on their own laptops). A page's client
    subclasses it and reads what it measures in ``on_element``."""

    def __init__(self, ws) -> None:
        self.ws, self.page_hash = ws, ""

    @staticmethod
    async def connect(url: str):
        import websockets
        return await websockets.connect(url.replace("http://", "ws://") + "/_stcore/stream",
                                        subprotocols=["streamlit"], max_size=None, open_timeout=300)

    def on_element(self, element, fragment_id: str) -> None:
        """Every element the server sends during a rerun (``element``: a protobuf Element)."""

    async def rerun(self, timeout_s: float = 300, **client_state) -> None:
        """Send one rerun request (``client_state``: ClientState's fields); read the answer until the script
        finishes, handing each element to ``on_element``; an exception the page shows is raised here."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ClientState_pb2 import ClientState
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        await self.ws.send(BackMsg(rerun_script=ClientState(**client_state)).SerializeToString())
        async with asyncio.timeout(timeout_s):
            while True:
                msg = ForwardMsg()
                msg.ParseFromString(await self.ws.recv())
                kind = msg.WhichOneof("type")
                if kind == "new_session":
                    self.page_hash = msg.new_session.page_script_hash
                elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                    element = msg.delta.new_element
                    if element.WhichOneof("type") == "exception":
                        raise RuntimeError(f"the page raised: {element.exception.message[:200]}")
                    self.on_element(element, msg.delta.fragment_id)
                elif kind == "script_finished":
                    if msg.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                        continue
                    if msg.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                        raise RuntimeError("the page failed to compile")
                    return

    async def close(self) -> None:
        await self.ws.close()


class _ProtocolSession(ProtocolClient):
    """One session of the Patch page over the protocol: it reads the alpha explorer's data."""

    def __init__(self, ws) -> None:
        super().__init__(ws)
        self.slider_id, self.fragment_id, self.alpha, self.run, self.step = None, "", 0.0, "", 0.05
        self.heading = ""  # the explorer's alpha and whether it holds it, e.g. "alpha = 0.3 shown"

    @classmethod
    async def open(cls, url: str) -> "_ProtocolSession":
        session = cls(await cls.connect(url))
        await session.rerun(page_name="patch")
        if session.slider_id is None:
            raise RuntimeError("the Patch page sent no alpha explorer")
        await session.move(0.0, 60)  # alpha 0: every session starts from the same place
        return session

    def on_element(self, element, fragment_id: str) -> None:
        if element.WhichOneof("type") == "bidi_component" and \
                element.bidi_component.component_name == "paint_explorer.alpha_explorer":
            self.slider_id, self.fragment_id = element.bidi_component.id, fragment_id
            data = json.loads(element.bidi_component.json)
            self.run, self.step = data["run"], data["step"]  # the slider's grid (the sweep's)
            held = f"{data['alpha']:.2f}" in data["positions"]
            self.heading = f"alpha = {data['alpha']:g} {'shown' if held else 'missing'}"

    async def move(self, alpha: float, timeout_s: float) -> float:
        """Report ``alpha`` as the explorer does (its state, a fragment rerun); seconds until the server has sent
        the explorer's data for that alpha and finished. Every move is reported here (a browser reports only
        the last of a burst, or a position it lacks): the server's worst case."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates
        value = json.dumps({"alpha": {"run": self.run, "alpha": alpha}})
        state = WidgetStates(widgets=[WidgetState(id=self.slider_id, json_value=value)])
        t0 = time.perf_counter()
        self.heading = ""
        await self.rerun(timeout_s, widget_states=state, page_script_hash=self.page_hash,
                         fragment_id=self.fragment_id)
        if f"alpha = {alpha:g} shown" not in self.heading:
            raise TimeoutError(f"the page did not show alpha {alpha:g}: {self.heading!r}")
        self.alpha = alpha
        return time.perf_counter() - t0


async def _protocol_moves(session: _ProtocolSession, n: int, timeout_s: float) -> tuple[list[float], int]:
    times, errors = [], 0
    for _ in range(n):
        try:
            times.append(await session.move(round(min(1.0, session.alpha + session.step), 2), timeout_s))
        except (TimeoutError, RuntimeError):
            errors += 1
        await asyncio.sleep(0.2)  # the same pause as the browsers'
    return times, errors


async def until_quiet(pids: list[int], below: float = 0.3, longest_s: float = 90.0) -> None:
    """Wait until these processes together use less than ``below`` of a core over a second (or ``longest_s``), so
    the CPU per move counts the moves, not the pages still drawing what they opened with."""
    deadline = time.time() + longest_s
    while time.time() < deadline:
        before = cpu_seconds(pids)
        await asyncio.sleep(1.0)
        if cpu_seconds(pids) - before < below:
            return


async def _round(clients: str, browser, url: str, server_pid: int, n: int, moves: int, settle: float) -> dict:
    """N sessions of one kind of client open together, move together, close; latency, CPU and memory."""
    base = rss_mb(server_pid)
    if clients == "browser":
        tried = await asyncio.gather(*[_open(browser, url) for _ in range(n)], return_exceptions=True)
    else:
        tried = await asyncio.gather(*[_ProtocolSession.open(url) for _ in range(n)], return_exceptions=True)
    opened = [o for o in tried if not isinstance(o, BaseException)]
    failed_opens = n - len(opened)
    for o in tried:
        if isinstance(o, BaseException):
            print(f"a {clients} session did not open: {type(o).__name__}: {str(o)[:300]}", file=sys.stderr, flush=True)
    loaded = rss_mb(server_pid)
    browsers = browser_pids() if clients == "browser" else []
    await until_quiet([server_pid, *browsers])  # pages finish their first drawing before the moves are timed
    cpu_server, cpu_client, here = cpu_seconds([server_pid]), cpu_seconds(browsers), time.process_time()
    if clients == "browser":
        results = await asyncio.gather(*[_moves(page, moves, 60) for _, page in opened])
    else:
        results = await asyncio.gather(*[_protocol_moves(session, moves, 60) for session in opened])
    cpu_server = cpu_seconds([server_pid]) - cpu_server
    cpu_client = (cpu_seconds(browsers) - cpu_client) if clients == "browser" else time.process_time() - here
    during = rss_mb(server_pid)
    for o in opened:
        await (o[0].close() if clients == "browser" else o.close())
    await asyncio.sleep(settle)
    after = rss_mb(server_pid)
    times = sorted(t for r in results for t in r[0])
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))] if times else float("nan")
    return {"clients": clients, "n": n, "moves": len(times),
            "errors": sum(r[1] for r in results) + failed_opens * moves,
            "median": statistics.median(times) if times else float("nan"), "p95": p95,
            "mb_per_session": (max(loaded, during) - base) / n, "held_after_close": after - base,
            "server_cpu": cpu_server / max(1, len(times)), "client_cpu": cpu_client / max(1, len(times))}


async def _main(args) -> None:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("needs Debian's chromium: apt-get install chromium")
    counts = [int(c) for c in args.sessions.split(",")]
    if any(not 1 <= c <= 40 for c in counts) or not 1 <= args.moves <= 20:
        sys.exit("sessions must be within 1..40 and moves within 1..20")
    if not set(args.clients.split(",")) <= {"browser", "protocol"}:
        sys.exit("--clients takes browser, protocol or both, comma-separated")
    servers = [("dashboard.sh", False)] + ([("Streamlit default (GC after each rerun)", True)] if args.compare else [])
    rows = []
    for label, gc in servers:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = serve(Path(tmp), gc)
            try:
                async with async_playwright() as p:
                    browser = await p.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
                    context, page = await _open(browser, url)  # warm: load the run, precompute the positions
                    deadline = time.time() + 600
                    # "N of N slider positions computed": the slider's grid is the sweep's (11 positions for the
                    # shipped runs) since issue 26; waiting for "21 of 21" waited its whole 600 s
                    every = page.get_by_text(re.compile(r"\b(\d+) of \1 slider positions"))
                    while time.time() < deadline and await every.count() == 0:
                        await page.reload()
                        await page.locator(METRIC).first.wait_for(timeout=300_000)
                        await asyncio.sleep(3)
                    await context.close()
                    print(f"{label}: every slider position precomputed; measuring", flush=True)
                    for clients in args.clients.split(","):
                        for n in counts:
                            rows.append({"server": label, **await _round(clients, browser, url, proc.pid, n,
                                                                          args.moves, args.settle)})
                            print(rows[-1], flush=True)  # as it comes: a later round that fails loses nothing
                    await browser.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    print(f"\nPatch page, {os.cpu_count()} cores, {args.moves} moves per session, memory = streamlit's VmRSS\n")
    print("| server | clients | sessions | moves timed (errors) | median | p95 | CPU-s per move: server / clients | "
          f"MB per session | MB held {args.settle:g} s after closing | the issue's numbers before (browsers): median "
          "/ p95 / memory |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        before = " / ".join(BEFORE[r["n"]]) if r["n"] in BEFORE else "not measured"
        print(f"| {r['server']} | {r['clients']} | {r['n']} | {r['moves']} ({r['errors']}) | {r['median']:.3f} s | "
              f"{r['p95']:.3f} s | {r['server_cpu']:.3f} / {r['client_cpu']:.3f} | {r['mb_per_session']:.0f} | "
              f"{r['held_after_close']:.0f} | {before} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,10,30", help="comma-separated session counts (default: %(default)s)")
    parser.add_argument("--moves", type=int, default=8, help="slider moves per session (default: %(default)s)")
    parser.add_argument("--clients", default="browser,protocol",
                        help="browser: headless chromium sessions on this machine (their rendering shares the "
                        "server's cores); protocol: Streamlit's websocket protocol without rendering, the server's "
                        "side of a class whose browsers run elsewhere (default: %(default)s)")
    parser.add_argument("--compare", action="store_true",
                        help="also measure a server with Streamlit's default post-script garbage collection")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds after closing the sessions before memory is read again (default: %(default)s)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()

"""A class on the Task arithmetic and Typographic pages at once (issue 31): latency and server memory per session.

    python -m benchmarks.page_load --page arithmetic --sessions 1,10,30 --moves 6
    python -m benchmarks.page_load --page typographic --sessions 1,10 --words square,star,cross,circle

Serves the dashboard as benchmarks/load.py does (a free localhost port, a temporary working folder), then for each
N opens N sessions in one headless Debian chromium (N browser contexts), all on the page, and has them act at
the same time:

- ``arithmetic``: every session moves the "coefficient of tau(digits)" slider to the right ``--moves`` times
  (ArrowRight, one 0.1 step, 0.2 s apart), all along the same path from the default 0.3, as a class told "move
  digits up" would. A move's latency is the time, measured in the page, from its keydown until the digits
  accuracy the coefficient explorer shows has changed and the explorer is not waiting on the server (it draws a
  setting it holds at once, and asks the server for one it lacks; before the explorer, 2026-12-06, the page's
  st.metric, and the rerun's end).
- ``typographic``: every session types each word of ``--words`` in turn into "Word to write" (Enter), twice:
  the first pass is the first time the server sees each word (one session computes, the others may wait on
  it), the second pass asks for words already seen. Latency: from the Enter keydown until the title "With the
  word “W”" shows and the page has finished (word sweep, margin along alpha, saliency maps included).

``--clients protocol`` (arithmetic only): the sessions speak Streamlit's websocket protocol instead of rendering
in browsers (``_ArithmeticProtocol``, as ``benchmarks/load.py --clients protocol`` does for the Patch page): the
server does the same work for each move while the students' rendering, which in a class runs on their own laptops,
costs this machine nothing. A move's latency is then from sending the slider's new value until the server has
sent a changed digits accuracy and finished the rerun.

Prints one table: median / p95 latency, CPU seconds per action of the server and of the browsers (which share
this machine's cores: in a class each browser has its own), MB of server memory (VmRSS) per extra
session, MB still held ``--settle`` s after closing. Bounded: at most 40 sessions and 20 actions each.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .common import rss_mb
from .load import FLAGS, ProtocolClient, browser_pids, cpu_seconds, serve, until_quiet

# In the page: a watcher that resolves with the seconds from the next keydown until ``changed.now()`` holds and the
# page is done (``changed.done()`` if it has one, else Streamlit's status widget gone and no element marked stale),
# checked on every DOM mutation.
ARM_WATCH = """([changedSource, timeoutMs]) => {
  const changed = eval(changedSource);
  const before = changed.init();
  window.__act = new Promise((resolve) => {
    let pressed = null;
    document.addEventListener('keydown', () => { pressed = performance.now(); }, {capture: true, once: true});
    const check = () => {
      if (pressed === null) return;
      const done = changed.done ? changed.done() : !document.querySelector('[data-testid="stStatusWidget"]')
        && !document.querySelector('[data-stale="true"]');
      if (done && changed.now(before)) {
        observer.disconnect(); clearInterval(poll); clearTimeout(timer);
        resolve((performance.now() - pressed) / 1000);
      }
    };
    const observer = new MutationObserver(check);
    observer.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
    const poll = setInterval(check, 50);  // a removal alone may not mutate what is observed
    const timer = setTimeout(() => { observer.disconnect(); clearInterval(poll); resolve(-1); }, timeoutMs);
  });
}"""
# the digits accuracy the Task arithmetic page's coefficient explorer shows, before and after a move; done when
# the explorer holds the setting (it is not waiting on the server). A rerun it started only to fetch settings
# further ahead does not delay the answer on the screen.
DIGITS_CHANGED = """({
  done: () => !document.querySelector('.pe-coefficients.pe-waiting'),
  read: () => { const m = document.querySelector('.pe-coefficients .pe-metric[data-task="digits"]');
                return m ? m.innerText : null; },
  init() { return this.read(); },
  now(before) { const v = this.read(); return v !== null && v !== before; },
})"""


def _title_shows(word: str) -> str:
    """The typographic page's watcher: the attacked image's title names ``word``."""
    title = json.dumps(f"With the word \u201c{word}\u201d")
    return f"({{init() {{ return null; }}, now() {{ return document.body.innerText.includes({title}); }}}})"


async def _act(page, action, changed_source: str, timeout_s: float) -> float:
    """Arm the watcher, run ``action`` (an async callable that ends with a key press); seconds until done."""
    await page.evaluate(ARM_WATCH, [changed_source, int(timeout_s * 1000)])
    await action()
    seconds = await page.evaluate("window.__act")
    if seconds < 0:
        raise TimeoutError("the page did not finish")
    return seconds


async def _open(browser, url: str, page_name: str):
    context = await browser.new_context(viewport={"width": 1300, "height": 1200})
    page = await context.new_page()
    await page.goto(f"{url}/{page_name}", timeout=300_000)
    ready = ('.pe-coefficients .pe-metric' if page_name == "arithmetic" else 'text="Word sweep"')
    await page.locator(ready).first.wait_for(timeout=300_000)
    return context, page


async def _arithmetic(page, moves: int, timeout_s: float) -> list[tuple[str, float | None]]:
    slider = page.get_by_role("slider", name="coefficient of tau(digits)")
    out = []
    for _ in range(moves):
        try:
            await slider.focus(timeout=timeout_s * 1000)
            out.append(("move", await _act(page, lambda: page.keyboard.press("ArrowRight"), DIGITS_CHANGED,
                                           timeout_s)))
        except Exception as e:  # noqa: BLE001 (a failed move is counted, its reason printed)
            print(f"a move failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr, flush=True)
            out.append(("move", None))
        await asyncio.sleep(0.2)
    return out


async def _typographic(page, words: list[str], timeout_s: float) -> list[tuple[str, float | None]]:
    box = page.get_by_label("Word to write")
    out = []
    for label in ("first time", "seen"):
        for word in words:
            async def type_word(word=word):
                await box.fill(word)
                await box.press("Enter")
            try:
                out.append((label, await _act(page, type_word, _title_shows(word), timeout_s)))
            except Exception as e:  # noqa: BLE001
                print(f"a word failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr, flush=True)
                out.append((label, None))
            await asyncio.sleep(0.5)  # a person reading the answer
    return out


class _ArithmeticProtocol(ProtocolClient):
    """One session of the Task arithmetic page over Streamlit's websocket protocol: it reads the coefficient
    explorer's data and the digits accuracy it holds at the page's coefficients."""

    COMPONENT = "paint_explorer.coefficient_explorer"

    def __init__(self, ws) -> None:
        super().__init__(ws)
        self.slider_id, self.fragment_id = None, ""
        self.data: dict = {}
        self.digits, self.asked = None, 0

    @classmethod
    async def open(cls, url: str) -> "_ArithmeticProtocol":
        session = cls(await cls.connect(url))
        await session.rerun(page_name="arithmetic")
        if session.slider_id is None or session.digits is None:
            raise RuntimeError("the Task arithmetic page sent no coefficient explorer or digits accuracy")
        return session

    def on_element(self, element, fragment_id: str) -> None:
        if element.WhichOneof("type") == "bidi_component" and element.bidi_component.component_name == self.COMPONENT:
            self.slider_id, self.fragment_id = element.bidi_component.id, fragment_id
            self.data = json.loads(element.bidi_component.json)
            here = ",".join(f"{v + 0.0:.2f}" for v in self.data["values"])  # as the browser keys it
            self.digits = next((m["value"] for m in self.data["settings"].get(here, ()) if m["task"] == "digits"),
                               None)

    async def move(self, timeout_s: float) -> float:
        """The digits slider one step to the right, reported as the explorer does (its state, a fragment rerun);
        seconds until the server has sent a changed digits accuracy and finished. Every move is reported here (a
        browser reports only a setting it lacks, one whose next steps it lacks, or the last of a burst): the
        server's worst case."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates
        values = list(self.data["values"])
        digits_at = self.data["tasks"].index("digits")
        values[digits_at] = round(values[digits_at] + 0.1, 2)
        self.asked += 1
        report = {"coefficients": {"identity": self.data["identity"], "values": values, "asked": self.asked}}
        states = WidgetStates(widgets=[WidgetState(id=self.slider_id, json_value=json.dumps(report))])
        t0 = time.perf_counter()
        # the page by name, as the browser's URL gives it (on a full rerun the hash the server sent first may be
        # the entry script's)
        before, self.digits = self.digits, None
        await self.rerun(timeout_s, widget_states=states, page_name="arithmetic", fragment_id=self.fragment_id)
        digits = self.digits
        seconds = time.perf_counter() - t0
        if digits is None or digits == before:
            raise RuntimeError(f"the digits accuracy did not change at {values[digits_at]:g}: {digits!r}")
        return seconds


async def _arithmetic_protocol(session: _ArithmeticProtocol, moves: int, timeout_s: float
                               ) -> list[tuple[str, float | None]]:
    out = []
    for _ in range(moves):
        try:
            out.append(("move", await session.move(timeout_s)))
        except (TimeoutError, RuntimeError) as e:
            print(f"a move failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr, flush=True)
            out.append(("move", None))
        await asyncio.sleep(0.2)  # the same pause as the browsers'
    return out


def _p95(times: list[float]) -> float:
    times = sorted(times)
    return times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))] if times else float("nan")


async def _round(args, browser, url: str, server_pid: int, n: int) -> list[dict]:
    base = rss_mb(server_pid)
    protocol = args.clients == "protocol"
    opening = (_ArithmeticProtocol.open(url) if protocol else _open(browser, url, args.page) for _ in range(n))
    tried = await asyncio.gather(*opening, return_exceptions=True)
    opened = [o for o in tried if not isinstance(o, BaseException)]
    for o in tried:
        if isinstance(o, BaseException):
            print(f"a session did not open: {type(o).__name__}: {str(o)[:300]}", file=sys.stderr, flush=True)
    loaded = rss_mb(server_pid)
    await until_quiet([server_pid, *browser_pids()])
    browsers = browser_pids()
    cpu, cpu_browsers = cpu_seconds([server_pid]), cpu_seconds(browsers)
    if protocol:
        results = await asyncio.gather(*[_arithmetic_protocol(session, args.moves, 120) for session in opened])
    elif args.page == "arithmetic":
        results = await asyncio.gather(*[_arithmetic(page, args.moves, 120) for _, page in opened])
    else:
        words = [w.strip() for w in args.words.split(",") if w.strip()]
        results = await asyncio.gather(*[_typographic(page, words, 300) for _, page in opened])
    cpu, cpu_browsers = cpu_seconds([server_pid]) - cpu, cpu_seconds(browsers) - cpu_browsers
    during = rss_mb(server_pid)
    for o in opened:
        await (o.close() if protocol else o[0].close())
    await asyncio.sleep(args.settle)
    after = rss_mb(server_pid)
    rows = []
    actions = len([a for r in results for a in r])
    for label in dict.fromkeys(a[0] for r in results for a in r):
        times = [t for r in results for (lab, t) in r if lab == label and t is not None]
        errors = len([t for r in results for (lab, t) in r if lab == label and t is None]) + (n - len(opened))
        rows.append({"page": args.page, "n": n, "action": label, "timed": len(times), "errors": errors,
                     "median": statistics.median(times) if times else float("nan"), "p95": _p95(times),
                     "server_cpu": cpu / max(1, actions), "browser_cpu": cpu_browsers / max(1, actions),
                     "mb_per_session": (max(loaded, during) - base) / n,
                     "held_after_close": after - base})
    return rows


async def _main(args) -> None:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("needs Debian's chromium: apt-get install chromium")
    counts = [int(c) for c in args.sessions.split(",")]
    if args.clients == "protocol" and args.page != "arithmetic":
        sys.exit("--clients protocol speaks to the Task arithmetic page only")
    if any(not 1 <= c <= 40 for c in counts) or not 1 <= args.moves <= 20 or len(args.words.split(",")) > 10:
        sys.exit("sessions must be within 1..40, moves within 1..20, at most 10 words")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = serve(Path(tmp), False)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
                context, _ = await _open(browser, url, args.page)  # warm: the run, the model pool, the page's first answers
                await context.close()
                print(f"{args.page}: page warm; measuring", flush=True)
                for n in counts:
                    for row in await _round(args, browser, url, proc.pid, n):
                        rows.append(row)
                        print(row, flush=True)  # as it comes: a later round that fails loses nothing
                await browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    clients = ("protocol sessions (no rendering here)" if args.clients == "protocol"
               else "headless chromium sessions on this machine")
    print(f"\n{args.page} page, {os.cpu_count()} cores, {clients}, memory = "
          "streamlit's VmRSS\n")
    print(f"| sessions | action | timed (errors) | median | p95 | CPU-s per action: server / browsers | "
          f"MB per session | MB held {args.settle:g} s after closing |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['action']} | {r['timed']} ({r['errors']}) | {r['median']:.3f} s | {r['p95']:.3f} s | "
              f"{r['server_cpu']:.3f} / {r['browser_cpu']:.3f} | {r['mb_per_session']:.0f} | {r['held_after_close']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", choices=["arithmetic", "typographic"], required=True)
    parser.add_argument("--sessions", default="1,10,30", help="comma-separated session counts (default: %(default)s)")
    parser.add_argument("--clients", choices=["browser", "protocol"], default="browser",
                        help="browser: headless chromium sessions; protocol: Streamlit's websocket protocol, no "
                             "rendering (arithmetic only) (default: %(default)s)")
    parser.add_argument("--moves", type=int, default=6, help="arithmetic: slider moves per session (default: %(default)s)")
    parser.add_argument("--words", default="square,star,cross,circle",
                        help="typographic: words each session types, twice over (default: %(default)s)")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds after closing the sessions before memory is read again (default: %(default)s)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()

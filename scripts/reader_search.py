"""Pretrain reader candidates side by side and judge each on issue 32's targets: the prepared run for a GPU.

    python scripts/reader_search.py --out runs/reader-search --device cuda --jobs 8             # the whole grid
    python scripts/reader_search.py --out runs/reader-search --only hold-48-10-w5 --jobs 1      # one, on the CPU

On a CPU a candidate takes 1.5-2.5 h (one core), so a session tries two; on a GPU the grid is meant to fit one
device run. Per candidate (``GRID``, or ``--only``): ``paint_core pretrain`` its recipe into ``OUT/<name>/``, then
``scripts/reading_report.py`` (which words it reads, what unseen words cost, zero-shot accuracies) and
``scripts/reader_patches.py`` (the three patch targets), each stage's figures kept as JSON beside the weights, so a
rerun skips what is done and an interrupted pretraining resumes. The shipped reader is measured the same way
(``OUT/shipped``). Then ``OUT/readers.md``, one row per candidate with two verdicts:
- the issue's targets: every class word chosen >= 40%, unseen words cost <= 5 points, clean and supported >= 95%,
  typographic patch >= +30 and digits / counting >= +20 within a point of supported drift;
- the rule set beforehand for replacing the shipped reader (docs/experiments.md, issue 32): its weakest word read
  at least 10 points more often than the shipped reader's, unseen words costing no more, clean and supported
  >= 95%, and the three patch targets met.
and ``OUT/readers.jsonl`` (every figure), and the best candidate that beats the shipped reader, in float16,
as ``OUT/best.safetensors`` (a GPU run brings back at most 8 files of 16 MiB: copy these three to $OUT). Shipping
a found recipe means rerunning its pretraining on a CPU (the command is in the row), so the shipped weights stay
reproducible without a GPU.

``--deadline-s``: no stage starts after that many seconds, so a device run ends with a table of what finished
(unfinished stages read "not measured").
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
SHIPPED_WEIGHTS = REPO / "paint_core" / "weights" / "micro-rn-s-64-reads.safetensors"
SHIPPED_MODEL = "micro-rn-s-64"
SMALL_MODEL = "micro-rn-s"  # 48 px: preferred, as it is cheaper, unless a larger input beats it on both counts

WORD_MIN, UNSEEN_MAX, CLEAN_MIN = 0.40, 0.05, 0.95  # the issue's targets
WORD_MIN_GAIN = 0.10  # the pre-set rule: the weakest word read 10 points more often than the shipped reader's


def _sibling(name: str):
    """Another script of this folder (scripts/ is no package): its constants are the one place they are set."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PATCH_TARGETS = _sibling("reader_patches").TASKS  # task -> the gain the issue asks for, as reader_patches reports


@dataclass(frozen=True)
class Candidate:
    """A pretraining recipe: ``paint_core pretrain --model MODEL FLAGS`` (steps and device come from the search)."""
    name: str
    model: str
    flags: str
    why: str


READER = "--object-word-share 0.35 --word-only-caption 0.6 --word-pairs --word-colours"  # the shipped recipe's mix
FRESH = "--neutral-named --neutral-keeps-object --neutral-fresh"  # levers 7-10: made-up words, object named
GRID = (
    Candidate("shipped-recipe", "micro-rn-s", f"{READER} --neutral-twins 0.35",
              "the shipped reader's recipe, retrained here: what the device changes"),
    Candidate("fresh-48-10", "micro-rn-s", f"{READER} --neutral-twins 0.1 {FRESH}", "lever 9"),
    Candidate("hold-48-10-w5", "micro-rn-s", f"{READER} --neutral-twins 0.1 {FRESH} --neutral-hold 5", "lever 10"),
    Candidate("hold-48-10-w20", "micro-rn-s", f"{READER} --neutral-twins 0.1 {FRESH} --neutral-hold 20",
              "lever 10, a stronger hold"),
    Candidate("hold-48-20-w5", "micro-rn-s", f"{READER} --neutral-twins 0.2 {FRESH} --neutral-hold 5",
              "lever 10, twice the neutral twins"),
    Candidate("fresh-64-10", "micro-rn-s-64", f"{READER} --neutral-twins 0.1 {FRESH}",
              "lever 8 with half the neutral twins"),
    Candidate("hold-64-10-w5", "micro-rn-s-64", f"{READER} --neutral-twins 0.1 {FRESH} --neutral-hold 5",
              "lever 10 at 64 px"),
    Candidate("hold-64-20-w5", "micro-rn-s-64", f"{READER} --neutral-twins 0.2 {FRESH} --neutral-hold 5",
              "lever 8 with the hold term"),
)


def pretrain_command(c: Candidate, out: Path, steps: int, device: str, extra: str) -> list[str]:
    return [sys.executable, "-m", "paint_core", "pretrain", "--model", c.model, "--out", str(out / c.name),
            "--name", c.name, "--steps", str(steps), "--device", device, *c.flags.split(), *extra.split()]


def last_json(text: str) -> dict:
    """The last line of a script's output that is a JSON object (both report scripts end with one)."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def run_stage(command: list[str], log: Path, threads: int) -> str:
    """Run one stage as its own process (its output appended to ``log``); its stdout, or an error naming the log."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    with log.open("a") as f:
        f.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"{command[1] if command[1] != '-m' else command[3]} failed (exit {done.returncode}); "
                           f"see {log}")
    return done.stdout


def measure(name: str, model: str, weights: Path, out: Path, device: str, threads: int,
            report_args: str, patches: bool) -> dict:
    """The reading report and the patch figures of one reader, each kept as JSON in ``out`` (reused on a rerun)."""
    out.mkdir(parents=True, exist_ok=True)
    log, figures = out / "measure.log", {"name": name, "model": model, "weights": str(weights)}
    stages = [("reading", [sys.executable, str(SCRIPTS / "reading_report.py"), "--model", model, "--weights",
                           str(weights), "--device", device, *report_args.split()])]
    if patches:
        stages.append(("patches", [sys.executable, str(SCRIPTS / "reader_patches.py"), "--model", model,
                                   "--weights", str(weights), "--out", str(out / "patches"), "--device", device]))
    for stage, command in stages:
        kept = out / f"{stage}.json"
        if not kept.is_file():
            kept.write_text(json.dumps(last_json(run_stage(command, log, threads))))
        figures[stage] = json.loads(kept.read_text())
    return figures


def judge(f: dict, shipped: dict | None) -> dict:
    """Which targets a reader's figures meet: ``issue`` (the issue's targets) and ``rule`` (replaces the shipped
    reader), each a list of what it misses (empty: met); a part not measured counts as missed."""
    misses: list[str] = []
    by_word, zero = f["reading"]["by_word"], f["reading"]["zero_shot_test"]
    word_min, unseen = by_word["word_rate_min"]["all"], by_word["control_cost"]
    clean = min(by_word["clean_accuracy"], zero["shapes"], zero["colours"])
    if clean < CLEAN_MIN:
        misses.append(f"clean/supported {100 * clean:.1f} < {100 * CLEAN_MIN:.0f}")
    patches = f.get("patches", {}).get("patches")
    if patches is None:
        misses.append("patches not measured")
    else:
        misses += [f"{task} patch {100 * patches[task]['within_gain']:+.1f} < {100 * target:+.0f}"
                   for task, target in PATCH_TARGETS.items() if patches[task]["within_gain"] < target]
    issue = list(misses)
    if word_min < WORD_MIN:
        issue.append(f"weakest word {100 * word_min:.1f}% < {100 * WORD_MIN:.0f}%")
    if unseen > UNSEEN_MAX:
        issue.append(f"unseen words cost {100 * unseen:.1f} > {100 * UNSEEN_MAX:.0f}")
    rule = list(misses)
    if shipped is None:
        rule.append("shipped reader not measured")
    else:
        s_min, s_unseen = shipped["word_rate_min"]["all"], shipped["control_cost"]
        if word_min < s_min + WORD_MIN_GAIN - 1e-9:
            rule.append(f"weakest word {100 * word_min:.1f}% < shipped {100 * s_min:.1f}% + 10")
        if unseen > s_unseen + 1e-9:
            rule.append(f"unseen words cost {100 * unseen:.1f} > shipped {100 * s_unseen:.1f}")
    return {"issue": issue, "rule": rule}


def best(rows: list[dict]) -> dict | None:
    """The reader that replaces the shipped one: among those meeting the rule, the highest weakest-word rate, then
    the lowest unseen cost; a 64 px reader only when it beats every qualifying 48 px one on both counts."""
    ok = [r for r in rows if r.get("verdict") and not r["verdict"]["rule"] and r["name"] != "shipped"]
    key = lambda r: (r["reading"]["by_word"]["word_rate_min"]["all"], -r["reading"]["by_word"]["control_cost"])  # noqa: E731
    small = [r for r in ok if r["model"] == SMALL_MODEL]
    large = [r for r in ok if r["model"] != SMALL_MODEL
             and all(key(r)[0] > key(s)[0] and key(r)[1] > key(s)[1] for s in small)]
    pool = large + small
    return max(pool, key=key) if pool else None


def table(rows: list[dict]) -> str:
    """The markdown table of readers.md: per-word rates, minimum, unseen cost, clean, patch gains, verdicts."""
    from paint_core.data.world import SHAPES

    head = ["reader", "model", *SHAPES, "min", "unseen cost", "clean", *PATCH_TARGETS, "issue's targets",
            "replaces shipped"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "reading" not in r:
            lines.append(f"| {r['name']} | {r['model']} | " + " | ".join(["not measured"] * (len(head) - 2)) + " |")
            continue
        w, zero = r["reading"]["by_word"], r["reading"]["zero_shot_test"]
        patches = r.get("patches", {}).get("patches")
        gains = [f"{100 * patches[t]['within_gain']:+.1f}" if patches else "not measured" for t in PATCH_TARGETS]
        verdict = r["verdict"]
        cells = [r["name"], r["model"], *(f"{100 * w['word_rates'][s]:.1f}" for s in SHAPES),
                 f"{100 * w['word_rate_min']['all']:.1f} ({w['weakest_word']['all']})",
                 f"{100 * w['control_cost']:.1f}",
                 f"{100 * min(w['clean_accuracy'], zero['shapes'], zero['colours']):.1f}", *gains,
                 "met" if not verdict["issue"] else "; ".join(verdict["issue"]),
                 "-" if r["name"] == "shipped" else ("yes" if not verdict["rule"] else "; ".join(verdict["rule"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="work folder (kept: a rerun skips what is done)")
    ap.add_argument("--only", nargs="*", default=None, help=f"candidates by name (default all: "
                                                           f"{', '.join(c.name for c in GRID)})")
    ap.add_argument("--steps", type=int, default=6000, help="pretraining steps (the shipped reader's: 6000)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto: pretraining, fine-tunes and sweeps")
    ap.add_argument("--jobs", type=int, default=1, help="candidates pretrained and measured at once")
    ap.add_argument("--pretrain-args", default="", help="more pretrain options for every candidate (tests: "
                                                         "'--corpus-size 400 --batch-size 16')")
    ap.add_argument("--report-args", default="", help="options of reading_report.py (tests: '--n 30 --per-cell 1')")
    ap.add_argument("--no-patches", action="store_true", help="skip reader_patches.py (the verdicts then miss)")
    ap.add_argument("--deadline-s", type=float, default=None, help="start no stage after this many seconds")
    args = ap.parse_args()
    if args.jobs < 1 or args.steps < 1:
        ap.error("--jobs and --steps must be at least 1")
    chosen = [c for c in GRID if args.only is None or c.name in args.only]
    unknown = set(args.only or ()) - {c.name for c in GRID}
    if unknown:
        ap.error(f"unknown candidates {sorted(unknown)}; choose from {[c.name for c in GRID]}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start, threads = time.monotonic(), max(1, (os.cpu_count() or 1) // args.jobs)
    in_time = lambda: args.deadline_s is None or time.monotonic() - start < args.deadline_s  # noqa: E731

    def candidate(c: Candidate) -> dict:
        row: dict = {"name": c.name, "model": c.model, "why": c.why,
                     "command": "python " + " ".join(pretrain_command(c, Path("runs/readers"), args.steps, args.device,
                                                                    args.pretrain_args)[1:])}
        weights = out / c.name / f"{c.name}.safetensors"
        try:
            if not weights.is_file():
                if not in_time():
                    return row
                (out / c.name).mkdir(exist_ok=True)
                run_stage(pretrain_command(c, out, args.steps, args.device, args.pretrain_args),
                          out / c.name / "pretrain.log", threads)
            if in_time():
                row.update(measure(c.name, c.model, weights, out / c.name, args.device, threads, args.report_args,
                                   not args.no_patches))
        except (RuntimeError, ValueError) as e:
            row["error"] = str(e)
            print(f"{c.name}: {e}", file=sys.stderr)
        return row

    with ThreadPoolExecutor(args.jobs + 1) as pool:  # the shipped reader is measured beside the candidates
        baseline = pool.submit(measure, "shipped", SHIPPED_MODEL, SHIPPED_WEIGHTS, out / "shipped", args.device,
                               threads, args.report_args, not args.no_patches)
        measured = pool.map(candidate, chosen)  # submitted now, before waiting for the baseline
        rows = [baseline.result(), *measured]
    shipped = rows[0]
    for r in rows:
        if "reading" in r:
            r["verdict"] = judge(r, shipped["reading"]["by_word"])
    (out / "readers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    winner = best(rows)
    lines = [f"# Reader candidates ({args.steps} steps on {args.device}, {time.monotonic() - start:.0f} s)", "",
             table(rows), ""]
    lines += [f"- {r['name']} ({r['why']}): `{r['command']}`" + (f" -- {r['error']}" if "error" in r else "")
              for r in rows if r["name"] != "shipped"]
    lines += ["", f"Replaces the shipped reader: {winner['name'] if winner else 'none'}"]
    if winner:
        save_half(Path(winner["weights"]), out / "best.safetensors")
    (out / "readers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def save_half(weights: Path, dest: Path) -> None:
    """The winner's weights in float16 (12 MB for micro-rn-s: under a device run's 16 MiB per file)."""
    from safetensors.torch import load_file, save_file

    save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(weights).items()}, dest)


if __name__ == "__main__":
    main()

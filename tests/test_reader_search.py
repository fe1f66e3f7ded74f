"""scripts/reader_search.py (issue 32): the verdicts against the issue's targets and the rule for replacing the
shipped reader, the choice of the winner, and a tiny search end to end whose table is its reports' figures."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("reader_search", ROOT / "scripts" / "reader_search.py")
search = sys.modules["reader_search"] = importlib.util.module_from_spec(spec)  # its dataclass looks itself up
spec.loader.exec_module(search)

SHIPPED = {"word_rate_min": {"all": 0.011}, "control_cost": 0.328}


def reader(word_min=0.5, unseen=0.04, clean=0.97, shapes=0.96, gains=(0.31, 0.21, 0.2), model="micro-rn-s",
           name="r") -> dict:
    return {"name": name, "model": model,
            "reading": {"by_word": {"word_rate_min": {"all": word_min}, "control_cost": unseen,
                                    "clean_accuracy": clean},
                        "zero_shot_test": {"shapes": shapes, "colours": 1.0}},
            "patches": {"patches": {t: {"within_gain": g} for t, g in zip(search.PATCH_TARGETS, gains)}}}


def test_a_reader_meeting_every_target_meets_both_verdicts():
    assert search.judge(reader(), SHIPPED) == {"issue": [], "rule": []}


def test_each_missed_target_is_named_once_per_verdict():
    v = search.judge(reader(word_min=0.121, unseen=0.198, gains=(0.569, 0.364, 0.161)), SHIPPED)  # lever 8
    assert v["issue"] == ["counting patch +16.1 < +20", "weakest word 12.1% < 40%", "unseen words cost 19.8 > 5"]
    assert v["rule"] == ["counting patch +16.1 < +20"]  # it reads better and costs less than the shipped reader
    v = search.judge(reader(word_min=0.10, shapes=0.94), SHIPPED)
    assert v["rule"] == ["clean/supported 94.0 < 95", "weakest word 10.0% < shipped 1.1% + 10"]
    v = search.judge(reader(unseen=0.33), SHIPPED)
    assert v["rule"] == ["unseen words cost 33.0 > shipped 32.8"]
    no_patches = reader()
    del no_patches["patches"]
    assert search.judge(no_patches, None) == {"issue": ["patches not measured"],
                                              "rule": ["patches not measured", "shipped reader not measured"]}


def test_the_rule_accepts_exactly_ten_points_above_the_shipped_weakest_word():
    assert search.judge(reader(word_min=0.111), SHIPPED)["rule"] == []
    assert search.judge(reader(word_min=0.110), SHIPPED)["rule"] == ["weakest word 11.0% < shipped 1.1% + 10"]


def test_the_winner_reads_best_and_a_64px_reader_must_beat_every_qualifying_48px_one_on_both_counts():
    def judged(**kw):
        r = reader(**kw)
        r["verdict"] = search.judge(r, SHIPPED)
        return r

    a, b = judged(name="a", word_min=0.3, unseen=0.2), judged(name="b", word_min=0.4, unseen=0.25)
    failing = judged(name="f", word_min=0.9, gains=(0.1, 0.3, 0.3))
    assert search.best([a, b, failing])["name"] == "b"
    reads_more = judged(name="big", word_min=0.6, unseen=0.22, model="micro-rn-s-64")  # costs more than a
    assert search.best([a, b, reads_more])["name"] == "b"
    both = judged(name="big", word_min=0.6, unseen=0.1, model="micro-rn-s-64")
    assert search.best([a, b, both])["name"] == "big"
    assert search.best([failing]) is None


@pytest.mark.slow
def test_a_tiny_search_tables_its_reports_and_a_rerun_reuses_them(tmp_path):
    command = [sys.executable, str(ROOT / "scripts" / "reader_search.py"), "--out", str(tmp_path), "--only",
               "hold-48-10-w5", "--steps", "2", "--pretrain-args", "--corpus-size 300 --batch-size 16 --warmup 1",
               "--report-args", "--n 20 --per-cell 1", "--no-patches"]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    weights = tmp_path / "hold-48-10-w5" / "hold-48-10-w5.safetensors"
    side = json.loads(weights.with_suffix(".json").read_text())
    assert side["config"]["neutral_hold"] == 5 and "--neutral-hold 5" in side["command"]  # the candidate's recipe
    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "readers.jsonl").read_text().splitlines())}
    assert set(rows) == {"shipped", "hold-48-10-w5"}
    for name, row in rows.items():
        kept = json.loads((tmp_path / name / "reading.json").read_text())
        assert row["reading"] == kept
        w = kept["by_word"]
        line = next(x for x in (tmp_path / "readers.md").read_text().splitlines() if x.startswith(f"| {name} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2:8] == [f"{100 * w['word_rates'][s]:.1f}" for s in
                              ("circle", "square", "triangle", "star", "cross", "diamond")]
        assert cells[9] == f"{100 * w['control_cost']:.1f}"
        assert row["verdict"] == search.judge(row, rows["shipped"]["reading"]["by_word"])
    assert "patches not measured" in rows["hold-48-10-w5"]["verdict"]["rule"]
    stamp = weights.stat().st_mtime_ns
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and weights.stat().st_mtime_ns == stamp
    log = (tmp_path / "shipped" / "measure.log").read_text().splitlines()
    assert sum(line.startswith("$ ") for line in log) == 1  # the report ran once: the rerun read reading.json


@pytest.mark.parametrize("extra, message", [(["--only", "nope"], "unknown candidates ['nope']"),
                                            (["--jobs", "0"], "--jobs and --steps must be at least 1"),
                                            (["--steps", "0"], "--jobs and --steps must be at least 1")])
def test_bad_arguments_are_refused_before_anything_runs(tmp_path, extra, message):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "reader_search.py"), "--out", str(tmp_path / "o"),
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "o").exists()  # nothing written

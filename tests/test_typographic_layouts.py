"""Typographic sets as their users hold them (issue 30, item 4): RTA-100's unpacked zip and SCAM's parquet /
metadata layouts, read with the right labels and words, and scored by `attack` and the page's batch mode."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from paint_core.cli import main
from paint_core.data.tasks import get_task
from paint_core.data.world import render_object, write_word

ROOT = Path(__file__).resolve().parents[1]
CACHED_RUN = str(ROOT / "cached_results/micro-rn-l/typographic")
RTA = [("circle", "star"), ("square", "circle"), ("star", "triangle"), ("triangle", "circle"),
       ("circle", "diamond"), ("star", "star")]
# SCAM rows: (id, type, object_label, attack_word)
SCAM = [("SCAM_0", "SCAM", "circle", "star"), ("SCAM_1", "SCAM", "square", "triangle"),
        ("SCAM_2", "SCAM", "star", "circle"), ("NoSCAM_0", "NoSCAM", "circle", "star"),
        ("NoSCAM_1", "NoSCAM", "square", "triangle"), ("SynthSCAM_0", "SynthSCAM", "triangle", "square"),
        ("SynthSCAM_1", "SynthSCAM", "star", "cross")]


def _image(i: int, label: str, word: str | None) -> Image.Image:
    img = render_object(np.random.default_rng(i), label, "red").resize((96, 96))
    return img if word is None else write_word(img, word, "center", 0.25)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture()
def rta_root(tmp_path) -> Path:
    """RTA-100 as its zip unpacks: ours/data/label=<object>_text=<word>.jpg."""
    data = tmp_path / "rta100" / "ours" / "data"
    data.mkdir(parents=True)
    for i, (label, word) in enumerate(RTA):
        _image(i, label, word).save(data / f"label={label}_text={word}.jpg", quality=95)
    return tmp_path / "rta100"


def _scam_rows() -> list[dict]:
    return [{"id": sid, "image": {"bytes": _png(_image(i, label, None if kind == "NoSCAM" else word)),
                                  "path": f"{sid}.png"},
             "object_label": label, "attack_word": word, "postit_area_pct": 3.5, "type": kind}
            for i, (sid, kind, label, word) in enumerate(SCAM)]


@pytest.fixture()
def scam_parquet(tmp_path) -> Path:
    """SCAM as datasets' push_to_hub stores it: data/train-*.parquet, images as {bytes, path}, two files and
    row groups of two rows (so rows are found across files and groups)."""
    folder = tmp_path / "scam" / "data"
    folder.mkdir(parents=True)
    rows = _scam_rows()
    for k, part in enumerate((rows[:4], rows[4:])):
        pq.write_table(pa.Table.from_pylist(part), folder / f"train-0000{k}-of-00002.parquet", row_group_size=2)
    return tmp_path / "scam"


def _independent_scores(task_name: str, alpha: float) -> tuple[float, float, int]:
    """Accuracy, attack success and attacked count of the cached run at ``alpha``, computed here."""
    from paint_core import interpolate, load_run
    from paint_core.engine.evaluation import materialize, zero_shot_head
    run, task = load_run(CACHED_RUN), get_task(task_name)
    x, y = materialize(task.split("test", run.preprocess)).tensors
    head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
    run.model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, alpha))
    with torch.no_grad():
        pred = (torch.nn.functional.normalize(run.model.encode_image(x), dim=-1) @ head.T).argmax(-1)
    written = torch.as_tensor(task.written_class("test"))
    attacked = (written >= 0) & (written != y)
    return (float((pred == y).float().mean()), float((pred[attacked] == written[attacked]).float().mean()),
            int(attacked.sum()))


def test_rta100_is_found_in_its_zip_folder_with_words_among_the_classes(rta_root):
    task = get_task(f"rta100:{rta_root}")
    assert task.classnames == ("circle", "diamond", "square", "star", "triangle")  # "diamond" only written
    assert task.templates == ("a photo of a {}.",)
    test = task.split("test")
    files = sorted(RTA, key=lambda lw: f"label={lw[0]}_text={lw[1]}.jpg")
    assert [task.classnames[test[i][1]] for i in range(len(test))] == [label for label, _ in files]
    assert [task.classnames[w] for w in task.written_class("test")] == [word for _, word in files]
    with pytest.raises(ValueError, match="evaluation-only"):
        task.split("train")
    assert get_task(f"rta100:{rta_root / 'ours' / 'data'}").classnames == task.classnames  # the folder itself
    (rta_root / "copy" / "data").mkdir(parents=True)
    for f in (rta_root / "ours" / "data").iterdir():
        (rta_root / "copy" / "data" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match="2 folders .*name the one"):
        get_task(f"rta100:{rta_root}")


def test_scam_parquet_rows_keep_their_labels_words_and_images(scam_parquet):
    task = get_task(f"scam:{scam_parquet}")  # the SCAM part by default
    assert task.classnames == ("circle", "square", "star", "triangle")
    test = task.split("test")
    assert len(test) == 3
    for i, (sid, _, label, word) in enumerate(SCAM[:3]):
        img, y = test[i]
        assert task.classnames[y] == label and task.classnames[task.written_class("test")[i]] == word
        assert np.array_equal(np.asarray(img), np.asarray(_image(i, label, word)))  # the very pixels stored
    clean = get_task(f"scam:{scam_parquet}?part=NoSCAM")
    assert list(clean.written_class("test")) == [-1, -1]  # nothing written on NoSCAM images
    synth = get_task(f"scam:{scam_parquet}?part=SynthSCAM")
    assert "cross" in synth.classnames and len(synth.split("test")) == 2
    assert len(get_task(f"scam:{scam_parquet}?part=all").split("test")) == len(SCAM)
    with pytest.raises(ValueError, match="unknown part 'scam'"):
        get_task(f"scam:{scam_parquet}?part=scam")


def test_scam_as_an_image_folder_with_metadata(tmp_path):
    folder = tmp_path / "scam"
    folder.mkdir()
    lines = ["file_name,object_label,attack_word,type"]
    for i, (sid, kind, label, word) in enumerate(SCAM):
        _image(i, label, None if kind == "NoSCAM" else word).save(folder / f"{sid}.png")
        lines.append(f"{sid}.png,{label},{word},{kind}")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    task = get_task(f"scam:{folder}?part=SynthSCAM")
    img, y = task.split("test")[0]
    assert task.classnames[y] == "triangle" and task.classnames[task.written_class("test")[0]] == "square"
    assert np.array_equal(np.asarray(img), np.asarray(_image(5, "triangle", "square")))
    (folder / "metadata.csv").write_text(lines[0] + "\n../outside.png,circle,star,SCAM\n")
    with pytest.raises(ValueError, match="not a file inside"):
        get_task(f"scam:{folder}")


def test_bad_scam_files_are_clear_errors(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist([{"image": {"bytes": b"", "path": "x"}, "object_label": "circle"}]),
                   folder / "train.parquet")
    with pytest.raises(ValueError, match="lacks the column.*attack_word"):
        get_task(f"scam:{folder}")
    (folder / "train.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        get_task(f"scam:{folder}")
    (folder / "train.parquet").unlink()
    with pytest.raises(ValueError, match="neither parquet files nor a metadata"):
        get_task(f"scam:{folder}")


def test_scam_parquet_files_are_looked_for_three_folders_down_at_most(scam_parquet):
    deep = scam_parquet / "a" / "b" / "c"
    deep.mkdir(parents=True)
    for f in (scam_parquet / "data").iterdir():
        f.rename(deep / f.name)
    assert len(get_task(f"scam:{scam_parquet}?part=all").split("test")) == len(SCAM)  # a/b/c: three down
    with pytest.raises(ValueError, match="neither parquet files nor a metadata"):
        get_task(f"scam:{scam_parquet.parent}?part=all")  # scam/a/b/c: four down, not walked


@pytest.mark.slow
def test_attack_scores_rta100_and_scam_like_an_independent_count(rta_root, scam_parquet, capsys):
    for name, n_attacked in ((f"rta100:{rta_root}", 5), (f"scam:{scam_parquet}?part=all", 5)):
        assert main(["attack", "--run", CACHED_RUN, "--task", name, "--alphas", "0,1", "--json"]) == 0
        for row in json.loads(capsys.readouterr().out):
            accuracy, success, attacked = _independent_scores(name, row["alpha"])
            assert row["n_attacked"] == attacked == n_attacked
            assert row["accuracy"] == pytest.approx(accuracy) and row["attack_success"] == pytest.approx(success)


@pytest.mark.slow
def test_scam_from_a_hub_dataset_in_the_local_cache(scam_parquet, tmp_path):
    snapshot = tmp_path / "hf" / "hub" / "datasets--BLISS-e-V--SCAM" / "snapshots" / "0123abcd"
    (snapshot / "data").mkdir(parents=True)
    for f in (scam_parquet / "data").iterdir():
        (snapshot / "data" / f.name).write_bytes(f.read_bytes())
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    code = ("from paint_core.data.tasks import get_task; t = get_task('scam:hf-hub:BLISS-e-V/SCAM?part=all'); "
            "print(len(t.split('test')), ','.join(t.classnames))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(SCAM)), "circle,cross,square,star,triangle"]
    missing = subprocess.run([sys.executable, "-c", code.replace("BLISS-e-V/SCAM", "nobody/none")], env=env,
                             capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 1 and "local cache (HF_HOME)" in missing.stderr


def test_a_zip_made_on_a_mac_unpacks_without_its_finder_files(rta_root, tmp_path):
    from paint_core.data.typographic import unpack_typographic_zip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted((rta_root / "ours" / "data").iterdir()):
            z.write(f, f"ours/data/{f.name}")
            z.writestr(f"__MACOSX/ours/data/._{f.name}", b"finder")
        z.writestr("ours/.DS_Store", b"finder")
    folder = unpack_typographic_zip(buf.getvalue(), tmp_path / "uploads", "someone")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in (rta_root / "ours" / "data").iterdir())
    assert get_task(f"rta100:{folder}").classnames == get_task(f"rta100:{rta_root}").classnames


@pytest.mark.slow
def test_the_page_scores_an_rta100_folder_like_the_attack_command(rta_root, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from paint_core.studies.typographic import attack_sweep
    monkeypatch.setenv("PAINT_DATA_ROOTS", str(rta_root.parent))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/typographic.py").run()
    at.radio(key="typo_batch_src").set_value("Folder").run()
    at.radio(key="typo_batch_layout").set_value("RTA-100").run()
    at.text_input(key="typo_batch_folder").set_value(str(rta_root)).run()
    at.button(key="typo_batch_go").click().run()
    assert not at.exception and not at.error
    shown = next(d.value for d in at.dataframe if "attack success (%)" in d.value.columns)
    assert shown["n"].tolist() == [len(RTA)] * len(shown)
    reader = str(ROOT / "cached_results/reading/typographic")  # the run the page opens
    alpha = at.slider(key="typo_alpha").value
    for i, row in enumerate(attack_sweep(reader, f"rta100:{rta_root}", [0.0, alpha])):
        assert shown["accuracy (%)"].iloc[i] == pytest.approx(round(100 * row["accuracy"], 1))
        assert shown["attack success (%)"].iloc[i] == pytest.approx(round(100 * row["attack_success"], 1))

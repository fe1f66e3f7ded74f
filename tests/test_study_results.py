"""Every study kind has one typed reader (paint_core/studies/readers.py): every shipped document reads back with the
raw JSON's values, and a key a writer renamed is an error naming the file, the kind and the key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paint_core.io.results import ResultsKeyError
from paint_core.studies.readers import STUDY_READERS, read_study

ROOT = Path(__file__).resolve().parent.parent
CACHED = ROOT / "cached_results"


def _shipped() -> dict[Path, dict]:
    """Every schema-2 results document under cached_results, with its raw JSON."""
    found = {}
    for f in sorted(CACHED.rglob("*.json")):
        doc = json.loads(f.read_text())
        if isinstance(doc, dict) and doc.get("schema") == 2 and "results" in doc:
            found[f] = doc
    return found


SHIPPED = _shipped()


def _checks(kind: str, study, inputs: dict, raw: dict) -> None:
    """A few of the reader's values against the raw JSON, read here by hand."""
    if kind == "arithmetic":
        name, first = next(iter(raw["addition"].items()))
        assert list(study.addition) == list(raw["addition"]) and study.tasks == tuple(inputs["tasks"])
        assert study.addition[name].lam == first["lambda"]
        assert study.addition[name].mean_normalized_test == first["mean_normalized_test"]
        assert study.addition[name].val_sweep["accuracy"].tolist() == [r["accuracy"] for r in first["val_sweep"]]
        for task, neg in raw["negation"].items():
            assert study.negation[task].test[task] == neg["test"][task]
            assert study.negation[task].control == tuple(neg["control"])
        assert study.finetuned == raw["finetuned"]
    elif kind == "multitask":
        assert [r.model for r in study.comparison] == [r["model"] for r in raw["comparison"]]
        assert [r.accuracy["digits"] for r in study.comparison] == [r["digits"] for r in raw["comparison"]]
        assert [r.vs_specialists for r in study.comparison] == [r.get("vs_specialists") for r in raw["comparison"]]
        assert study.supported == tuple(inputs["supported"])
    elif kind == "transfer":
        assert study.rows["change"].tolist() == [r["change"] for r in raw["rows"]]
        assert study.rows["disjoint_classes"].tolist() == [r["disjoint_classes"] for r in raw["rows"]]
    elif kind == "wiseft":
        assert study.id_task == raw["id_task"] and study.shift_tasks == tuple(inputs["shift_tasks"])
        for shift, by_ensemble in raw["summary_test"].items():
            for name, s in by_ensemble.items():
                got = study.summary_test[shift][name]
                assert (got.best_shift, got.best_shift_alpha) == (s["best_shift"], s["best_shift_alpha"])
                assert got.zero_shot_shift == s["zero_shot"]["shift"]
                assert got.beats_both_endpoints == s["beats_both_endpoints_on_shift"]
        assert study.rows["accuracy"].tolist() == [r["accuracy"] for r in raw["rows"]]
    elif kind == "soup":
        assert study.task == inputs["task"]
        assert study.greedy.kept == tuple(raw["greedy"]["kept"])
        assert [i.run for i in study.ingredients] == [r["run"] for r in raw["ingredients"]]
        assert [i.scores[f"{study.task}/test"] for i in study.ingredients] == [
            r[f"{inputs['task']}/test"] for r in raw["ingredients"]]
    elif kind == "closed-vocab":
        assert study.lam == raw["lambda"] and study.probe_test == raw["probe_test"]
        assert study.addition_mean_normalized == raw["addition_mean_normalized"]
        assert [list(r) for r in study.disentanglement.error] == raw["disentanglement"]["error"]
    elif kind == "closed-vocab-task":
        assert study.lr == raw["lr"] and study.finetuned == raw["finetuned"] and study.probe == raw["probe"]
    elif kind == "disentanglement":
        assert study.model == raw["model"] and list(study.grid) == raw["grid"]
        assert [list(r) for r in study.error] == raw["error"]
    elif kind == "prompt-update":
        assert (study.old, study.new) == (raw["old"], raw["new"])
        assert study.rows["accuracy"].tolist() == [r["accuracy"] for r in raw["rows"]]
        assert study.rows["method"].tolist() == [r["method"] for r in raw["rows"]]
    elif kind == "diagnostics":
        assert study.zero_shot_test == raw["zero_shot_test"] and study.linear_probe_test == raw["linear_probe_test"]
        assert study.word_rate == raw["typographic_reading"]["word_rate"]
    else:
        raise AssertionError(f"no checks for the {kind} reader: add them here")


@pytest.mark.parametrize("path", list(SHIPPED), ids=[str(p.relative_to(CACHED)) for p in SHIPPED])
def test_every_shipped_document_reads_with_its_raw_values(path):
    doc = SHIPPED[path]
    study = read_study(path, doc["kind"])
    assert type(study) is STUDY_READERS[doc["kind"]]
    _checks(doc["kind"], study, doc["inputs"], doc["results"])


def test_every_reader_has_a_shipped_document_and_no_kind_lacks_a_reader():
    assert {d["kind"] for d in SHIPPED.values()} == set(STUDY_READERS)


# (a shipped file, the key a writer renamed (a number: every row of that list), its new name, what the error names)
RENAMED = [
    ("micro-rn-l/relatives/arithmetic.json", ["results", "addition", "sum", "lambda"], "lam",
     "'results.addition.sum.lambda'"),
    ("micro-rn-l/relatives/arithmetic.json", ["results", "negation", "digits", "zero_shot_test"], "zero_shot",
     "'results.negation.digits.zero_shot_test'"),
    ("micro-rn-l/relatives/arithmetic.json", ["inputs", "supported"], "supported_tasks", "'inputs.supported'"),
    ("micro-rn-l/relatives/multitask.json", ["results", "comparison", 0, "patch_mean"], "patch_avg",
     "'results.comparison[0].patch_mean'"),
    ("micro-rn-l/relatives/transfer.json", ["results", "rows", 0, "change"], "delta",
     "column 'change' in 'results.rows'"),
    ("micro-rn-l/relatives/wiseft.json", ["results", "summary_test", "digits_noisy", "weight", "best_shift"], "best",
     "'results.summary_test.digits_noisy.weight.best_shift'"),
    ("micro-rn-l/relatives/soup.json", ["results", "greedy", "kept"], "chosen", "'results.greedy.kept'"),
    ("micro-rn-l/diagnostics.json", ["results", "typographic_reading", "word_rate"], "word",
     "'results.typographic_reading.word_rate'"),
    ("closed_vocab/micro-vit/study.json", ["results", "disentanglement", "error"], "xi",
     "'results.disentanglement.error'"),
    ("closed_vocab/micro-vit/digits/metrics.json", ["results", "finetuned", "test"], "test_acc",
     "'results.finetuned.test'"),
    ("closed_vocab/micro-rn-l_disentanglement.json", ["results", "grid"], "lambdas", "'results.grid'"),
    ("prompts/update.json", ["results", "rows", 0, "accuracy"], "acc", "column 'accuracy' in 'results.rows'"),
    ("prompts/update.json", ["results", "old"], "old_model", "'results.old'"),
]


def _rename(node, keys: list, new: str) -> None:
    """Rename the last of ``keys`` in ``node``, in place; a number in ``keys`` stands for every row of that list
    (a writer renames a column in every row)."""
    k, *rest = keys
    if isinstance(k, int):
        for row in node:
            _rename(row, rest, new)
    elif rest:
        _rename(node[k], rest, new)
    else:
        node[new] = node.pop(k)


@pytest.mark.parametrize("rel,keys,new,named", RENAMED, ids=[f"{r}:{k[-1]}" for r, k, _, _ in RENAMED])
def test_a_renamed_key_is_an_error_naming_the_file_the_kind_and_the_key(tmp_path, rel, keys, new, named):
    doc = json.loads((CACHED / rel).read_text())
    read_study(CACHED / rel, doc["kind"])  # the shipped file reads
    _rename(doc, keys, new)
    f = tmp_path / Path(rel).name
    f.write_text(json.dumps(doc))
    with pytest.raises(ResultsKeyError) as e:
        read_study(f, doc["kind"])
    assert str(e.value).startswith(f"{f} ({doc['kind']} results) has no {named}: "), str(e.value)


def test_a_renamed_table_column_names_the_table_and_the_column(tmp_path):
    doc = json.loads((CACHED / "micro-rn-l" / "relatives" / "transfer.json").read_text())
    for row in doc["results"]["rows"]:
        row["delta"] = row.pop("change")
    f = tmp_path / "transfer.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(ResultsKeyError, match=r"transfer.json \(transfer results\) has no column 'change' in "
                                              r"'results.rows'"):
        read_study(f, "transfer")


def test_a_nested_key_is_named_with_its_whole_path(tmp_path):
    doc = json.loads((CACHED / "micro-rn-l" / "relatives" / "arithmetic.json").read_text())
    doc["results"]["addition"]["ties k=20"]["lam"] = doc["results"]["addition"]["ties k=20"].pop("lambda")
    f = tmp_path / "arithmetic.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(ResultsKeyError) as e:
        read_study(f, "arithmetic")
    assert str(e.value).startswith(f"{f} (arithmetic results) has no 'results.addition.ties k=20.lambda'")


def test_a_document_of_another_kind_or_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="holds wiseft results, not arithmetic"):
        read_study(CACHED / "micro-rn-l" / "relatives" / "wiseft.json", "arithmetic")
    with pytest.raises(ValueError, match="Unknown study kind 'arithmetics'; choose from: arithmetic, closed-vocab"):
        read_study(CACHED / "micro-rn-l" / "relatives" / "arithmetic.json", "arithmetics")


def test_an_unfinished_multitask_study_has_no_comparison_yet():
    from paint_core.studies.multitask import MultitaskResults
    doc = json.loads((CACHED / "micro-rn-l" / "relatives" / "multitask.json").read_text())
    del doc["results"]["comparison"]  # written last: an interrupted study has none
    assert MultitaskResults.from_doc(doc).comparison is None


@pytest.mark.slow
def test_a_tiny_arithmetic_study_reads_back(tmp_path):
    from paint_core.studies.relatives import arithmetic_study
    runs = [CACHED / "micro-rn-s" / t for t in ("digits", "counting")]  # shipped runs, only read
    out = tmp_path / "arithmetic.json"
    written = arithmetic_study(runs, ["shapes"], out, negate=["digits"], merges={"sum": {}}, lambdas=[0.0, 1.0],
                               max_eval=8)["results"]
    study = read_study(out, "arithmetic")
    assert study.tasks == ("digits", "counting") and study.supported == ("shapes",)
    assert study.addition["sum"].lam == written["addition"]["sum"]["lambda"] in (0.0, 1.0)
    assert study.addition["sum"].test == written["addition"]["sum"]["test"]
    assert len(study.addition["sum"].val_sweep) == len(written["addition"]["sum"]["val_sweep"])
    assert study.negation["digits"].test["digits"] == written["negation"]["digits"]["test"]["digits"]
    assert study.finetuned == written["finetuned"] and "digits/test" in study.finetuned


@pytest.mark.slow
def test_a_page_shows_a_renamed_key_as_a_message_naming_it(tmp_path, monkeypatch):
    """The dashboard says which file and key it cannot read instead of a KeyError (a user's own study)."""
    from streamlit.testing.v1 import AppTest
    mine = tmp_path / "runs" / "my-model" / "relatives"
    mine.mkdir(parents=True)
    doc = json.loads((CACHED / "micro-rn-l" / "relatives" / "wiseft.json").read_text())
    doc["results"]["identity_task"] = doc["results"].pop("id_task")
    (mine / "wiseft.json").write_text(json.dumps(doc))
    monkeypatch.chdir(tmp_path)
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/wiseft.py").run()
    at.selectbox(key="wf_model").set_value("runs/my-model").run()
    assert not at.exception, at.exception
    [error] = [e.value for e in at.error]
    assert "wiseft.json (wiseft results) has no 'results.id_task'" in error

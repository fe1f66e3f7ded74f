"""Study results as the pages show them: finding a study's file, reading it through its kind's reader (typed,
``paint_core.studies.readers``) once per version of the file, and the live sessions over a study's task vectors
(Task arithmetic, Closed-vocabulary addition), one per study shared by every browser session."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from paint_core.app.identity import file_identity, run_identity
from paint_core.app.runs import find_relatives
from paint_core.io.paths import CACHED_RESULTS_DIR
from paint_core.io.results import ResultsKeyError
from paint_core.studies.closed_vocab import ClosedVocabResults, Disentanglement
from paint_core.studies.prompt_update import PromptUpdateResults
from paint_core.studies.readers import StudyResults, read_study

from dashboard.opened_runs import shared_eval_sets, shared_run
from dashboard.serving import server_runtime

CLOSED_VOCAB = CACHED_RESULTS_DIR / "closed_vocab"


def relatives_dirs() -> dict[str, Path]:
    """label -> a relatives/ folder with study results: cached_results/<model>/relatives (reproduce) and
    ./runs/**/relatives (where to point the CLI's --out for your own model, e.g. runs/ViT-B-32/relatives/)."""
    return find_relatives(CACHED_RESULTS_DIR, Path.cwd() / "runs")


def study(name: str, key: str) -> StudyResults | None:
    """A model selector and one study (``name``.json, also its kind) through its reader; a message instead if
    there is none."""
    dirs = relatives_dirs()
    found = {m: d / f"{name}.json" for m, d in dirs.items() if (d / f"{name}.json").is_file()}
    if not found:
        st.info(f"No {name} results yet. They are written by `python -m paint_core reproduce` into "
                f"cached_results/<model>/relatives/{name}.json; for your own model run `python -m paint_core {name} "
                f"... --out runs/<model>/relatives/{name}.json`.")
        return None
    model = st.selectbox("Model", list(found), key=key)
    return results_doc(found[model], name)


def results_doc(path: Path, kind: str) -> StudyResults | None:
    """A study's results through its kind's reader (``paint_core.studies.readers``); a message instead if the file
    cannot be read or lacks a key its reader needs."""
    try:
        doc = load_results(str(path), kind, file_identity(path))
    except (OSError, ValueError) as e:
        st.error(f"Cannot read {path}: {e}")
        return None
    if doc is None:
        st.warning(f"{path} was written by an older version of PAINT Explorer; run the study again "
                   "(or `python -m paint_core reproduce`) to regenerate it.")
    return doc


@st.cache_data(show_spinner=False)
def load_results(path: str, kind: str, identity: str) -> StudyResults | None:
    """Cached by the file's identity (``app.identity.file_identity``), so a rewritten file is read anew."""
    return read_study(path, kind)


def session_edit(paths: tuple[str, ...], tasks: tuple[str, ...]):
    """The task-arithmetic session over the runs at ``paths``, shared by every browser session: one working copy of
    the model for all of them (not ~200 MB each), and every coefficient setting computed once (the runs and the
    subsample are the shared, read-only ones the Patch page uses too)."""
    return _shared_edit(paths, tuple(run_identity(p) for p in paths), tasks)


@st.cache_resource(show_spinner="Preparing the task vectors...", max_entries=8)
def _shared_edit(paths: tuple[str, ...], identities: tuple[str, ...], tasks: tuple[str, ...]):
    from paint_core.app.sessions import edit_session
    return edit_session([shared_run(p) for p in paths], shared_eval_sets(paths[0], tasks), server_runtime())


def closed_vocab_study() -> ClosedVocabResults | None:
    f = CLOSED_VOCAB / "micro-vit" / "study.json"
    if not f.is_file():
        st.info("No closed-vocabulary study yet: `python -m paint_core reproduce` writes "
                "cached_results/closed_vocab/micro-vit/study.json (or `python -m paint_core closed-vocab --help`).")
        return None
    return results_doc(f, "closed-vocab")


def disentanglement_maps(study: ClosedVocabResults) -> dict[str, Disentanglement]:
    maps = {f"{study.model} (closed vocabulary)": study.disentanglement}
    for f in sorted(CLOSED_VOCAB.glob("*_disentanglement.json")):
        found = results_doc(f, "disentanglement")
        if found:
            maps[f"{found.model} (open vocabulary)"] = found
    return maps


def session_addition(tasks: list[str]):
    """The closed-vocabulary addition session over ``tasks``, shared by every browser session: one encoder for all
    of them, each lambda computed once (keyed by the study's files, so a rerun study is loaded anew)."""
    study = CLOSED_VOCAB / "micro-vit"
    identity = "|".join(f"{t}:{file_identity(study / t / 'encoder.safetensors')}:"
                        f"{file_identity(study / t / 'head.safetensors')}" for t in tasks)
    return _shared_addition(tuple(tasks), identity)


@st.cache_resource(show_spinner="Loading the encoder, heads and task vectors...", max_entries=8)
def _shared_addition(tasks: tuple[str, ...], identity: str):
    from paint_core.app.sessions import addition_session
    return addition_session(CLOSED_VOCAB / "micro-vit", tasks, runtime=server_runtime())


def prompt_study() -> PromptUpdateResults | None:
    """A selector of the prompt studies (one per old -> upgraded pair) and the chosen one."""
    files = sorted((CACHED_RESULTS_DIR / "prompts").glob("update*.json"))
    runs = Path.cwd() / "runs"
    files += sorted(runs.glob("**/prompts/*.json")) if runs.is_dir() else []
    if not files:
        st.info("No prompt study yet: `python -m paint_core reproduce` writes cached_results/prompts/update*.json "
                "(or `python -m paint_core prompts --help`).")
        return None
    studies = {}
    for f in files:
        try:
            found = load_results(str(f), "prompt-update", file_identity(f))
        except ResultsKeyError as e:  # a prompt study this version cannot read: say so
            st.error(f"Cannot read {f}: {e}")
            found = None
        except (OSError, ValueError):
            found = None  # not a prompt study (e.g. a weights sidecar in the same folder)
        if found:
            studies[f] = found
    if not studies:
        st.info("No prompt study found (a study JSON has 'old', 'new' and 'rows').")
        return None
    pick = st.selectbox("Model update", list(studies), key="pr_study",
                        format_func=lambda f: f"{studies[f].old} -> {studies[f].new}")
    return studies[pick]

"""Every study kind's one reader, by kind: the dashboard, ``reproduce``'s summary and the tests read study results
files only through these, never by string keys (a key a writer renamed fails in a test, not in a browser).

Each reader is a frozen dataclass beside the study that writes its kind, with ``KIND`` and
``from_doc(doc, source)``; a missing key raises ``ResultsKeyError`` naming the file, the kind and the key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from ..io.results import read_results
from .arithmetic import ArithmeticResults
from .closed_vocab import ClosedVocabResults, ClosedVocabTask, Disentanglement
from .diagnostics import DiagnosticsResults
from .multitask import MultitaskResults
from .prompt_update import PromptUpdateResults
from .soup import SoupResults
from .transfer import TransferResults
from .wiseft import WiseftResults

StudyResults = Union[ArithmeticResults, ClosedVocabResults, ClosedVocabTask, DiagnosticsResults, Disentanglement,
                     MultitaskResults, PromptUpdateResults, SoupResults, TransferResults, WiseftResults]
STUDY_READERS: dict[str, type[StudyResults]] = {r.KIND: r for r in StudyResults.__args__}


def reader(kind: str) -> type[StudyResults]:
    """The reader class of ``kind``."""
    if kind not in STUDY_READERS:
        raise ValueError(f"Unknown study kind {kind!r}; choose from: {', '.join(sorted(STUDY_READERS))}")
    return STUDY_READERS[kind]


def read_study(path: str | Path, kind: str) -> StudyResults | None:
    """The ``kind`` results at ``path`` through their reader; None if there is no file or it is of an older format.
    A file of another kind is a ValueError, a missing key a ``ResultsKeyError`` (a ValueError too)."""
    cls = reader(kind)
    doc = read_results(path, kind)
    return None if doc is None else cls.from_doc(doc, path)

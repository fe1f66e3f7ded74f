"""CLIP's per-dataset class names and zero-shot prompt templates, for torchvision datasets.

A real CLIP's zero-shot accuracy depends on them (MNIST's "a photo of the number: "7"." against a generic "a photo
of a 7."; GTSRB's 43 sign descriptions where torchvision has no names at all). The facts come from OpenAI's CLIP
through clip_benchmark (MIT), extracted into ``clip_prompts.json`` by ``scripts/extract_clip_prompts.py``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROMPTS_FILE = Path(__file__).with_name("clip_prompts.json")


@dataclass(frozen=True)
class ClipPrompts:
    dataset: str                           # torchvision's class name
    classnames: tuple[str, ...] | None     # None: CLIP used the dataset's own names (cleaned by ``clean_classname``)
    templates: tuple[str, ...]             # each with one "{}"


@lru_cache(maxsize=1)
def _table() -> dict[str, dict]:
    return json.loads(PROMPTS_FILE.read_text())["datasets"]


def known_datasets() -> tuple[str, ...]:
    return tuple(_table())


def clip_prompts(dataset: str) -> ClipPrompts | None:
    """CLIP's names and templates for torchvision dataset class ``dataset`` (e.g. "GTSRB"); None when CLIP's
    evaluation has none for it."""
    row = _table().get(dataset)
    if row is None:
        return None
    names = row["classnames"]
    return ClipPrompts(dataset, tuple(names) if names else None, tuple(row["templates"]))


def clean_classname(c: object) -> str:
    """A dataset's own class name as a prompt wants it: MNIST's "0 - zero" is "0", EuroSAT's "AnnualCrop" is
    "annual crop", SUN397's "airplane_cabin" / "/a/abbey"-style parts and Food101's "apple_pie" lose their
    separators."""
    text = str(c)
    if re.match(r"^\d+ - ", text):
        text = text.split(" - ")[0]
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    return re.sub(r"\s+", " ", text.replace("_", " ").replace("/", " ")).strip().lower()

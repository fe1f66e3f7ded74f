"""The Typographic page's computations, computed once and shared by every session (st.cache_data): a word sweep,
the margin along alpha and the saliency maps are keyed by the models (run, weights, alpha), the image's content
and what is asked of it, so returning to a word already shown, or a second visitor asking the same, costs a
lookup. Models are borrowed only when an answer is not there yet (arguments starting with "_" are not hashed).
Also what the page measures once per model: an example that fools it, which class words it reads, and a model
opened by name without a run."""
from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st
import torch
from PIL import Image

from paint_core.engine.attack import margin_along_alpha, saliency, word_sweep
from paint_core.engine.evaluation import zero_shot_head
from paint_core.app import answers
from paint_core.app.identity import run_identity, weights_identity
from paint_core.live.sessions import top_predictions

from dashboard.opened_runs import shared_run
from dashboard.policy import check_model, policy

Borrow = Callable[[], AbstractContextManager]  # yields {model name: model} for the block


def image_key(img: Image.Image) -> str:
    """The identity of an image's content (pixels, size, mode)."""
    data = np.asarray(img)
    return hashlib.sha256(f"{img.mode}{img.size}".encode() + data.tobytes()).hexdigest()[:32]


@st.cache_data(show_spinner=False, max_entries=64)
def head(model_key: str, classnames: tuple[str, ...], templates: tuple[str, ...], _model: torch.nn.Module,
         _tokenizer: Callable) -> torch.Tensor:
    """The zero-shot head of the model ``model_key`` names (its text tower run once per class list)."""
    return zero_shot_head(_model, _tokenizer, list(classnames), list(templates))


@st.cache_data(show_spinner=False, max_entries=512)
def top_tables(models_key: str, image: str, classnames: tuple[str, ...], _borrow: Borrow, _head: torch.Tensor,
               _x: torch.Tensor) -> pd.DataFrame:
    """The models' top-5 table (``top_predictions``) on the image ``image`` (its key), preprocessed in ``_x``."""
    with _borrow() as models:
        return top_predictions(models, _head, _x.unsqueeze(0), list(classnames))


@st.cache_data(show_spinner="Writing every word at every place...", max_entries=256)
def word_sweeps(models_key: str, image: str, classnames: tuple[str, ...], true_idx: int, words: tuple[str, ...],
                _borrow: Borrow, _head: torch.Tensor, _preprocess: Callable, _image: Image.Image
                ) -> dict[str, pd.DataFrame]:
    """{model name: word_sweep table} of the borrowed models on the image ``image`` (its key)."""
    with _borrow() as models:
        return {name: word_sweep(model, _head, _preprocess, _image, list(classnames), true_idx, list(words))
                for name, model in models.items()}


@st.cache_data(show_spinner="Scoring the images along alpha...", max_entries=256)
def margins(run_key: str, images: tuple[str, str], classnames: tuple[str, ...], true_idx: int, written_idx: int,
            alphas: tuple[float, ...], _run, _head: torch.Tensor, _x: dict[str, torch.Tensor]) -> pd.DataFrame:
    """margin_along_alpha of the run on the clean and attacked images (their keys: ``images``)."""
    return margin_along_alpha(_run.model, _run.theta_zs, _run.theta_ft, _head, _x, true_idx, written_idx, list(alphas))


@st.cache_data(show_spinner="Computing where the models look...", max_entries=256)
def saliency_maps(models_key: str, images: tuple[str, str], classnames: tuple[str, ...], true_idx: int,
                  _borrow: Borrow, _head: torch.Tensor, _x: dict[str, torch.Tensor]) -> dict[tuple[str, str], torch.Tensor]:
    """{(model name, "clean" | "attacked"): saliency map} of the borrowed models."""
    with _borrow() as models:
        return {(name, label): saliency(model, _head, x, true_idx) for name, model in models.items()
                for label, x in _x.items()}


@st.cache_resource(show_spinner="Looking for an example that fools the zero-shot model...", max_entries=16)
def _fooling_example(path: str, identity: str, alpha: float) -> dict | None:
    return answers.fooling_example(shared_run(path), alpha)


def fooling_example(path: str, alpha: float) -> dict | None:
    """A composed object the zero-shot model gets wrong under a written word and the patch at ``alpha`` fixes."""
    return _fooling_example(path, run_identity(path), round(float(alpha), 2))


@st.cache_data(show_spinner="Measuring which words this model reads...", max_entries=16)
def _run_word_reading(path: str, identity: str) -> dict:
    run = shared_run(path)
    return answers.word_reading(run.model, run.preprocess, run.tokenizer)


def run_word_reading(path: str) -> dict:
    """Which class words the zero-shot model of the run at ``path`` reads ({rates, costs, summary}: tables of
    ``paint_core.studies.diagnostics``), measured once per run's files and shared by every session."""
    return _run_word_reading(path, run_identity(path))


@st.cache_data(show_spinner="Measuring which words this model reads...", max_entries=8)
def _model_word_reading(name: str, pretrained: str | None, identity: str) -> dict:
    return answers.word_reading(*_shared_model(name, pretrained, identity))


def model_word_reading(name: str, pretrained: str | None) -> dict:
    """``run_word_reading`` for a model opened without a run (``shared_model``'s name and weights)."""
    return _model_word_reading(name, pretrained, weights_identity(pretrained))


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def _shared_model(name: str, pretrained: str | None, identity: str):
    from paint_core.models.clip import load_model
    return load_model(name, pretrained)


def check_offered(name: str) -> str:
    """``name`` if this server offers the model (PAINT_MODELS), else a clear refusal."""
    return check_model(policy(), name)


def shared_model(name: str, pretrained: str | None):
    """(model, preprocess, tokenizer) of any model this server offers (PAINT_MODELS), shared and read-only."""
    check_offered(name)
    return _shared_model(name, pretrained, weights_identity(pretrained))

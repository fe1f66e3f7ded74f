"""Loading models: any open_clip model, a local checkpoint, or one of the embedded micro CLIPs.

Embedded models are ordinary open_clip JSON configs (``model_configs/``) with weights shipped in
``weights/``; they go through exactly the same open_clip code path as a real CLIP.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import open_clip
import torch

from ..core.names import unknown_name
from ..core.state_dicts import cast_like, check_compatible
from ..io.checkpoints import CheckpointError, load_checkpoint, read_sidecar
from ..io.paths import CONFIG_DIR, WEIGHTS_DIR
from ..io.writes import OPEN_CLIP_CONFIG
from ..runtime import current_runtime

from .registry import EMBEDDED_MODELS


class _DropRandomInitWarning(logging.Filter):
    """open_clip warns 'No pretrained weights loaded' when we create the architecture and load a local file
    ourselves right after; that warning would be false, so it is dropped (only that one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


@lru_cache(maxsize=1)
def register_embedded_configs() -> None:
    """Make the embedded JSON configs known to open_clip (file stem = model name)."""
    open_clip.add_model_config(CONFIG_DIR)


def embedded_weights(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


HUB_PREFIX, LOCAL_DIR_PREFIX = "hf-hub:", "local-dir:"  # open_clip's own schemas
# the weights a folder in open_clip's layout may hold, in the order open_clip itself prefers them
FOLDER_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                  "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin")


def has_schema(name: str) -> bool:
    """Whether ``name`` is one of open_clip's located names: ``hf-hub:ORG/REPO`` or ``local-dir:PATH``."""
    return name.startswith((HUB_PREFIX, LOCAL_DIR_PREFIX))


@dataclass(frozen=True)
class LocatedModel:
    """Where a ``hf-hub:`` or ``local-dir:`` model is: its open_clip config, its weights file, and for a hub model
    the revision (commit) the name resolved to."""
    config: Path
    weights: Path
    revision: str | None


def locate_model(name: str) -> LocatedModel:
    """The config and weights of a ``hf-hub:`` / ``local-dir:`` name, fetched (or found in the local cache) with
    open_clip's own hub code. A folder or repository without weights is an error, never random weights."""
    if name.startswith(LOCAL_DIR_PREFIX):
        folder = Path(name[len(LOCAL_DIR_PREFIX):]).expanduser()
        if not (folder / OPEN_CLIP_CONFIG).is_file():
            raise FileNotFoundError(f"{name}: no {OPEN_CLIP_CONFIG} in {folder} (a folder as open_clip's save_for_hf "
                                    "or `paint-core export --out FOLDER` writes it)")
        weights = next((folder / f for f in FOLDER_WEIGHTS if (folder / f).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"{name}: no weights in {folder} (looked for {', '.join(FOLDER_WEIGHTS)})")
        return LocatedModel(folder / OPEN_CLIP_CONFIG, weights, None)
    repo = name[len(HUB_PREFIX):]
    from open_clip.pretrained import download_pretrained_from_hf
    config = _hub_config(name)
    try:
        weights = Path(download_pretrained_from_hf(repo))
    except Exception as e:  # noqa: BLE001 -- hub errors come in many types; one message for all
        raise hub_unavailable(name, "its weights", e) from None
    return LocatedModel(config, weights, config.parent.name)  # the cache's snapshot folder is named by commit


def hub_unavailable(name: str, what: str, error: Exception) -> FileNotFoundError:
    """The one message for a hub repository that cannot be reached or lacks a file (open_clip, timm and
    huggingface_hub raise many kinds of errors for it)."""
    return FileNotFoundError(f"{name}: cannot get {what} from the Hugging Face hub ({str(error).splitlines()[0]}); "
                             "without a network the repository must be in the local cache (HF_HOME)")


def _hub_config(name: str) -> Path:
    """The ``open_clip_config.json`` of a ``hf-hub:`` name, in the local cache (fetched there when needed)."""
    from open_clip.pretrained import download_pretrained_from_hf
    try:
        return Path(download_pretrained_from_hf(name[len(HUB_PREFIX):], filename=OPEN_CLIP_CONFIG))
    except Exception as e:  # noqa: BLE001 -- hub errors come in many types; one message for all
        raise hub_unavailable(name, OPEN_CLIP_CONFIG, e) from None


def _from_config(config: Path) -> tuple[torch.nn.Module, Callable, Callable]:
    """open_clip's model (random weights), preprocess and tokenizer from an ``open_clip_config.json`` alone."""
    with tempfile.TemporaryDirectory() as folder:
        shutil.copyfile(config, Path(folder) / OPEN_CLIP_CONFIG)
        quiet = _DropRandomInitWarning()
        logging.getLogger().addFilter(quiet)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(LOCAL_DIR_PREFIX + folder)
            tokenizer = open_clip.get_tokenizer(LOCAL_DIR_PREFIX + folder)
        finally:
            logging.getLogger().removeFilter(quiet)
    return model, preprocess, tokenizer


def _unknown_model(name: str) -> ValueError:
    register_embedded_configs()
    choices = sorted(set(open_clip.list_models()) | set(EMBEDDED_MODELS))
    return unknown_name("model", name, choices, listed=EMBEDDED_MODELS,
                        more=f", or any name from open_clip.list_models() ({len(choices)} in all)")


def create_architecture(name: str) -> torch.nn.Module:
    """The open_clip model ``name`` with random weights: its keys and shapes (for a ``hf-hub:`` / ``local-dir:``
    name, from its config; its weights are not read)."""
    register_embedded_configs()
    if has_schema(name):
        return _from_config(locate_model(name).config)[0]
    if name not in open_clip.list_models():
        raise _unknown_model(name)
    quiet = _DropRandomInitWarning()  # random weights are what is asked for here
    logging.getLogger().addFilter(quiet)
    try:
        return open_clip.create_model(name, pretrained=None)
    finally:
        logging.getLogger().removeFilter(quiet)


def load_model(name: str, pretrained: str | None = None, device: str | None = None
               ) -> tuple[torch.nn.Module, Callable, Callable]:
    """(model in eval mode, preprocess, tokenizer) for an open_clip model name.

    ``pretrained`` is an open_clip pretrained tag (downloads, for users with internet), a local checkpoint
    (.safetensors preferred; .pt/.pth/.bin only through ``torch.load(weights_only=True)``), or None: the
    shipped weights for an embedded model, random weights for any other name. ``device``: default the
    current runtime's (``paint_core.runtime``).
    """
    register_embedded_configs()
    if has_schema(name):
        return _load_located(name, pretrained, device)
    if name not in open_clip.list_models():
        raise _unknown_model(name)
    if pretrained is None and name in EMBEDDED_MODELS:
        pretrained = str(embedded_weights(name))
        if not Path(pretrained).is_file():
            raise FileNotFoundError(f"the shipped weights of {name} are missing ({pretrained}); recreate them "
                                    f"with: python -m paint_core pretrain --model {name}")
    is_file = _is_weights_file(pretrained)
    quiet = _DropRandomInitWarning()
    if is_file:
        logging.getLogger().addFilter(quiet)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None if is_file else pretrained)
    finally:
        logging.getLogger().removeFilter(quiet)
    if is_file:
        load_weights_file(model, pretrained, name)
    if device is None:
        device = current_runtime().device
    model.to(device)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)


def _is_weights_file(pretrained: str | None) -> bool:
    """Whether ``pretrained`` names a local weights file (by its suffix, or because it exists), not a tag."""
    return pretrained is not None and (Path(pretrained).suffix in {".safetensors", ".pt", ".pth", ".bin"}
                                       or Path(pretrained).exists())


def _load_located(name: str, pretrained: str | None, device: str | None) -> tuple[torch.nn.Module, Callable, Callable]:
    """A ``hf-hub:`` / ``local-dir:`` model: the architecture from its config, then its weights (or the local
    ``pretrained`` file, e.g. a run's zero-shot copy) through this package's safe reader."""
    if pretrained is not None and not _is_weights_file(pretrained):
        raise ValueError(f"{name} carries its own weights; --pretrained takes a local file here, not the tag "
                         f"{pretrained!r}")
    located = locate_model(name)
    model, preprocess, tokenizer = _from_config(located.config)
    load_weights_file(model, pretrained or located.weights, name)
    model.to(device or current_runtime().device)
    model.eval()
    return model, preprocess, tokenizer


def model_revision(name: str) -> str | None:
    """The hub revision a ``hf-hub:`` name resolves to now (recorded in a run), None for other names."""
    return _hub_config(name).parent.name if name.startswith(HUB_PREFIX) else None


def load_weights_file(model: torch.nn.Module, path: str | Path, name: str | None = None) -> None:
    """Load a local checkpoint into ``model`` (open_clip model ``name``); a mismatched architecture names the
    first differing key, and a file whose sidecar says it needs the other activation names the right model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    check_sidecar_activation(read_sidecar(path), model, name, path)
    expected = model.state_dict()
    state = cast_like(load_checkpoint(path)[0], expected)
    if "logit_scale" in state and state["logit_scale"].shape != expected["logit_scale"].shape:
        state["logit_scale"] = state["logit_scale"].reshape(expected["logit_scale"].shape)
    try:
        check_compatible(expected, state, what=f"model and checkpoint {path.name}")
    except ValueError as e:
        raise CheckpointError(f"{e}. Is the checkpoint for another architecture?") from e
    model.load_state_dict(state)


# OpenAI's CLIPs use QuickGELU, open_clip's own GELU; open_clip names the QuickGELU twin of a model NAME-quickgelu.
# The weights load either way (same keys and shapes) but read with the wrong one the features are off by ~4e-2.
QUICKGELU_SUFFIX = "-quickgelu"


def uses_quick_gelu(model: torch.nn.Module) -> bool:
    return any(type(m).__name__ == "QuickGELU" for m in model.modules())


def activation_variant(name: str, quick_gelu: bool) -> str | None:
    """The open_clip name of ``name``'s twin with QuickGELU (``quick_gelu``) or GELU, if open_clip has one."""
    other = f"{name}{QUICKGELU_SUFFIX}" if quick_gelu else name.removesuffix(QUICKGELU_SUFFIX)
    return other if other != name and other in open_clip.list_models() else None


def check_activation(model: torch.nn.Module, name: str, quick_gelu: bool, source: str, evidence: str = "") -> None:
    """Refuse weights trained with QuickGELU (``quick_gelu``) or GELU for a model with the other activation,
    naming the model to use instead; ``evidence`` says how the file's activation is known."""
    if quick_gelu == uses_quick_gelu(model):
        return
    want, have = ("QuickGELU", "GELU") if quick_gelu else ("GELU", "QuickGELU")
    right = activation_variant(name, quick_gelu)
    raise CheckpointError(f"{source} was trained with {want} activations{evidence} but {name} uses {have}: its "
                          "features would be wrong. " + (f"Use --model {right}." if right else
                                                         f"open_clip has no {want} variant of {name}."))


def check_sidecar_activation(meta: dict, model: torch.nn.Module, name: str | None, path: Path) -> None:
    """The activation a checkpoint's sidecar records (``activation``, or a ``model`` of the same family with or
    without -quickgelu) against the model ``name`` it is loaded into."""
    said, recorded = meta.get("activation"), meta.get("model")
    if said is None and isinstance(recorded, str) and name is not None and recorded != name \
            and recorded.removesuffix(QUICKGELU_SUFFIX) == name.removesuffix(QUICKGELU_SUFFIX):
        said = "quick_gelu" if recorded.endswith(QUICKGELU_SUFFIX) else "gelu"
    if said in ("quick_gelu", "gelu"):
        shown = ", ".join(f"{k} {meta[k]}" for k in ("model", "activation") if isinstance(meta.get(k), str))
        check_activation(model, name or "this model", said == "quick_gelu", str(path), f" (its sidecar: {shown})")


def save_open_clip_config(model: torch.nn.Module, name: str, path: str | Path) -> None:
    """Write open_clip's own ``open_clip_config.json`` for ``model`` (built from the config ``name``) with open_clip's
    own writer: the architecture and the preprocessing, so plain open_clip rebuilds the model from the folder
    (``create_model_and_transforms("local-dir:DIR")``) without this package's embedded configs."""
    from open_clip.push_to_hf_hub import save_config_for_hf
    register_embedded_configs()
    config = open_clip.get_model_config(name)
    if config is None:
        raise _unknown_model(name)
    save_config_for_hf(model, Path(path), model_config=config)

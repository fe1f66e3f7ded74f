"""Hugging Face transformers CLIP checkpoints into open_clip's own folder layout, exactly.

A transformers ``CLIPModel`` folder (config.json + model.safetensors or pytorch_model.bin) becomes a folder that
``open_clip.create_model_and_transforms("local-dir:OUT")`` loads: ``open_clip_config.json`` derived from the
transformers config (any size; QuickGELU where it says quick_gelu) and ``open_clip_model.safetensors`` with the
weights renamed (q/k/v projections joined into open_clip's ``in_proj``, projections transposed). transformers
parses the config (its defaults are the format's); the weights are read by this package's safe reader.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..io.checkpoints import load_checkpoint, save_checkpoint
from ..io.writes import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, check_export_folder_output, staging_dir, swap_in
from .clip import HUB_PREFIX, hub_unavailable

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def open_clip_config(config: dict, preprocessor: dict | None = None) -> dict:
    """open_clip's ``{"model_cfg", "preprocess_cfg"}`` for a transformers ``CLIPConfig`` (as a dict)."""
    from transformers import CLIPConfig
    cfg = CLIPConfig.from_dict(config)
    vc, tc = cfg.vision_config, cfg.text_config
    acts = {vc.hidden_act, tc.hidden_act}
    if not acts <= {"quick_gelu", "gelu"} or len(acts) > 1:
        raise ValueError(f"activations {sorted(acts)}: only quick_gelu or gelu in both towers have an open_clip twin")
    model_cfg = {
        "embed_dim": cfg.projection_dim, "quick_gelu": acts == {"quick_gelu"},
        "vision_cfg": {"image_size": vc.image_size, "layers": vc.num_hidden_layers, "width": vc.hidden_size,
                       "patch_size": vc.patch_size, "head_width": vc.hidden_size // vc.num_attention_heads,
                       "mlp_ratio": vc.intermediate_size / vc.hidden_size},
        "text_cfg": {"context_length": tc.max_position_embeddings, "vocab_size": tc.vocab_size,
                     "width": tc.hidden_size, "heads": tc.num_attention_heads, "layers": tc.num_hidden_layers,
                     "mlp_ratio": tc.intermediate_size / tc.hidden_size},
    }
    pre = preprocessor or {}
    preprocess_cfg = {"mean": list(pre.get("image_mean", OPENAI_MEAN)), "std": list(pre.get("image_std", OPENAI_STD))}
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}


class _Tracked(dict):
    """A state dict that remembers which keys were read."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str):
        self.read.add(key)
        return super().__getitem__(key)


def _tower(state: dict, src: str, dst: str, layers: int) -> dict:
    """One transformer tower's blocks, transformers' names -> open_clip's."""
    out = {}
    for i in range(layers):
        a, b = f"{src}.encoder.layers.{i}", f"{dst}transformer.resblocks.{i}"
        for kind in ("weight", "bias"):
            out[f"{b}.attn.in_proj_{kind}"] = torch.cat([state[f"{a}.self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[f"{b}.attn.out_proj.{kind}"] = state[f"{a}.self_attn.out_proj.{kind}"]
            out[f"{b}.ln_1.{kind}"] = state[f"{a}.layer_norm1.{kind}"]
            out[f"{b}.ln_2.{kind}"] = state[f"{a}.layer_norm2.{kind}"]
            out[f"{b}.mlp.c_fc.{kind}"] = state[f"{a}.mlp.fc1.{kind}"]
            out[f"{b}.mlp.c_proj.{kind}"] = state[f"{a}.mlp.fc2.{kind}"]
    return out


def open_clip_state(state: dict, config: dict) -> dict:
    """A transformers CLIPModel state dict renamed to open_clip's CLIP (every tensor used exactly once)."""
    state = _Tracked(state)
    vl, tl = config["model_cfg"]["vision_cfg"]["layers"], config["model_cfg"]["text_cfg"]["layers"]
    v, t = "vision_model", "text_model"
    out = {
        "logit_scale": state["logit_scale"],
        "token_embedding.weight": state[f"{t}.embeddings.token_embedding.weight"],
        "positional_embedding": state[f"{t}.embeddings.position_embedding.weight"],
        "ln_final.weight": state[f"{t}.final_layer_norm.weight"], "ln_final.bias": state[f"{t}.final_layer_norm.bias"],
        "text_projection": state["text_projection.weight"].T.contiguous(),
        "visual.class_embedding": state[f"{v}.embeddings.class_embedding"],
        "visual.positional_embedding": state[f"{v}.embeddings.position_embedding.weight"],
        "visual.conv1.weight": state[f"{v}.embeddings.patch_embedding.weight"],
        "visual.ln_pre.weight": state[f"{v}.pre_layrnorm.weight"], "visual.ln_pre.bias": state[f"{v}.pre_layrnorm.bias"],
        "visual.ln_post.weight": state[f"{v}.post_layernorm.weight"],
        "visual.ln_post.bias": state[f"{v}.post_layernorm.bias"],
        "visual.proj": state["visual_projection.weight"].T.contiguous(),
        **_tower(state, t, "", tl), **_tower(state, v, "visual.", vl),
    }
    unused = sorted(set(state) - state.read - {k for k in state if k.endswith("position_ids")})
    if unused:  # a tensor this mapping does not know would be lost in silence
        raise ValueError(f"{len(unused)} tensors of the checkpoint have no open_clip place (first: {unused[0]!r})")
    return out


def _read_folder(folder: Path) -> tuple[dict, dict]:
    """(config.json, state dict) of a transformers folder, the weights through the safe reader."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: give a transformers CLIP folder (save_pretrained)")
    weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{folder} holds no weights (looked for {', '.join(WEIGHT_FILES)})")
    return json.loads((folder / "config.json").read_text()), load_checkpoint(weights)[0]


def is_transformers_source(source: str | Path) -> bool:
    """Whether ``source`` names a transformers model: a ``hf-hub:`` id or a folder with a config.json."""
    return str(source).startswith(HUB_PREFIX) or (Path(source).is_dir() and (Path(source) / "config.json").is_file())


def _local(source: str | Path) -> Path:
    """A folder, or a ``hf-hub:ORG/REPO`` id fetched (or found in the local cache) with huggingface_hub."""
    text = str(source)
    if not text.startswith(HUB_PREFIX):
        return Path(source)
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(text[len(HUB_PREFIX):], allow_patterns=["*.json", "*.safetensors"]))
    except Exception as e:  # noqa: BLE001 -- hub errors come in many types; one message for all
        raise hub_unavailable(text, "it", e) from None


def convert_transformers_clip(src: str | Path, out: str | Path, overwrite: bool = False,
                              base: str | Path | None = None) -> Path:
    """Convert a transformers CLIPModel folder ``src`` into an open_clip folder ``out``; returns ``out``.

    ``src`` may also be a vision tower alone (``CLIPVisionModel`` or ``CLIPVisionModelWithProjection``, as
    FusionBench's task models are) with ``base``, the CLIPModel folder it was fine-tuned from: the text tower, the
    projections it lacks and the logit scale come from ``base``."""
    src, out = _local(src), Path(out)
    base = _local(base) if base is not None else None
    config, state = _read_folder(src)
    kind = config.get("model_type")
    if kind == "clip_vision_model":
        if base is None:
            raise ValueError(f"{src} is a vision tower alone ({kind}); give --base, the transformers CLIPModel "
                             "folder it was fine-tuned from (its text tower completes the model)")
        base_config, base_state = _read_folder(base)
        if base_config.get("model_type") != "clip":
            raise ValueError(f"--base {base} must be a CLIPModel folder, not {base_config.get('model_type')!r}")
        shape = lambda c: {k: c.get(k) for k in ("hidden_size", "num_hidden_layers", "patch_size", "image_size")}  # noqa: E731
        from transformers import CLIPConfig
        base_vision = CLIPConfig.from_dict(base_config).vision_config.to_dict()
        if shape(config) != shape(base_vision):
            raise ValueError(f"the vision tower of {src} ({shape(config)}) is not the one of {base} "
                             f"({shape(base_vision)})")
        # transformers 4 saved the tower's keys under "vision_model.", transformers 5 without it
        state = {k if k.startswith(("vision_model.", "visual_projection.")) else f"vision_model.{k}": v
                 for k, v in state.items()}
        state = {**{k: v for k, v in base_state.items() if not k.startswith("vision_model.")}, **state}
        config, src_for_pre = base_config, base
    elif kind == "clip":
        src_for_pre = src
    else:
        raise ValueError(f"{src}/config.json is a {kind!r} model; CLIPModel folders (model_type \"clip\") and "
                         "vision towers with --base convert")
    pre_file = src_for_pre / "preprocessor_config.json"
    oc = open_clip_config(config, json.loads(pre_file.read_text()) if pre_file.is_file() else None)
    converted = open_clip_state(state, oc)
    check_export_folder_output(out, overwrite)
    staged = staging_dir(out)
    try:
        (staged / OPEN_CLIP_CONFIG).write_text(json.dumps(oc, indent=2))
        save_checkpoint(staged / OPEN_CLIP_WEIGHTS, converted,
                        {"converted_from": str(src), "format": f"transformers {kind}",
                         "base": str(base) if base is not None else None,
                         "activation": "quick_gelu" if oc["model_cfg"]["quick_gelu"] else "gelu"})
        swap_in(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out

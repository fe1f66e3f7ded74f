"""What ships with the package, by name: the embedded micro CLIPs, extra shipped weights for them, and the
closed-vocabulary encoders. Plain dicts, readable without torch (``paint-core list`` answers at once)."""
from __future__ import annotations

# name -> what it is. The shipped weights are weights/<name>.safetensors (+ .json sidecar).
EMBEDDED_MODELS: dict[str, str] = {
    "micro-rn-s": "micro CLIP, ModifiedResNet width 32 at 48 px, text width 128 (the small one)",
    "micro-rn-l": "micro CLIP, ModifiedResNet width 48 at 48 px, text width 128 (the large one, the default)",
}

# weights file stem -> (the embedded model they are weights of, what they are). Loaded as
# ``--model MODEL --pretrained paint_core/weights/<stem>.safetensors``.
SHIPPED_WEIGHTS: dict[str, tuple[str, str]] = {
    "micro-rn-s-64-reads": ("micro-rn-s-64", "micro-rn-s at 64 px pretrained to read words written on objects, in "
                                             "two stages (the Typographic page's model; "
                                             "scripts/ship_reading_model.py)"),
}

# closed-vocabulary encoders: name -> timm VisionTransformer arguments
MICRO_VIT = {"img_size": 48, "patch_size": 8, "embed_dim": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}
EMBEDDED_ENCODERS = {"micro-vit": MICRO_VIT}


def list_models() -> dict[str, str]:
    """The embedded models (name -> description). Any open_clip model name works too."""
    return dict(EMBEDDED_MODELS)

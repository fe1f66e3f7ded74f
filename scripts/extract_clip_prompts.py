"""Regenerate ``paint_core/data/clip_prompts.json``: CLIP's per-dataset class names and zero-shot templates.

Source: the English JSON files that clip_benchmark (MIT licence, LAION) ships as package data, which collect
the names and templates of OpenAI's CLIP (its ``data/prompts.md`` and ImageNet notebook). Only the datasets that
torchvision provides and PAINT uses are kept, under torchvision's class names. Run (no other dependency):

    pip download clip_benchmark==1.6.2 --no-deps -d /tmp/cb
    python scripts/extract_clip_prompts.py /tmp/cb/clip_benchmark-1.6.2-py2.py3-none-any.whl
"""
from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

# torchvision dataset class -> clip_benchmark dataset key (PAINT's patch tasks, then its supported tasks)
KEYS = {"MNIST": "mnist", "SVHN": "svhn", "GTSRB": "gtsrb", "EuroSAT": "eurosat", "SUN397": "sun397",
        "StanfordCars": "cars", "DTD": "dtd", "ImageNet": "imagenet1k", "CIFAR10": "cifar10", "CIFAR100": "cifar100",
        "STL10": "stl10", "Food101": "food101"}
OUT = Path(__file__).resolve().parents[1] / "paint_core" / "data" / "clip_prompts.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", help="clip_benchmark's wheel file")
    args = parser.parse_args()
    with zipfile.ZipFile(args.wheel) as z:
        names = json.loads(z.read("clip_benchmark/datasets/en_classnames.json"))
        templates = json.loads(z.read("clip_benchmark/datasets/en_zeroshot_classification_templates.json"))
        licence = next(z.read(n).decode() for n in z.namelist() if n.endswith(".dist-info/LICENSE"))
        version = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA")).split("-")[1].split(".dist")[0]
    datasets = {tv: {"clip_benchmark_key": key,
                     "classnames": names.get(key),  # None: torchvision's own names, cleaned
                     "templates": [t.replace("{c}", "{}") for t in templates[key]]} for tv, key in KEYS.items()}
    OUT.write_text(json.dumps({"source": f"clip_benchmark {version} (en_classnames.json, "
                                         "en_zeroshot_classification_templates.json)",
                               "license": licence, "datasets": datasets}, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({len(datasets)} datasets)")


if __name__ == "__main__":
    main()

"""Hostile checkpoints and inputs: replay the security review's cases, then a mutation fuzz of the safe reader.

    python scripts/fuzz_convert.py [--files 3000] [--seed 0] [--replay-only]

Replay (issue 25): each case runs the command a user would type (`convert`, `finetune --pretrained`,
`import-run`, `attack`) and must end as the review asks: refused with one line naming the problem (exit 1,
nothing written) or, for `attack` on images the model cannot tell apart, a note; reading a checkpoint must stay
within a small traced memory bound (the cases asked for 1 GiB from 33 bytes or a 1 MB zip). One row per case;
exit status 1 if any case fails.

Fuzz seeds: a torch.save zip state dict, the same in torch's legacy format, and a pickle.dump of a module (as
PAINT writes). Each file gets 1-8 random byte flips, deletions or insertions. Prints how many were read,
refused (UnsafePickleError, which `convert` reports as one line) or ended in any other exception (a bug).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import logging
import pickle
import random
import struct
import sys
import tempfile
import tracemalloc
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from paint_core.cli import main as cli
from paint_core.io.checkpoints import save_checkpoint
from paint_core.io.safe_pickle import LEGACY_MAGIC, UnsafePickleError, read_objects_from_bytes
from paint_core.models.clip import register_embedded_configs

ROOT = Path(__file__).resolve().parent.parent
READ_PEAK = 64 << 20  # traced bytes a refused read may take (the review's cases asked for 1 GiB)


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    expect: str                  # text the last line on stderr must hold
    code: int = 1                # 1: refused; 0: runs (with a note)
    peak: int | None = None      # bound on traced memory (checkpoint reads)


def _torch_zip(obj: object) -> dict[str, bytes]:
    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(buf) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as out:
        for name, data in members.items():
            out.writestr(name, data)
    return path


def _legacy_storages(count: int, numel: int) -> bytes:
    buf = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    marks = [object() for _ in range(count)]
    ids = {id(m): i for i, m in enumerate(marks)}
    p = pickle.Pickler(buf, protocol=2)
    p.persistent_id = lambda o: (("storage", torch.FloatStorage, str(ids[id(o)]), "cpu", numel, None)
                                 if id(o) in ids else None)
    p.dump(marks)
    pickle.dump([], buf, protocol=2)
    return buf.getvalue()


def _checkpoints(d: Path) -> dict[str, tuple[Path, str]]:
    """Hostile checkpoint files (name -> (file, what the refusal must say))."""
    bytearray_1gib = b"\x80\x02c__builtin__\nbytearray\nJ" + struct.pack("<i", 1 << 30) + b"\x85R."
    (d / "bytearray.pt").write_bytes(bytearray_1gib)  # 33 bytes
    n = 8192
    (d / "memo.pt").write_bytes(b"\x80\x02c__builtin__\nbytearray\nq\x00J" + struct.pack("<i", n) + b"\x85q\x01("
                                + b"h\x00h\x01R" * 4000 + b"l.")
    members = _torch_zip({"w": torch.zeros(1)})
    data_pkl = next(k for k in members if k.endswith("data.pkl"))
    _write_zip(d / "zip_bytearray.pt", {**members, data_pkl: bytearray_1gib})
    # a 1 MB zip whose storage inflates to 1 GiB: deflated 1 MiB at a time, never held whole
    with zipfile.ZipFile(d / "inflates.pt", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for name, data in members.items():
            if name == data_pkl[: -len("data.pkl")] + "data/0":
                with out.open(name, "w", force_zip64=True) as f:
                    for _ in range(1024):
                        f.write(bytes(1 << 20))
            else:
                out.writestr(name, data)
    (d / "legacy.pt").write_bytes(_legacy_storages(3000, 0))
    size = (d / "legacy.pt").stat().st_size
    (d / "legacy.pt").write_bytes(_legacy_storages(3000, size // 4 - 1000))
    torch.save({"w": torch.zeros(1).expand(1 << 28)}, d / "expanded.pt")
    Image.new("RGB", (8, 8)).save(d / "photo.png")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), d / "scripted.pt")
    torch.save({1: torch.zeros(2), "a": torch.zeros(1)}, d / "intkeys.pt")
    refused = "would take"
    return {"bytearray(2**30) in 33 bytes": (d / "bytearray.pt", "refused: bytearray(1073741824) would take"),
            "bytearray(8 KiB) x 4000 via the memo": (d / "memo.pt", refused),
            "bytearray(2**30) in a torch zip": (d / "zip_bytearray.pt", "refused: bytearray(1073741824)"),
            "1 MB zip inflating to 1 GiB": (d / "inflates.pt", "(more than 100:1), which no checkpoint needs"),
            "legacy: 3000 storages each ~file size": (d / "legacy.pt", refused),
            "1 float viewed as 2**28 (stride 0)": (d / "expanded.pt", "refused: a tensor of size (268435456,)"),
            "a PNG as a checkpoint": (d / "photo.png", "this is a PNG image, not a checkpoint"),
            "TorchScript archive": (d / "scripted.pt", "this is a TorchScript archive: loading it runs the code it "
                                                       "holds, so it is not read."),
            "state dict with an int key": (d / "intkeys.pt", "its keys must be parameter names (text), but one is "
                                                            "1 (int)")}


def _tiny_quickgelu(d: Path) -> Path:
    """A converted OpenAI-style (QuickGELU) checkpoint of a tiny open_clip pair registered from ``d``."""
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 48, "layers": [1, 1, 1, 1], "width": 16, "patch_size": None},
           "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    for name, extra in (("replay-act", {}), ("replay-act-quickgelu", {"quick_gelu": True})):
        (d / f"{name}.json").write_text(json.dumps({**cfg, **extra}))
        open_clip.add_model_config(d / f"{name}.json")
    path = d / "openai_style.safetensors"
    save_checkpoint(path, open_clip.create_model("replay-act-quickgelu", pretrained=None).state_dict(),
                    {"model": "replay-act-quickgelu", "activation": "quick_gelu"})
    return path


def _photos(folder: Path) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = ["circle", "square", "triangle", "star"]
    for label, text in [(a, b) for a in names for b in names if a != b][:8]:
        field = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        Image.fromarray(field).resize((200, 150), Image.BICUBIC).save(folder / f"label={label}_text={text}.jpg")


def replay_cases(d: Path) -> list[Case]:
    """The review's cases (issue 25, items 4-7 of the engine) as commands on files built in ``d``."""
    out = str(d / "out")
    finetune = ["finetune", "--model", "micro-rn-s", "--task", "digits", "--warmup", "0", "--batch-size", "8",
                "--out", out]
    cases = []
    for name, (path, expect) in _checkpoints(d).items():
        cases.append(Case(f"convert: {name}", ["convert", str(path), "--model", "micro-rn-s", "--out",
                                               out + ".safetensors"], expect, peak=READ_PEAK))
        cases.append(Case(f"--pretrained: {name}", [*finetune, "--steps", "1", "--pretrained", str(path)], expect,
                          peak=READ_PEAK))
    quick = str(_tiny_quickgelu(d))
    right = "Use --model replay-act-quickgelu."
    cases += [Case("QuickGELU file loaded as the GELU model", ["finetune", "--model", "replay-act", "--pretrained",
                                                               quick, "--task", "digits", "--out", out], right),
              Case("QuickGELU file imported as the GELU model", ["import-run", "--model", "replay-act", "--zeroshot",
                                                                 quick, "--finetuned", quick, "--task", "digits",
                                                                 "--out", out], right),
              Case("--lr inf", [*finetune, "--steps", "3", "--lr", "inf"], "a finite lr > 0"),
              Case("--lr 1e6 (diverges)", [*finetune, "--steps", "3", "--lr", "1e6"],
                   "training diverged: the loss is nan at step 2 of 3")]
    run = str(ROOT / "cached_results" / "reading" / "typographic")
    cases.append(Case("attack --max-eval=-1", ["attack", "--run", run, "--task", "typographic", "--max-eval=-1"],
                      "max_eval must be a positive number of images, got -1"))
    _photos(d / "photos")
    plain = str(ROOT / "cached_results" / "micro-rn-l" / "typographic")  # gives these colour fields one answer
    cases.append(Case("attack on photos: one answer for all", ["attack", "--run", plain, "--task",
                                                               f"typographic:{d / 'photos'}", "--alphas", "0,1"],
                      "the model answers 'square' for every one of the 8 images", code=0))
    register_embedded_configs()
    model = open_clip.create_model("micro-rn-s", pretrained=None)
    zs = model.state_dict()
    torch.save(zs, d / "zs32.pt")
    torch.save({k: (v + 0.01 if k.startswith("visual.") else v).half() for k, v in zs.items()}, d / "ft16.pt")
    cases.append(Case("fp32 zero-shot + fp16 fine-tune", ["import-run", "--model", "micro-rn-s", "--zeroshot",
                                                          str(d / "zs32.pt"), "--finetuned", str(d / "ft16.pt"),
                                                          "--task", "digits", "--out", out],
                      "differ outside the image encoder only by rounding to float16"))
    return cases


def _tree(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def run_case(case: Case, d: Path) -> tuple[bool, str, int | None]:
    """(passed, the last line on stderr, traced peak bytes) of one case run in this process."""
    before = _tree(d)
    err = io.StringIO()
    if case.peak is not None:
        tracemalloc.start()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli(case.argv)
    finally:
        peak = tracemalloc.get_traced_memory()[1] if case.peak is not None else None
        tracemalloc.stop()
    lines = [ln for ln in err.getvalue().replace("\r", "\n").splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    ok = (code == case.code and case.expect in last and (case.code != 1 or _tree(d) == before)
          and (peak is None or peak <= case.peak))
    return ok, last, peak


def replay(d: Path) -> bool:
    ok_all = True
    logging.disable(logging.INFO)  # the commands' "computing on cpu" lines
    try:
        for case in replay_cases(d):
            ok, last, peak = run_case(case, d)
            ok_all &= ok
            mem = "" if peak is None else f" [{peak / 2 ** 20:.1f} MiB]"
            print(f"{'ok  ' if ok else 'FAIL'} {case.name}{mem}: {last[:200]}")
    finally:
        logging.disable(logging.NOTSET)
    return ok_all


def fuzz(files: int, seed: int) -> dict:
    register_embedded_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("micro-rn-s", pretrained=None)
    seeds = []
    for zip_format in (True, False):
        buf = io.BytesIO()
        torch.save(dict(list(model.state_dict().items())[:6]), buf, _use_new_zipfile_serialization=zip_format)
        seeds.append(buf.getvalue())
    seeds.append(pickle.dumps(model.visual.attnpool))
    rng = random.Random(seed)
    outcome: collections.Counter = collections.Counter()
    for _ in range(files):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(data))
            r = rng.random()
            if r < 0.5:
                data[pos] = rng.randrange(256)
            elif r < 0.75:
                del data[pos:pos + rng.randint(1, 50)]
            else:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        try:
            read_objects_from_bytes(bytes(data))
            outcome["read"] += 1
        except UnsafePickleError:
            outcome["refused"] += 1
        except Exception as e:  # noqa: BLE001 - counting what escapes is the point
            outcome[f"other: {type(e).__name__}"] += 1
    return dict(outcome)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3000, help="mutated files to try")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the mutations")
    ap.add_argument("--replay-only", action="store_true", help="replay the review's cases, no mutation fuzz")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        ok = replay(Path(d))
    if not args.replay_only:
        outcome = fuzz(args.files, args.seed)
        print(outcome)
        ok &= not any(k.startswith("other") for k in outcome)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

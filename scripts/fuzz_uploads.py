"""Hostile inputs of issue 25 (uploads, alpha grids, exports): every one refused with one line, nothing left.

    python scripts/fuzz_uploads.py [--files 2000] [--seed 0] [--no-run]

First the review's cases, each with the message it gets now: the four damaged zips, a zip bomb, the alpha
grids, and (unless --no-run) an export aimed at a run's own weights. Then a mutation fuzz of the zip reader:
each mutated zip (1-8 random byte flips, deletions or insertions, or a patched directory field) must be
unpacked whole or refused with ``UploadRefused``, never raise anything else, and a refusal must leave no file
behind. Prints one line per case and the fuzz counts; exits 1 if anything escaped or was left on disk.
"""
from __future__ import annotations

import argparse
import collections
import io
import random
import shutil
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

from paint_core.data.typographic import unpack_typographic_zip
from paint_core.engine.evaluation import parse_alphas
from paint_core.io.uploads import UploadRefused


def seed_zip(method: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for i, (label, text) in enumerate([("cat", "dog"), ("dog", "cat"), ("cat", "cat")]):
            png = io.BytesIO()
            Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(png, "PNG")
            z.writestr(f"set/label={label}_text={text}.png", png.getvalue())
    return buf.getvalue()


def patch_central(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, out.find(b"PK\x01\x02") + offset, value)
    return bytes(out)


def left_behind(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name != ".lock"] if root.exists() else []


def try_zip(data: bytes, root: Path) -> str:
    """'unpacked', 'refused: <message>' or 'BUG: ...'; the root is emptied afterwards."""
    try:
        folder = unpack_typographic_zip(data, root, "fuzz")
        outcome = "unpacked" if folder.is_dir() else "BUG: no folder"
    except UploadRefused as e:
        outcome = f"refused: {e}"
        if left_behind(root):
            outcome = f"BUG: refused but left {left_behind(root)}"
    except Exception as e:  # noqa: BLE001 - counting what escapes is the point
        outcome = f"BUG: {type(e).__name__}: {e}"
    shutil.rmtree(root, ignore_errors=True)
    return outcome


def review_cases(work: Path, with_run: bool) -> list[str]:
    good = seed_zip(zipfile.ZIP_DEFLATED)
    bombs = {}
    for mb in (15, 100):  # under and over the per-file limit, both packed ~1000:1
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("label=a_text=b.png", bytes(mb * 2 ** 20))
        bombs[f"{len(buf.getvalue()) // 1000} kB zip of {mb} MB"] = buf.getvalue()
    zips = {"bad CRC": patch_central(good, 16, "<I", 0x12345678),
            "declared size too large": patch_central(good, 24, "<I", 5000),
            "encrypted flag": patch_central(good, 8, "<H", 1),
            "unknown compression method": patch_central(good, 10, "<H", 99), **bombs}
    lines = [f"zip, {name}: {try_zip(data, work / 'uploads')}" for name, data in zips.items()]
    for spec in ("0:1:1e-5", "0:1:1e-9", "nan:1:0.1", "0:inf:0.1"):
        try:
            lines.append(f"alphas {spec}: BUG: accepted {len(parse_alphas(spec))} alphas")
        except ValueError as e:
            lines.append(f"alphas {spec}: refused: {e}")
    if with_run:
        from paint_core.engine.finetune import FinetuneConfig
        from paint_core.studies.patch import run_finetune
        run = run_finetune(work / "runs" / "r", "micro-rn-s", None, "digits", FinetuneConfig(steps=2, batch_size=8))
        code, err = cli(["export", "--run", str(run), "--alpha", "0.5", "--out", str(run / "finetuned.safetensors"),
                         "--overwrite"])
        lines.append(f"export onto the run's own finetuned.safetensors: exit {code}: {err}")
        code, _ = cli(["sweep", "--run", str(run), "--supported", "shapes", "--alphas", "0,1", "--max-eval", "10"])
        lines.append(f"the run still sweeps afterwards: exit {code}" + ("" if code == 0 else " BUG"))
    return lines


def cli(argv: list[str]) -> tuple[int, str]:
    """Exit code and the error line of ``python -m paint_core ARGV`` (its other output is dropped)."""
    import contextlib
    import os

    from paint_core.cli import main
    err = io.StringIO()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, next((line for line in err.getvalue().splitlines() if line.startswith("error:")), "")


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    if rng.random() < 0.3:  # a directory field: sizes, CRC, flags, method, name length
        records = [i for i in range(len(out)) if out[i:i + 4] == b"PK\x01\x02"]
        offset, fmt = rng.choice([(8, "<H"), (10, "<H"), (16, "<I"), (20, "<I"), (24, "<I"), (28, "<H")])
        struct.pack_into(fmt, out, rng.choice(records) + offset, rng.randrange(2 ** (8 * struct.calcsize(fmt))))
        return bytes(out)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(out))
        r = rng.random()
        if r < 0.5:
            out[pos] = rng.randrange(256)
        elif r < 0.75:
            del out[pos:pos + rng.randint(1, 50)]
        else:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
    return bytes(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000, help="mutated zips to try")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the mutations")
    ap.add_argument("--no-run", action="store_true", help="skip the export case (it fine-tunes a tiny run)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fuzz-uploads-"))
    try:
        lines = review_cases(work, not args.no_run)
        print("\n".join(lines))
        seeds = [seed_zip(zipfile.ZIP_DEFLATED), seed_zip(zipfile.ZIP_STORED)]
        rng = random.Random(args.seed)
        counts: collections.Counter = collections.Counter()
        for _ in range(args.files):
            outcome = try_zip(mutate(rng.choice(seeds), rng), work / "uploads")
            counts[outcome if outcome.startswith("BUG") else outcome.split(":")[0]] += 1
        print(dict(counts))
        return 1 if any(k.startswith("BUG") for k in counts) or any("BUG" in line for line in lines) else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

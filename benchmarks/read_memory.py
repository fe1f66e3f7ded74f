"""Memory while reading hostile checkpoints (issue 25): paint_core's reader beside torch.load(weights_only=True).

    python -m benchmarks.read_memory [--gib 1]

Builds, in a temporary folder, the security review's small files that ask for a lot: a 33-byte pickle calling
``bytearray(2**30)``, a ~1 MB torch zip whose storage inflates to ``--gib`` GiB, and a torch zip whose data.pkl is
that bytearray pickle; plus a real micro-rn-s state dict (torch.save, ~50 MB) as the honest case. Each file is
read in a fresh process by ``paint_core.io.checkpoints.load_state_dict_file`` (what ``--pretrained`` and the
dashboard's checkpoint fields use; ``convert`` uses the same reader) and by ``torch.load(weights_only=True)`` (what
``--pretrained`` used before); prints the growth of the process's peak resident set (ru_maxrss) after imports,
and what the read ended in.
"""
from __future__ import annotations

import argparse
import io
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import resource, sys, torch
from paint_core.io.checkpoints import load_state_dict_file
path, how = sys.argv[1], sys.argv[2]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    (load_state_dict_file(path) if how == "paint_core" else torch.load(path, map_location="cpu", weights_only=True))
    end = "read"
except Exception as e:
    end = type(e).__name__ + ": " + str(e).split(chr(10))[0].replace(path, "FILE")[:70]
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024, end, sep="\\t")
"""


def build(d: Path, gib: int) -> dict[str, Path]:
    bomb = b"\x80\x02c__builtin__\nbytearray\nJ" + struct.pack("<i", 1 << 30) + b"\x85R."
    (d / "bytearray.pt").write_bytes(bomb)
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buf)
    with zipfile.ZipFile(buf) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    pkl = next(n for n in members if n.endswith("data.pkl"))
    with zipfile.ZipFile(d / "zip_bytearray.pt", "w") as out:
        for n, data in members.items():
            out.writestr(n, bomb if n == pkl else data)
    with zipfile.ZipFile(d / "inflates.pt", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for n, data in members.items():
            if n == pkl[: -len("data.pkl")] + "data/0":
                with out.open(n, "w", force_zip64=True) as f:
                    for _ in range(1024 * gib):
                        f.write(bytes(1 << 20))
            else:
                out.writestr(n, data)
    from paint_core.models.clip import create_architecture
    torch.save(create_architecture("micro-rn-s").state_dict(), d / "micro-rn-s.pt")
    return {"33-byte bytearray(2**30)": d / "bytearray.pt", f"zip inflating to {gib} GiB": d / "inflates.pt",
            "bytearray(2**30) in a torch zip": d / "zip_bytearray.pt", "micro-rn-s state dict": d / "micro-rn-s.pt"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=int, default=1, help="GiB the zip's storage inflates to (default: %(default)s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = build(Path(tmp), args.gib)
        print(f"{'file':<34} {'size':>11}  {'paint_core MB':>13}  {'torch.load MB':>13}  ends (paint_core | torch.load)")
        for name, path in files.items():
            got = {}
            for how in ("paint_core", "torch"):
                r = subprocess.run([sys.executable, "-c", PROBE, str(path), how], capture_output=True, text=True,
                                   cwd=ROOT, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                                  "PATH": "/usr/bin:/bin"})
                got[how] = r.stdout.strip().split("\t") if r.returncode == 0 else ["?", r.stderr.strip()[-70:]]
            print(f"{name:<34} {path.stat().st_size:>11,}  {got['paint_core'][0]:>13}  {got['torch'][0]:>13}  "
                  f"{got['paint_core'][1]} | {got['torch'][1]}")


if __name__ == "__main__":
    main()

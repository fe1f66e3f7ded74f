"""What a checkpoint file is before anything reads it, and how much memory reading it may take.

A file of weights is a zip archive (torch.save since 1.6), a pickle (torch's legacy format, pickle.dump) or a
safetensors file. Anything else is named (a PNG, a gzip, ...) rather than reported as a broken pickle. A zip's
members declare their sizes: those are checked against the archive's own size before a byte is decompressed,
so a small file cannot ask for gigabytes (Python's zipfile never inflates a member past its declared size).
"""
from __future__ import annotations

import zipfile

# Reading a checkpoint may allocate at most ALLOC_FACTOR times its size on disk plus ALLOC_FLOOR (small files:
# names, configs): its tensors are its own bytes once, the rest is room for the objects around them.
ALLOC_FACTOR = 4
ALLOC_FLOOR = 1 << 20
# torch.save stores members uncompressed (ratio 1); a member inflating more than this is not a checkpoint's.
MAX_ZIP_RATIO = 100
RATIO_CHECKED_ABOVE = 1 << 16  # tiny members (a version number) may compress well

TORCHSCRIPT = ("this is a TorchScript archive: loading it runs the code it holds, so it is not read. Save the "
               "weights instead: torch.save(model.state_dict(), 'weights.pt')")

# Leading bytes of files that are often picked by mistake.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG image"), (b"\xff\xd8\xff", "JPEG image"), (b"GIF8", "GIF image"),
          (b"BM", "BMP image"), (b"%PDF", "PDF document"), (b"\x1f\x8b", "gzip archive"),
          (b"BZh", "bzip2 archive"), (b"\xfd7zXZ\x00", "xz archive"), (b"7z\xbc\xaf\x27\x1c", "7-zip archive"),
          (b"\x89HDF\r\n\x1a\n", "HDF5 file (Keras/TensorFlow weights)"), (b"\x93NUMPY", "NumPy array file"),
          (b"RIFF", "RIFF file (WebP image, WAV audio)"), (b"\x7fELF", "program (ELF executable)"))


def allocation_limit(file_size: int) -> int:
    """The most bytes reading a checkpoint of ``file_size`` bytes may allocate."""
    return ALLOC_FACTOR * file_size + ALLOC_FLOOR


def other_format(head: bytes) -> str | None:
    """The kind of file ``head`` (its first bytes) starts, if it is a common one that holds no weights."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 28:
        return "safetensors file (name it .safetensors)"
    return None


def is_torchscript(names: list[str]) -> bool:
    """TorchScript archives hold their code (``code/``) and constants beside the pickle."""
    return any(n.endswith("constants.pkl") or "/code/" in n or n.startswith("code/") for n in names)


def check_zip(zf: zipfile.ZipFile, file_size: int) -> int:
    """Refuse an archive whose members would inflate past a checkpoint's bounds (each member's ratio, and
    their declared total against ``allocation_limit``); returns the declared total. Raises ValueError."""
    total = 0
    for info in zf.infolist():
        if info.file_size > RATIO_CHECKED_ABOVE and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise ValueError(f"refused: member {info.filename} declares {info.file_size:,} bytes compressed into "
                             f"{info.compress_size:,} (more than {MAX_ZIP_RATIO}:1), which no checkpoint needs; "
                             "nothing was decompressed")
        total += info.file_size
    if total > allocation_limit(file_size):
        raise ValueError(f"refused: the archive's members declare {total:,} bytes, past the "
                         f"{allocation_limit(file_size):,} that reading a file of {file_size:,} bytes may take; "
                         "nothing was decompressed")
    return total

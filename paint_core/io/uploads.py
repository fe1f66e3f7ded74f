"""Zip uploads, unpacked once per content inside the server's write root, within limits, and cleaned up.

A zip is judged from its directory before a byte is unpacked: the number of files, every declared size, the
sizes in all, the compression ratio, encryption and the compression method; the sizes are enforced again
while reading, since a declared size can lie. It is unpacked into a hidden folder beside its place and renamed
into place only when whole, so a damaged zip leaves nothing behind.

    <root>/<sha256 of the zip, 32 hex>/           its files, flat (folders in the zip are dropped)
    <root>/<sha256 ...>/.user-<session>           who uses it; touched on every use

The same content uploaded again, or attached while a page reruns, is not unpacked again. A user holds at most
one unpacked zip (attaching another releases the first), and a zip no user touched for ``UPLOAD_TTL_S`` is
removed by the next upload or release.
"""
from __future__ import annotations

import hashlib
import io
import logging
import lzma
import re
import shutil
import stat
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from .writes import folder_lock, staging_dir, swap_in


log = logging.getLogger(__name__)
UPLOAD_TTL_S = 3600.0         # an unpacked zip nobody used for this long is removed
RATIO_FREE_BYTES = 2 ** 20     # a file this small may compress better than the ratio (a flat BMP does)
_CHUNK = 2 ** 20
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
            zipfile.ZIP_LZMA: "lzma"}
_CONTENT = re.compile(r"^[0-9a-f]{32}$")
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, RuntimeError,
                NotImplementedError, ValueError, struct.error)


class UploadRefused(ValueError):
    """An upload that is not unpacked: too large, damaged, or holding what does not belong in it."""


@dataclass(frozen=True)
class ZipLimits:
    """What one zip may hold; checked from its directory first and again while reading."""
    max_files: int = 5_000
    max_file_bytes: int = 20 * 2 ** 20        # one file unpacked
    max_total_bytes: int = 200 * 2 ** 20      # all files unpacked
    max_ratio: float = 100.0                  # unpacked / compressed, per file (above RATIO_FREE_BYTES) and in all


def _mb(n: float) -> str:
    return f"{n / 2 ** 20:.0f} MB" if n >= 2 ** 20 else f"{n:,.0f} bytes"


def _directory_size(data: bytes) -> tuple[int, int]:
    """(entries, bytes) of the zip's central directory, read from its end record (zip64 too) before Python's
    zipfile parses it: zipfile builds an object per entry, so a small upload declaring millions of entries
    would fill memory before any count could be checked."""
    at = len(data) - 22  # where the end record is without a comment; else search the last 64 kB as zipfile does
    if data[at:at + 4] != b"PK\x05\x06":
        at = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if at < 0 or at + 22 > len(data):
        raise UploadRefused("the upload is not a zip archive")
    entries, size = struct.unpack_from("<HI", data, at + 10)
    if entries == 0xFFFF or size == 0xFFFFFFFF:  # zip64: the true numbers are in the zip64 end record
        loc = at - 20
        if loc < 0 or data[loc:loc + 4] != b"PK\x06\x07":
            raise UploadRefused("the zip is damaged: its zip64 end record is missing")
        (record,) = struct.unpack_from("<Q", data, loc + 8)
        if record + 56 > len(data) or data[record:record + 4] != b"PK\x06\x06":
            raise UploadRefused("the zip is damaged: its zip64 end record is missing")
        entries, size = struct.unpack_from("<QQ", data, record + 32)
    return entries, size


def check_zip(data: bytes, name_ok: Callable[[str], bool], expected: str,
              limits: ZipLimits = ZipLimits()) -> list[tuple[zipfile.ZipInfo, str]]:
    """(entry, flat file name) of every file of the zip ``data``, once its directory passed every check;
    ``UploadRefused`` with one line otherwise. ``name_ok`` judges a flat name; ``expected`` describes it."""
    entries, size = _directory_size(data)
    if entries > limits.max_files or size > 1024 * limits.max_files:
        raise UploadRefused(f"the zip holds {entries:,} entries in a {_mb(size)} directory; at most "
                            f"{limits.max_files:,} files")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except _READ_ERRORS:
        raise UploadRefused("the upload is not a readable zip archive") from None
    files, names, total = [], set(), 0
    for m in infos:
        if not m.filename:  # zipfile's own is_dir() fails on it
            raise UploadRefused("the zip is damaged: an entry has no name")
        if m.is_dir():
            continue
        path = PurePosixPath(m.filename.replace("\\", "/"))
        if path.parts[0] == "__MACOSX" or path.name == ".DS_Store":
            continue  # the Finder's own bookkeeping in zips made on a Mac, never an image of the set
        name = path.name
        if stat.S_ISLNK(m.external_attr >> 16):
            raise UploadRefused(f"the zip holds a link ({m.filename!r}); only plain files are read")
        if m.flag_bits & 0x1:
            raise UploadRefused(f"the zip is encrypted ({m.filename!r}); upload an unencrypted zip")
        if m.compress_type not in _METHODS:
            raise UploadRefused(f"{m.filename!r} in the zip uses compression method {m.compress_type}, which is "
                                f"not read here ({', '.join(_METHODS.values())} are)")
        if name in ("", ".", "..") or name.startswith(".") or not name_ok(name):
            raise UploadRefused(f"{m.filename!r} in the zip is not named {expected}")
        if name in names:
            raise UploadRefused(f"two files in the zip are both named {name!r}")
        names.add(name)
        if m.file_size > limits.max_file_bytes:
            raise UploadRefused(f"{name} in the zip is {_mb(m.file_size)}; at most {_mb(limits.max_file_bytes)} "
                                "per file")
        if m.file_size > RATIO_FREE_BYTES and m.file_size > limits.max_ratio * m.compress_size:
            raise UploadRefused(f"{name} in the zip would unpack {m.file_size / max(m.compress_size, 1):,.0f} "
                                f"times larger than it is packed; at most {limits.max_ratio:g} times")
        total += m.file_size
        files.append((m, name))
    if len(files) > limits.max_files:
        raise UploadRefused(f"the zip holds {len(files):,} files; at most {limits.max_files:,}")
    if total > limits.max_total_bytes:
        raise UploadRefused(f"the zip unpacks to {_mb(total)}; at most {_mb(limits.max_total_bytes)}")
    if total > limits.max_ratio * len(data) + RATIO_FREE_BYTES:
        raise UploadRefused(f"the zip would unpack {total / len(data):,.0f} times larger than it is; at most "
                            f"{limits.max_ratio:g} times")
    if not files:
        raise UploadRefused(f"the zip holds no files named {expected}")
    return files


def _unpack(data: bytes, files: list[tuple[zipfile.ZipInfo, str]], dest: Path) -> None:
    """Every checked file into ``dest``, each holding exactly the bytes its directory declares."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for m, name in files:
            _unpack_one(archive, m, dest / name)


def _unpack_one(archive: zipfile.ZipFile, m: zipfile.ZipInfo, path: Path) -> None:
    """One file, read in chunks and counted: more or fewer bytes than declared is damage, as is a bad CRC.
    (A write that fails, e.g. a full disk, is reported as such, not as damage.)"""
    def damaged(why: str) -> UploadRefused:
        return UploadRefused(f"the zip is damaged: {path.name} {why}")

    written = 0
    with open(path, "xb") as out:
        try:
            src = archive.open(m)
        except _READ_ERRORS as e:
            raise damaged(f"cannot be read ({e})") from None
        with src:
            while True:
                try:
                    chunk = src.read(_CHUNK)
                except _READ_ERRORS as e:
                    raise damaged(f"cannot be read ({e})") from None
                if not chunk:
                    break
                written += len(chunk)
                if written > m.file_size:
                    raise damaged(f"unpacks to more than the {m.file_size:,} bytes its directory declares")
                out.write(chunk)
    if written != m.file_size:
        raise damaged(f"unpacks to {written:,} bytes; its directory declares {m.file_size:,}")


def _marker(user: str) -> str:
    """A user's marker file name; any session id becomes a safe file name."""
    return ".user-" + hashlib.sha256(user.encode()).hexdigest()[:16]


def unpack_zip(data: bytes, root: str | Path, user: str, name_ok: Callable[[str], bool], expected: str,
               limits: ZipLimits = ZipLimits(), ttl_s: float = UPLOAD_TTL_S) -> Path:
    """The folder holding the files of the zip ``data``, unpacked under ``root`` once per content and marked
    as used by ``user`` (whose other uploads are released); ``UploadRefused`` (one line, nothing left on
    disk) for a zip that is too large, damaged, or holds a file ``name_ok`` refuses."""
    files = check_zip(data, name_ok, expected, limits)
    root = Path(root)
    final = root / hashlib.sha256(data).hexdigest()[:32]
    with folder_lock(root):
        if not final.is_dir():
            staged = staging_dir(final)
            try:
                _unpack(data, files, staged)
                swap_in(staged, final)
            except BaseException:
                shutil.rmtree(staged, ignore_errors=True)
                raise
        (final / _marker(user)).touch()
        _prune(root, user, keep=final, ttl_s=ttl_s)
    return final


def release_uploads(root: str | Path, user: str, ttl_s: float = UPLOAD_TTL_S) -> None:
    """``user`` no longer uses any upload (e.g. it detached its zip): those nobody else uses are removed."""
    root = Path(root)
    if root.is_dir():
        with folder_lock(root):
            _prune(root, user, keep=None, ttl_s=ttl_s)


def _prune(root: Path, user: str, keep: Path | None, ttl_s: float) -> None:
    """Drop ``user``'s marks except on ``keep``; remove every unpacked zip left without a mark of the last
    ``ttl_s`` seconds. Called with the root's lock held."""
    now, mark = time.time(), _marker(user)
    for folder in root.iterdir():
        if not _CONTENT.match(folder.name) or folder.is_symlink() or not folder.is_dir() or folder == keep:
            continue
        (folder / mark).unlink(missing_ok=True)
        fresh = [m for m in folder.glob(".user-*") if now - m.stat().st_mtime < ttl_s]
        if not fresh:
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed the unpacked upload %s (no user for %.0f s)", folder.name, ttl_s)

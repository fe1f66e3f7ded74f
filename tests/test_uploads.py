"""Issue 25, item 1: zip uploads are unpacked once per content inside the write root, within limits, cleaned up,
and a damaged zip (bytes patched by hand below) is refused with one line and leaves nothing on disk."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from paint_core.data.typographic import typographic_task, unpack_typographic_zip
from paint_core.io import writes
from paint_core.io.uploads import UploadRefused, ZipLimits, check_zip, release_uploads, unpack_zip


def png(rgb=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), rgb).save(buf, "PNG")
    return buf.getvalue()


def make_zip(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


GOOD = {"label=cat_text=dog.png": png((255, 0, 0)), "label=dog_text=cat.png": png((0, 0, 255))}


def headers(data: bytes | bytearray, signature: bytes) -> list[int]:
    """Offsets of every record with ``signature`` (central directory: PK\\1\\2, local header: PK\\3\\4)."""
    out, at = [], data.find(signature)
    while at >= 0:
        out.append(at)
        at = data.find(signature, at + 4)
    return out


def patched(data: bytes, central: dict[int, tuple[str, int]], local: dict[int, tuple[str, int]] = {}) -> bytes:
    """``data`` with fields of its first file's central-directory record and local header overwritten:
    {offset in the record: (struct format, value)}."""
    out = bytearray(data)
    for sig, fields in ((b"PK\x01\x02", central), (b"PK\x03\x04", local)):
        at = headers(out, sig)[0]
        for offset, (fmt, value) in fields.items():
            struct.pack_into(fmt, out, at + offset, value)
    return bytes(out)


def on_disk(root: Path) -> list[str]:
    """Everything under the uploads root except its lock file."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != ".lock") if root.exists() else []


def unpack(data: bytes, root: Path, user: str = "session-a", **kw) -> Path:
    return unpack_typographic_zip(data, root, user) if not kw else unpack_zip(
        data, root, user, lambda n: n.startswith("label="), "label=...", **kw)


# ------------------------------------------------------------------------------------ what is unpacked
def test_a_zip_unpacks_flat_once_per_content_and_reads_as_a_task(tmp_path):
    root = tmp_path / "up"
    data = make_zip({"set/label=cat_text=dog.png": GOOD["label=cat_text=dog.png"],
                     "../label=dog_text=cat.png": GOOD["label=dog_text=cat.png"]})
    out = unpack(data, root)
    assert out.parent == root and len(out.name) == 32
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(GOOD)
    assert not (tmp_path / "label=dog_text=cat.png").exists()  # '../' did not escape
    assert (out / "label=cat_text=dog.png").read_bytes() == GOOD["label=cat_text=dog.png"]
    inode = (out / "label=cat_text=dog.png").stat().st_ino
    for user in ("session-a", "session-a", "session-b"):  # page reruns, and another session with the same zip
        assert unpack(data, root, user) == out
    assert (out / "label=cat_text=dog.png").stat().st_ino == inode  # not unpacked again
    assert [p.name for p in root.iterdir() if p.name != ".lock"] == [out.name]
    task = typographic_task(str(out))
    assert task.classnames == ("cat", "dog") and len(task.split("test", None)) == 2  # the markers are no images


@pytest.mark.parametrize("files, message", [
    ({"notes.txt": b"x"}, "'notes.txt' in the zip is not named label=<class>_text=<word>.png"),
    ({"a/label=a_text=b.png": b"1", "b/label=a_text=b.png": b"2"}, "two files in the zip are both named "
                                                                   "'label=a_text=b.png'"),
    ({".label=a_text=b.png": b"1"}, "'.label=a_text=b.png' in the zip is not named"),
    ({"sub/": b""}, "the zip holds no files named label=<class>_text=<word>.png"),
])
def test_odd_contents_are_refused_before_anything_is_written(tmp_path, files, message):
    with pytest.raises(UploadRefused) as e:
        unpack(make_zip(files), tmp_path / "up")
    assert str(e.value).startswith(message)
    assert on_disk(tmp_path / "up") == []


def test_not_a_zip_nameless_entries_and_links_are_refused(tmp_path):
    with pytest.raises(UploadRefused, match="^the upload is not a zip archive$"):
        unpack(b"PK no", tmp_path / "up")
    nameless = io.BytesIO()
    with zipfile.ZipFile(nameless, "w") as z:
        z.writestr(zipfile.ZipInfo(""), b"x")  # found by scripts/fuzz_uploads.py: zipfile's is_dir() raised
    with pytest.raises(UploadRefused, match="^the zip is damaged: an entry has no name$"):
        unpack(nameless.getvalue(), tmp_path / "up")
    link = io.BytesIO()
    with zipfile.ZipFile(link, "w") as z:
        info = zipfile.ZipInfo("label=a_text=b.png")
        info.external_attr = 0o120777 << 16
        z.writestr(info, "/etc/passwd")
    with pytest.raises(UploadRefused, match=r"^the zip holds a link \('label=a_text=b.png'\); only plain files"):
        unpack(link.getvalue(), tmp_path / "up")
    assert on_disk(tmp_path / "up") == []


# ------------------------------------------------------------------------------------ damaged zips
DAMAGE = {  # the reviewer's four damaged zips: (central-directory fields, local-header fields), message
    "bad CRC": ({16: ("<I", 0x12345678)}, {},
                "the zip is damaged: label=cat_text=dog.png cannot be read (Bad CRC-32 for file "
                "'label=cat_text=dog.png')"),
    "declared size too small": ({24: ("<I", 20)}, {},
                                "the zip is damaged: label=cat_text=dog.png cannot be read (Bad CRC-32 for file "
                                "'label=cat_text=dog.png')"),
    "declared size too large": ({24: ("<I", 5000)}, {},
                                "the zip is damaged: label=cat_text=dog.png unpacks to {n} bytes; its directory "
                                "declares 5,000"),
    "encrypted flag": ({8: ("<H", 0x1)}, {6: ("<H", 0x1)},
                       "the zip is encrypted ('label=cat_text=dog.png'); upload an unencrypted zip"),
    "unknown compression method": ({10: ("<H", 99)}, {8: ("<H", 99)},
                                   "'label=cat_text=dog.png' in the zip uses compression method 99, which is not "
                                   "read here (stored, deflate, bzip2, lzma are)"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_zips_are_refused_with_one_line_and_leave_nothing(tmp_path, damage):
    central, local, message = DAMAGE[damage]
    data = patched(make_zip(GOOD), central, local)
    with pytest.raises(UploadRefused) as e:
        unpack(data, tmp_path / "up")
    assert str(e.value) == message.format(n=f"{len(GOOD['label=cat_text=dog.png']):,}")
    assert "\n" not in str(e.value)
    assert on_disk(tmp_path / "up") == []  # no unpacked file, no staging folder


def test_a_damaged_second_file_removes_the_first_one_already_unpacked(tmp_path):
    """The bad-CRC zip of the review left its good first file on disk."""
    data = bytearray(make_zip(GOOD, zipfile.ZIP_STORED))
    second = headers(data, b"PK\x01\x02")[1]
    struct.pack_into("<I", data, second + 16, 0xDEADBEEF)
    with pytest.raises(UploadRefused, match="label=dog_text=cat.png cannot be read"):
        unpack(bytes(data), tmp_path / "up")
    assert on_disk(tmp_path / "up") == []


# ------------------------------------------------------------------------------------ limits
def test_limits_are_checked_from_the_directory_before_anything_is_written(tmp_path):
    root = tmp_path / "up"
    three = make_zip({f"label={c}_text=x.png": png() for c in "abc"})
    with pytest.raises(UploadRefused, match=r"^the zip holds 3 entries in a .* directory; at most 2 files$"):
        unpack(three, root, limits=ZipLimits(max_files=2))
    big = make_zip({"label=a_text=b.png": os.urandom(3000)})
    with pytest.raises(UploadRefused,
                       match=r"^label=a_text=b.png in the zip is 3,000 bytes; at most 2,000 bytes per file$"):
        unpack(big, root, limits=ZipLimits(max_file_bytes=2000))
    with pytest.raises(UploadRefused, match=r"^the zip unpacks to 9,000 bytes; at most 5,000 bytes$"):
        unpack(make_zip({f"label={c}_text=x.png": os.urandom(3000) for c in "abc"}), root,
               limits=ZipLimits(max_total_bytes=5000))
    assert on_disk(root) == []


def test_compression_ratio_is_bounded_per_file_and_in_all(tmp_path):
    """A 5 MB file of zeros packs into ~5 kB: refused from its declared sizes, before it is inflated."""
    bomb = make_zip({"label=a_text=b.png": bytes(5 * 2 ** 20)})
    with pytest.raises(UploadRefused, match=r"^label=a_text=b.png in the zip would unpack 1,0\d\d times larger than "
                                            r"it is packed; at most 100 times$"):
        unpack(bomb, tmp_path / "up")
    many = make_zip({f"label=c{i}_text=x.png": bytes(900 * 2 ** 10) for i in range(3)})  # each under 1 MB
    with pytest.raises(UploadRefused,
                       match=r"^the zip would unpack [\d,]+ times larger than it is; at most 100 times$"):
        unpack(many, tmp_path / "up")
    assert on_disk(tmp_path / "up") == []


def test_a_directory_that_lies_about_its_entry_count_is_refused_before_parsing(tmp_path):
    """The end record says 1 entry while the directory holds 200: its size alone refuses it, before Python's
    zipfile builds an object for every entry (a small upload could declare millions)."""
    data = bytearray(make_zip({f"label=c{i}_text=x.png": b"x" for i in range(200)}))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)
    with pytest.raises(UploadRefused, match=r"^the zip holds 1 entries in a [\d,]+ bytes directory; at most 10 files$"):
        check_zip(bytes(data), lambda n: True, "anything", ZipLimits(max_files=10))


def test_reading_stops_at_the_declared_size(tmp_path, monkeypatch):
    """A member that yields more bytes than its directory declares (zipfile truncates today; this guards the
    page if it did not) is refused and nothing is kept."""
    data, real_open = make_zip(GOOD), zipfile.ZipFile.open

    def generous(self, member, mode="r", *a, **k):
        return io.BytesIO(real_open(self, member, mode, *a, **k).read() + b"more")

    monkeypatch.setattr(zipfile.ZipFile, "open", generous)
    with pytest.raises(UploadRefused, match="^the zip is damaged: label=cat_text=dog.png unpacks to more than the "
                                            "75 bytes its directory declares$"):
        unpack(data, tmp_path / "up")
    assert on_disk(tmp_path / "up") == []


# ------------------------------------------------------------------------------------ clean-up
def test_each_user_holds_at_most_one_unpacked_zip_and_unused_ones_go(tmp_path):
    root = tmp_path / "up"
    first = unpack(make_zip(GOOD), root, "a")
    second = unpack(make_zip({"label=x_text=y.png": png(), "label=y_text=x.png": png()}), root, "a")
    assert not first.exists() and second.is_dir()  # a's new zip released its old one
    shared = unpack(make_zip(GOOD), root, "b")
    unpack(make_zip(GOOD), root, "a")  # a and b both on the same content
    assert not second.exists()
    release_uploads(root, "a")
    assert shared.is_dir()  # b still uses it
    release_uploads(root, "b")
    assert on_disk(root) == []


def test_an_upload_nobody_touched_for_the_ttl_is_removed_by_the_next_one(tmp_path):
    root = tmp_path / "up"
    old = unpack(make_zip(GOOD), root, "gone")  # a closed tab never releases its upload
    stale = time.time() - 7200
    for marker in old.glob(".user-*"):
        os.utime(marker, (stale, stale))
    fresh = unpack(make_zip({"label=x_text=y.png": png(), "label=y_text=x.png": png()}), root, "other")
    assert not old.exists() and fresh.is_dir()


def test_staging_folders_of_dead_writers_are_removed(tmp_path):
    """A writer killed mid-unpack (or mid fine-tune) leaves .NAME.partial-HOST-PID-ID; the next writer in that
    folder removes it when its process is gone, and leaves live, foreign and older-named ones alone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / "up"
    root.mkdir()
    host = writes._host_tag()
    names = {"dead": f".abc.partial-{host}-{dead.pid}-0123abcd", "alive": f".abc.partial-{host}-{os.getpid()}-0123abcd",
             "other host": f".abc.partial-00000000-{dead.pid}-0123abcd", "old name": ".abc.partial-0123abcd"}
    for name in names.values():
        (root / name).mkdir()
        (root / name / "half.png").write_bytes(b"half")
    unpack(make_zip(GOOD), root)
    left = {p.name for p in root.iterdir()}
    assert names["dead"] not in left
    assert {names["alive"], names["other host"], names["old name"]} <= left

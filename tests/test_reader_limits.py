"""Reading a checkpoint takes memory bounded by its size on disk, and a file that is no checkpoint is named
(issue 25): the cases of the security review, through `convert` and through the loader of `--pretrained` files
(the dashboard's checkpoint fields call the same load_model)."""
from __future__ import annotations

import io
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from paint_core import CheckpointError, load_model
from paint_core.cli import main
from paint_core.io import containers
from paint_core.io.checkpoints import load_state_dict_file
from paint_core.io.safe_pickle import LEGACY_MAGIC, UnsafePickleError, read_objects

MiB = 1 << 20


def _files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def _convert_error(src: Path, tmp_path: Path, capsys) -> str:
    """The one line `convert` prints for ``src`` (exit 1, nothing written)."""
    before = _files(tmp_path)
    assert main(["convert", str(src), "--model", "micro-rn-s", "--out", str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert _files(tmp_path) == before
    return err.rstrip("\n")


def _peak_bytes(fn, *args) -> tuple[int, Exception | None]:
    """Peak Python-heap bytes while ``fn(*args)`` runs (bytearrays and zip reads are on that heap)."""
    tracemalloc.start()
    try:
        fn(*args)
        error = None
    except Exception as e:  # noqa: BLE001 - the caller asserts which
        error = e
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, error


BYTEARRAY_1GIB = b"\x80\x02c__builtin__\nbytearray\nJ" + struct.pack("<i", 1 << 30) + b"\x85R."


def test_a_33_byte_pickle_asking_for_a_gibibyte_is_refused_unallocated(tmp_path, capsys):
    assert len(BYTEARRAY_1GIB) == 33
    bomb = tmp_path / "bomb.pt"
    bomb.write_bytes(BYTEARRAY_1GIB)
    refusal = ("refused: bytearray(1073741824) would take 1,073,741,824 bytes, past the 1,048,708 that reading a "
               "file of 33 bytes may take in all; nothing was allocated")
    peak, error = _peak_bytes(read_objects, bomb)
    assert isinstance(error, UnsafePickleError) and str(error) == refusal
    assert peak < 4 * MiB
    assert _convert_error(bomb, tmp_path, capsys) == f"error: {bomb}: {refusal}"
    peak, error = _peak_bytes(load_state_dict_file, bomb)  # the --pretrained path: torch.load allocated it
    assert isinstance(error, CheckpointError) and str(error) == f"{bomb}: {refusal}" and peak < 4 * MiB
    with pytest.raises(CheckpointError, match="refused: bytearray"):
        load_model("micro-rn-s", str(bomb))


def test_many_small_allocations_share_one_budget(tmp_path):
    """bytearray(N) with N under the file's size, called again and again through the memo: refused once the
    calls add up to more than the budget (each alone would pass a per-call check)."""
    n = 8192
    calls = 4000  # 4000 x 8 KiB = 31 MiB from a file of ~20 KB
    data = (b"\x80\x02c__builtin__\nbytearray\nq\x00J" + struct.pack("<i", n) + b"\x85q\x01(" +
            b"h\x00h\x01R" * calls + b"l.")
    assert len(data) < 4 * n * 1.1
    path = tmp_path / "many.pt"
    path.write_bytes(data)
    peak, error = _peak_bytes(read_objects, path)
    assert isinstance(error, UnsafePickleError)
    limit = containers.allocation_limit(len(data))
    assert str(error) == (f"refused: bytearray({n}) would take {n:,} bytes, past the {limit:,} that reading a file "
                          f"of {len(data):,} bytes may take in all; nothing was allocated")
    assert peak < containers.allocation_limit(len(data)) + 2 * MiB


def _legacy_with_storages(count: int, numel: int) -> bytes:
    """torch's legacy format whose pickle names ``count`` float storages of ``numel`` elements each, but whose
    raw section is empty (as an attacker would write it)."""
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


def test_legacy_storages_are_charged_together(tmp_path):
    data = _legacy_with_storages(3000, 0)
    numel = len(data) // 4 - 1000  # each storage alone fits in the file (the old per-storage check)
    data = _legacy_with_storages(3000, numel)
    path = tmp_path / "legacy.pt"
    path.write_bytes(data)
    limit = containers.allocation_limit(len(data))
    with pytest.raises(UnsafePickleError, match=rf"^refused: storage \d+ would take [\d,]+ bytes, past the {limit:,} "
                                                rf"that reading a file of {len(data):,} bytes may take in all; "
                                                "nothing was allocated$"):
        read_objects(path)  # before: 3000 storages of ~the file's size each were allocated


def _deflated_torch_zip(path: Path, nbytes: int) -> None:
    """A torch.save of one zero tensor of ``nbytes``, rewritten with its members deflated (zeros: ~1000:1)."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(nbytes // 4)}, buf)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)


def test_a_zip_whose_storage_inflates_is_refused_before_decompressing(tmp_path, capsys):
    bomb = tmp_path / "inflates.pt"
    _deflated_torch_zip(bomb, 64 * MiB)
    size = bomb.stat().st_size
    assert size < 200_000
    peak, error = _peak_bytes(read_objects, bomb)
    assert isinstance(error, UnsafePickleError) and peak < 4 * MiB
    assert str(error).startswith(f"refused: member archive/data/0 declares {64 * MiB:,} bytes compressed into ")
    assert str(error).endswith(f" (more than {containers.MAX_ZIP_RATIO}:1), which no checkpoint needs; nothing "
                               "was decompressed")
    assert _convert_error(bomb, tmp_path, capsys) == f"error: {bomb}: {error}"
    peak, error2 = _peak_bytes(load_state_dict_file, bomb)
    assert str(error2) == f"{bomb}: {error}" and peak < 4 * MiB


def test_a_zip_declaring_more_than_its_budget_is_refused(tmp_path, monkeypatch):
    bomb = tmp_path / "inflates.pt"
    _deflated_torch_zip(bomb, 16 * MiB)
    monkeypatch.setattr(containers, "MAX_ZIP_RATIO", 10 ** 9)  # the total alone must refuse it
    with pytest.raises(UnsafePickleError) as e:
        read_objects(bomb)
    assert str(e.value).startswith("refused: the archive's members declare 16,7")
    size = bomb.stat().st_size
    assert str(e.value).endswith(f"bytes, past the {containers.allocation_limit(size):,} that reading a file of "
                                 f"{size:,} bytes may take; nothing was decompressed")


def test_a_bytearray_inside_a_torch_zip_is_refused_on_the_pretrained_path(tmp_path):
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buf)
    bomb = tmp_path / "zipped.pt"
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(bomb, "w") as out:
        for info in src.infolist():
            out.writestr(info.filename, BYTEARRAY_1GIB if info.filename.endswith("data.pkl") else src.read(info))
    peak, error = _peak_bytes(load_state_dict_file, bomb)
    assert isinstance(error, CheckpointError) and peak < 4 * MiB
    size = bomb.stat().st_size
    assert str(error) == (f"{bomb}: refused: bytearray(1073741824) would take 1,073,741,824 bytes, past the "
                          f"{containers.allocation_limit(size):,} that reading a file of {size:,} bytes may take "
                          "in all; nothing was allocated")


def test_an_expanded_view_is_charged_as_the_copy_it_becomes():
    """A storage of one float viewed as 2**28 elements (stride 0) costs nothing until copied: charged."""
    from paint_core.io.safe_pickle import StorageBytes, _budget, _rebuild_tensor
    with _budget(1000):
        assert _rebuild_tensor(StorageBytes(torch.zeros(4)), 0, (4,), (1,)).numel() == 4  # a plain view: free
        with pytest.raises(UnsafePickleError, match=r"refused: a tensor of size \(268435456,\) would take "
                                                    r"1,073,741,820 bytes"):
            _rebuild_tensor(StorageBytes(torch.zeros(1)), 0, (1 << 28,), (0,))


def test_a_png_is_called_a_png(tmp_path, capsys):
    png = tmp_path / "photo.pt"
    Image.new("RGB", (4, 4)).save(png, "PNG")
    message = "this is a PNG image, not a checkpoint (weights saved by torch.save or pickle)"
    assert _convert_error(png, tmp_path, capsys) == f"error: {png}: {message}"
    with pytest.raises(CheckpointError) as e:
        load_model("micro-rn-s", str(png))
    assert str(e.value) == f"{png}: {message}"


def test_torchscript_on_the_pretrained_path_gives_no_weights_only_advice(tmp_path):
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    with pytest.raises(CheckpointError) as e:
        load_model("micro-rn-s", str(scripted))
    assert str(e.value) == (f"{scripted}: this is a TorchScript archive: loading it runs the code it holds, so it "
                            "is not read. Save the weights instead: torch.save(model.state_dict(), 'weights.pt')")
    assert "weights_only" not in str(e.value)


def test_a_state_dict_with_non_string_keys_is_one_line(tmp_path, capsys):
    bad = tmp_path / "intkeys.pt"
    torch.save({1: torch.zeros(2), "a": torch.zeros(1)}, bad)
    message = f"{bad} does not hold a state dict: its keys must be parameter names (text), but one is 1 (int)"
    with pytest.raises(CheckpointError) as e:
        load_model("micro-rn-s", str(bad))
    assert str(e.value) == message
    assert _convert_error(bad, tmp_path, capsys) == f"error: {message}"


@pytest.mark.slow  # builds a 1 MB zip that inflates to 1 GiB, runs two short fine-tunes
def test_the_fuzz_script_replays_every_case_of_the_review(tmp_path, capsys, monkeypatch):
    import importlib.util
    import sys
    spec = importlib.util.spec_from_file_location("fuzz_convert", Path(__file__).parent.parent / "scripts" /
                                                  "fuzz_convert.py")
    fuzz = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fuzz_convert", fuzz)  # (its dataclass looks its module up)
    spec.loader.exec_module(fuzz)
    assert fuzz.replay(tmp_path)
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("ok", "FAIL"))]
    assert len(rows) == 25 and all(r.startswith("ok ") for r in rows), rows

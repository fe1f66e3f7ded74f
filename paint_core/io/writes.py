"""Where the tool may write, and how: nothing a user types may destroy, overwrite or expose data.

Every output goes to a new path or to something this tool made (a run directory, identified by its
run.json; a checkpoint, identified by its sidecar). Replacing one is an explicit choice and is atomic:
the new version is written beside, then swapped in. One writer per run directory (a lock file beside it).
The shipped weights and cached_results/ are never written by ``export`` or the dashboard.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .checkpoints import CheckpointError, read_sidecar, sha256_file, sidecar_path
from .paths import CACHED_RESULTS_DIR, WEIGHTS_DIR


log = logging.getLogger(__name__)


class WriteRefused(ValueError):
    """A write that would destroy, overwrite or expose something the tool does not own."""


class RunLocked(RuntimeError):
    """Another process (or dashboard session) is writing this run directory."""


def is_inside(path: str | Path, root: str | Path) -> bool:
    """``path`` is ``root`` or below it, after resolving symlinks and ``..`` on both."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p == r or r in p.parents


def resolve_inside(path: str | Path, roots: Sequence[str | Path], what: str) -> Path:
    """``path`` resolved (symlinks too) if it lies under one of ``roots``; otherwise ``WriteRefused``.

    The message is the same whether or not the path exists, so it reveals nothing about the server's files.
    """
    text = str(path).strip()
    if not text:
        raise WriteRefused(f"{what}: give a path")
    resolved = Path(text).expanduser().resolve()
    if not any(is_inside(resolved, r) for r in roots):
        listed = ", ".join(str(Path(r)) for r in roots) or "(none configured)"
        raise WriteRefused(f"{what} {text!r} is outside the folders this tool may use here: {listed}")
    return resolved


def refuse_shipped(path: str | Path, what: str) -> None:
    """The shipped weights and cached_results/ are regenerated only by ``pretrain`` / ``reproduce``."""
    for root in (WEIGHTS_DIR, CACHED_RESULTS_DIR):
        if is_inside(path, root):
            raise WriteRefused(f"{what} {path} is inside {root.name}/, which holds shipped results; "
                               "write somewhere else (e.g. runs/)")


def is_run_dir(path: str | Path) -> bool:
    """A directory this tool made: it holds a run.json that parses as a JSON object with a schema."""
    f = Path(path) / "run.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "schema" in meta


def check_run_output(out: str | Path, overwrite: bool) -> Path:
    """Where a new run may be written: a new path, an empty folder, or (with ``overwrite``) an existing run."""
    text = str(out).strip()
    out = Path(text)
    if text in ("", ".") or out.resolve() == Path(out.resolve().anchor):
        raise WriteRefused(f"run directory {str(out)!r}: give a folder name such as runs/my-run")
    if out.is_symlink():
        raise WriteRefused(f"run directory {out} is a symbolic link; give the real folder")
    if out.exists() and not out.is_dir():
        raise WriteRefused(f"{out} is a file, not a run directory; choose another output folder")
    if out.is_dir() and any(out.iterdir()):
        if not is_run_dir(out):
            raise WriteRefused(f"{out} already exists and is not a run directory made by this tool (no valid "
                               "run.json); refusing to replace it: choose a new output folder")
        if not overwrite:
            raise WriteRefused(f"{out} already holds a run; replacing it must be asked for "
                               "(CLI: --overwrite; dashboard: the 'replace' box)")
    return out


def run_own_files(run_dir: str | Path) -> set[str]:
    """The names of the files that make up run directory ``run_dir`` (what ``export`` must never replace)."""
    names = {"run.json", "sweep.csv", "finetuned.safetensors", "finetuned.json", "zeroshot.safetensors",
             "zeroshot.json"}
    try:
        zs = json.loads((Path(run_dir) / "run.json").read_text()).get("zeroshot_file")
    except (OSError, ValueError, AttributeError):
        zs = None
    if isinstance(zs, str) and zs:
        names |= {zs, Path(zs).with_suffix(".json").name}
    return names


def refuse_run_files(out: str | Path) -> None:
    """A checkpoint output inside a run directory may be a new file or an earlier output there (an export or a
    conversion: its sidecar names where it came from), never a file of the run itself: replacing its
    weights with an export "succeeded" and left a run that no longer sweeps."""
    out = Path(out)
    where = out.parent.resolve() / out.name  # the folder's links resolved; a link as ``out`` is refused later
    for folder in where.parents:
        if not is_run_dir(folder):
            continue
        own = run_own_files(folder) if folder == where.parent else set()
        taken = next((n for n in (where.name, sidecar_path(where).name) if n in own), None)
        if taken is None and where.is_file():
            try:
                side = read_sidecar(where)
            except CheckpointError:
                side = {}
            taken = None if ("run" in side or "converted_from" in side) else where.name
        if taken is not None:
            beside = folder.parent / f"{folder.name}-patched.safetensors"
            raise WriteRefused(f"output {out} would replace {taken} of the run directory {folder}; write "
                               f"exports beside the run instead (e.g. {beside})")


def check_checkpoint_output(out: str | Path, overwrite: bool) -> Path:
    """Where a checkpoint (.safetensors + .json sidecar) may be written without clobbering anything."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise WriteRefused(f"output {out.name!r} must end in .safetensors")
    refuse_shipped(out, "output")
    refuse_run_files(out)
    side = sidecar_path(out)
    for p in (out, side):
        if p.is_symlink() or (p.exists() and not p.is_file()):
            raise WriteRefused(f"{p} exists and is not a plain file; choose another output")
    if side.exists() and not out.exists():
        raise WriteRefused(f"{side} exists and is not the sidecar of a checkpoint; writing {out.name} would "
                           "replace it: choose another output name")
    if out.exists():
        try:
            ours = read_sidecar(out).get("sha256") == sha256_file(out)
        except (CheckpointError, OSError):
            ours = False
        if not ours:
            raise WriteRefused(f"{out} exists and was not written by this tool (no matching sidecar "
                               f"{side.name}); refusing to overwrite it")
        if not overwrite:
            raise WriteRefused(f"{out} exists; replacing it must be asked for (CLI: --overwrite)")
    return out


# open_clip's folder layout (its hub format), loadable with ``open_clip.create_model_and_transforms("local-dir:DIR")``
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


def is_open_clip_export(path: str | Path) -> bool:
    """A folder an earlier ``export`` wrote: open_clip's config, the weights and their matching sidecar, no more."""
    path = Path(path)
    weights = path / OPEN_CLIP_WEIGHTS
    names = {p.name for p in path.iterdir()} if path.is_dir() and not path.is_symlink() else set()
    if names != {OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, sidecar_path(weights).name}:
        return False
    try:
        return read_sidecar(weights).get("sha256") == sha256_file(weights)
    except (CheckpointError, OSError):
        return False


def check_export_folder_output(out: str | Path, overwrite: bool) -> Path:
    """Where an open_clip folder may be written: a new or empty folder, or (with ``overwrite``) an earlier export."""
    text = str(out).strip()
    out = Path(text)
    if text in ("", ".") or out.resolve() == Path(out.resolve().anchor):
        raise WriteRefused(f"output folder {str(out)!r}: give a folder name such as runs/patched")
    refuse_shipped(out, "output")
    if out.is_symlink():
        raise WriteRefused(f"output folder {out} is a symbolic link; give the real folder")
    if out.exists() and not out.is_dir():
        raise WriteRefused(f"{out} is a file; an export ends in .safetensors (one file) or names a folder "
                           "(open_clip's layout)")
    if out.is_dir() and any(out.iterdir()):
        if not is_open_clip_export(out):
            raise WriteRefused(f"{out} already exists and is not an export made by this tool; refusing to replace "
                               "it: choose a new output folder")
        if not overwrite:
            raise WriteRefused(f"{out} holds an earlier export; replacing it must be asked for (CLI: --overwrite)")
    return out


def check_json_output(out: str | Path) -> Path:
    """A study's JSON output: new, or an earlier result of the same kind (which the study resumes from)."""
    out = Path(out)
    if out.suffix != ".json":
        raise WriteRefused(f"output {out.name!r} must end in .json")
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise WriteRefused(f"{out} exists and is not a plain file; choose another output")
    if is_run_dir(out.parent) and out.name in run_own_files(out.parent):
        raise WriteRefused(f"{out} is a file of the run directory {out.parent}; choose another name")
    if out.exists():
        try:
            ours = isinstance(json.loads(out.read_text()), dict)
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise WriteRefused(f"{out} exists and is not a result this tool wrote; refusing to overwrite it")
    return out


# --------------------------------------------------------------------------------------------- locks
def lock_path(run_dir: str | Path) -> Path:
    """One lock per run directory, beside it (so it survives the directory being swapped)."""
    run_dir = Path(run_dir).resolve()
    return run_dir.parent / f".{run_dir.name}.lock"


def _holder_alive(info: dict) -> bool:
    if info.get("host") != socket.gethostname():
        return True  # cannot tell across machines: assume the other writer is alive
    try:
        return process_alive(int(info.get("pid", -1)))
    except ValueError:
        return False


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` on this machine still runs (a zombie does not: it writes nothing more)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed process not yet reaped by its parent still answers kill(pid, 0), but it writes nothing more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux) or gone meanwhile: kill() already said it exists
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


@contextmanager
def run_lock(run_dir: str | Path, command: str = "") -> Iterator[Path]:
    """Hold the write lock of ``run_dir``; a second writer gets ``RunLocked`` naming the first one.

    A lock left by a dead process on this machine is taken over (the process that wrote it is gone).
    """
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": command, "token": uuid.uuid4().hex}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(path.read_text())
            except (OSError, ValueError):
                held = {}
            if held and not _holder_alive(held):
                path.unlink(missing_ok=True)  # stale: its writer died
                continue
            who = (f"process {held.get('pid')} on {held.get('host')} since {held.get('started')}"
                   + (f" ({held['command']})" if held.get("command") else "")) if held else "another writer"
            raise RunLocked(f"{Path(run_dir)} is being written by {who}; wait for it to finish "
                            f"(if that process is gone, delete {path})") from None
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        break
    else:
        raise RunLocked(f"could not take the lock {path}")
    try:
        yield path
    finally:
        try:
            if json.loads(path.read_text()).get("token") == info["token"]:
                path.unlink()
        except (OSError, ValueError):
            pass


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """One holder at a time of ``folder``'s bookkeeping, across threads and processes of this machine (an
    flock on ``folder/.lock``, released by the kernel if the holder dies)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------ atomic directories
# .NAME.partial-HOST-PID-ID (a Linux pid has at most 7 digits: pid_max <= 2**22)
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-(?P<host>[0-9a-f]{8})-(?P<pid>\d{1,7})-[0-9a-f]{8}$")


def _host_tag() -> str:
    """This machine in a file name (a pid means something only on the machine that wrote it)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def staging_dir(final: str | Path) -> Path:
    """A fresh, hidden folder beside ``final`` to write a new version in (unique per writer).

    Its name holds this machine and process (``.NAME.partial-HOST-PID-ID``), so the folders left by writers
    that were killed (SIGKILL, out of memory, power loss) are recognised and removed here, by the next writer
    in the same folder."""
    final = Path(final).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final.parent)
    path = final.parent / f".{final.name}.partial-{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Remove the staging folders in ``folder`` whose writer, a process on this machine, is gone; returns
    them. A folder of a live process, of another machine, or without a writer in its name (made before
    names held one) is left alone: when in doubt, nothing is deleted."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    here = _host_tag()
    for e in entries:
        m = _PARTIAL.match(e.name)
        if m is None or m["host"] != here or not e.is_dir(follow_symlinks=False) or process_alive(int(m["pid"])):
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        removed.append(Path(e.path))
    if removed:
        log.info("removed %d staging folder(s) of writers that died: %s", len(removed),
                 ", ".join(p.name for p in removed))
    return removed


def swap_in(staged: str | Path, final: str | Path) -> None:
    """Put the finished ``staged`` folder at ``final``; an older version there is removed only after the new
    one is in place (if the process dies in between, the old one is left as ``.NAME.replaced-*``)."""
    staged, final = Path(staged), Path(final)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.replaced-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

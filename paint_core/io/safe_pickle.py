"""Reading a pickled checkpoint without running anything from it, by construction.

torch.load is never called on a file to convert: this module opens the container itself (torch's zip format,
torch's legacy format, or a plain ``pickle.dump`` as mlfoundations/patching and wise-ft write) and unpickles it
with a pure-Python unpickler whose every global is either a function of this module that rebuilds a tensor, a
harmless constant (a dtype, OrderedDict), or an inert stand-in class. No opcode may modify anything but a
stand-in or a plain container (BUILD on a function, class or module is refused), persistent ids only name
storages inside the file, and TorchScript archives (whose loading runs their code) are refused outright.

Memory is bounded too: everything a read allocates beyond the pickle's own opcodes (a zip member, a legacy
storage, a ``bytearray(N)``, a container built from another, a stand-in class) is charged to a budget of
``containers.allocation_limit(file size)``, shared by nested reads, and refused before it is allocated.
"""
from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import io
import torch

from .containers import TORCHSCRIPT, allocation_limit, check_zip, is_torchscript, other_format


LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
DTYPE_NAMES = {"float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long", "int32",
               "int", "int16", "int8", "uint8", "bool"}
# Modules whose names mean code: a pickle naming anything in them is refused outright (everything else that is
# not a rebuild function becomes an inert stand-in, never imported).
CODE_MODULES = {"os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "shutil", "socket", "importlib",
                "pickle", "_pickle", "marshal", "types", "runpy", "codecs", "ctypes", "pty", "webbrowser", "urllib",
                "http", "requests", "multiprocessing", "threading", "signal", "functools", "operator", "code",
                "pdb", "tempfile", "io", "pathlib", "glob", "platform", "inspect", "gc", "weakref", "copyreg",
                "typing", "ast", "dill", "cloudpickle", "joblib", "zipfile", "tarfile", "atexit", "paint_core"}


class UnsafePickleError(pickle.UnpicklingError):
    """The file was refused (it asked for code, for more memory than its size allows, or is no checkpoint at
    all); nothing was run."""


class _Budget:
    """Bytes a read may still allocate; ``size`` is the size of the file being read (for the message)."""

    def __init__(self, size: int):
        self.size, self.limit = size, allocation_limit(size)
        self.left = self.limit

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise UnsafePickleError(f"refused: {what} would take {nbytes:,} bytes, past the {self.limit:,} that "
                                    f"reading a file of {self.size:,} bytes may take in all; nothing was allocated")
        self.left -= nbytes


_BUDGET: ContextVar[_Budget | None] = ContextVar("paint_core_pickle_budget", default=None)


@contextmanager
def _budget(size: int) -> Iterator[None]:
    """The budget of a read of ``size`` bytes; a nested read (a storage pickled as bytes) shares the outer one."""
    if _BUDGET.get() is not None:
        yield
        return
    token = _BUDGET.set(_Budget(size))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _charge(nbytes: int, what: str) -> None:
    budget = _BUDGET.get()
    if budget is None:
        raise UnsafePickleError("internal error: a pickle was read outside read_objects (no memory budget)")
    budget.charge(int(nbytes), what)


_ELEMENT_COST = 64  # bytes charged per element of a container built from another (a generous estimate)


def _sized(arg: Any, what: str) -> Any:
    """Charge building a container from ``arg``; only plain containers and text may be copied."""
    if not isinstance(arg, (list, tuple, dict, set, frozenset, str, bytes, bytearray)):
        raise UnsafePickleError(f"refused to build {what} from a {type(arg).__name__}")
    _charge(_ELEMENT_COST * len(arg), what)
    return arg


def _container(kind: type) -> Any:
    def build(*args: Any) -> Any:
        if len(args) > 1:
            raise UnsafePickleError(f"refused: {kind.__name__}() with {len(args)} arguments")
        return kind(*(_sized(a, kind.__name__) for a in args))
    build.__name__ = kind.__name__
    return build


def _bytearray(*args: Any) -> bytearray:
    """bytearray(data) or bytearray(text, encoding) as pickles of a bytearray write it; bytearray(N) only
    within the budget (it allocates N bytes)."""
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        if args[0] < 0:
            raise UnsafePickleError("refused: bytearray of negative size")
        _charge(args[0], f"bytearray({args[0]})")
        return bytearray(args[0])
    if len(args) > 3 or (args and not isinstance(args[0], (bytes, bytearray, str, list, tuple))):
        raise UnsafePickleError("refused: bytearray of something that is not data")
    if args:
        _charge(len(args[0]), "a bytearray")
    return bytearray(*args)


class Stub:
    """Stands in for any pickled class (a module of the research code): keeps its state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


class StorageBytes:
    """A storage read from the file: a flat tensor of ``dtype``."""

    def __init__(self, flat: torch.Tensor):
        self.flat = flat


class _StorageType:
    """What a pickle's ``torch.FloatStorage`` (etc.) becomes: a dtype marker."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


MAX_DIMS = 64  # torch's own limit on a tensor's dimensions


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, *_ignored: Any) -> torch.Tensor:
    if not isinstance(storage, StorageBytes):
        raise UnsafePickleError("a tensor was rebuilt from something that is not a storage of the file")
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))) \
            or len(size) > MAX_DIMS or len(stride) > MAX_DIMS:
        raise UnsafePickleError("a tensor's size or stride is not a short tuple of integers")
    view = torch.as_strided(storage.flat, tuple(size), tuple(stride), int(offset))
    # a view that repeats its storage's elements (stride 0) is free until copied: charge what a copy would take
    _charge(max(0, view.numel() - storage.flat.numel()) * view.element_size(), f"a tensor of size {tuple(size)}")
    return view


def _rebuild_parameter(data: Any, *_ignored: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError("a parameter was rebuilt from something that is not a tensor")
    return data


def _rebuild_from_type(func: Any, _new_type: Any, args: tuple, _state: Any) -> torch.Tensor:
    if func not in (_rebuild_tensor, _rebuild_parameter):
        raise UnsafePickleError("a tensor subclass asked to be rebuilt by an unknown function")
    return func(*args)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if isinstance(cls, type) and issubclass(cls, Stub):
        return cls()
    if cls is _SAFE[("collections", "OrderedDict")]:
        return OrderedDict()
    raise UnsafePickleError(f"refused to reconstruct {cls!r}")


def _size(*args: Any) -> tuple:
    if len(args) > 1:
        raise UnsafePickleError(f"refused: torch.Size with {len(args)} arguments")
    return tuple(_sized(args[0], "torch.Size")) if args else ()


def _device(*args: Any) -> str:
    if args and not isinstance(args[0], (str, int)):
        raise UnsafePickleError("refused: a device named by something that is not a name")
    return str(args[0]) if args else "cpu"


_SAFE = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor, ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("collections", "OrderedDict"): _container(OrderedDict), ("copyreg", "_reconstructor"): _reconstructor,
    ("torch", "Size"): _size, ("torch", "device"): _device,
    ("builtins", "set"): _container(set), ("builtins", "frozenset"): _container(frozenset),
    ("builtins", "slice"): slice, ("builtins", "object"): object, ("builtins", "list"): _container(list),
    ("builtins", "dict"): _container(dict), ("builtins", "tuple"): _container(tuple),
    ("builtins", "bytearray"): _bytearray,
}
STUB_CLASS_COST = 4096  # bytes charged per stand-in class (a class object is about 1 KB; cached per name)


class SafeUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be overridden
    """find_class returns only the functions above, dtypes, storage markers or stand-ins; BUILD only touches
    stand-ins and plain containers; persistent ids resolve through ``storages``."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO, storages: Any = None):
        super().__init__(file)
        self._storages = storages
        self._stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module
        if (module, name) in _SAFE:
            return _SAFE[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if module == "torch.storage" and name == "UntypedStorage":
            return _StorageType(torch.uint8)
        if module == "torch" and name in DTYPE_NAMES:
            return getattr(torch, name)
        if module == "torch.storage" and name == "_load_from_bytes":
            return _load_storage_from_bytes
        if module.split(".")[0] in CODE_MODULES or (module == "torch" and name[:1].islower()):
            raise UnsafePickleError(f"refused to load global {module}.{name}: it is not a tensor or a module "
                                    "class, and calling it could run code; nothing was run")
        if (module, name) not in self._stubs:
            _charge(STUB_CLASS_COST + len(module) + len(name), f"a stand-in class for {module[:40]}.{name[:40]}")
            self._stubs[(module, name)] = type(name, (Stub,), {"__module__": "paint_core.stub." + module})
        return self._stubs[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None:
            raise UnsafePickleError("the pickle names an external object, which a plain pickle cannot have")
        return self._storages(pid)

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if not isinstance(inst, (Stub, OrderedDict, dict)) or isinstance(inst, type):
            raise UnsafePickleError(f"refused to set the state of {type(inst).__name__} {inst!r:.60}: only "
                                    "stand-ins for module classes and plain containers may be built")
        slots = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
        for part in (state, slots):
            if part is None:
                continue
            if not isinstance(part, dict):
                raise UnsafePickleError("an object's state is not a dictionary")
            for k, v in part.items():
                if not isinstance(k, str):
                    raise UnsafePickleError("an object's state has a key that is not a string")
                inst.__dict__[k] = v

    dispatch[pickle.BUILD[0]] = load_build


def _unpickle(data: bytes, storages: Any = None) -> Any:
    try:
        return SafeUnpickler(io.BytesIO(data), storages).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # a malformed pickle: never a traceback from deep inside
        raise UnsafePickleError(f"not a readable pickle ({type(e).__name__}: {e})") from None


def _storage_dtype(storage_type: Any) -> torch.dtype:
    if not isinstance(storage_type, _StorageType):
        raise UnsafePickleError("a storage of an unknown type")
    return storage_type.dtype


def _read_zip(zf: zipfile.ZipFile, file_size: int) -> Any:
    names = zf.namelist()
    if is_torchscript(names):
        raise UnsafePickleError(TORCHSCRIPT)
    pkl = [n for n in names if n.endswith("data.pkl")]
    if len(pkl) != 1:
        raise UnsafePickleError("not a torch checkpoint archive (no single data.pkl)")
    try:
        _charge(check_zip(zf, file_size), "the archive's members")
    except ValueError as e:
        raise UnsafePickleError(str(e)) from None
    prefix = pkl[0][: -len("data.pkl")]
    order = zf.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
    if order != "little":
        raise UnsafePickleError(f"storages in {order}-endian byte order are not supported")
    loaded: dict[str, StorageBytes] = {}

    def storage(pid: Any) -> StorageBytes:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise UnsafePickleError(f"unknown persistent id {str(pid)[:60]}")
        _, storage_type, key, _location, numel = pid
        key = key.decode() if isinstance(key, bytes) else str(key)
        name = f"{prefix}data/{key}"
        if name not in names:
            raise UnsafePickleError(f"the pickle names storage {key!r}, which the archive does not hold")
        if key not in loaded:
            dtype = _storage_dtype(storage_type)
            info = zf.getinfo(name)
            raw = bytearray(info.file_size)  # declared, checked by check_zip; zipfile never reads past it
            with zf.open(info) as f:
                if f.readinto(raw) != len(raw):
                    raise UnsafePickleError(f"storage {key!r} is shorter than its archive entry declares")
            loaded[key] = StorageBytes(torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype))
        return loaded[key]

    return _unpickle(zf.read(pkl[0]), storage)


def _read_legacy(f: BinaryIO, file_size: int) -> Any:
    """torch's pre-1.6 format: magic, protocol, system info, the object's pickle, the storage keys, raw data.
    Storages are allocated when the pickle names them (never larger than the file) and filled afterwards."""
    for _header in ("magic", "protocol", "sys_info"):
        SafeUnpickler(f).load()
    declared: dict[str, tuple[torch.dtype, int]] = {}
    objects: dict[str, StorageBytes] = {}

    def storage(pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            # torch compares the class's source with the file's and may write a .patch file; we only take the
            # stand-in class the pickle already named, and never look at the source
            if not (isinstance(pid[1], type) and issubclass(pid[1], Stub)):
                raise UnsafePickleError("a 'module' persistent id that names no class")
            return pid[1]
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) == 6):
            raise UnsafePickleError(f"refused persistent id {str(pid)[:60]}: only storages and module classes")
        _, storage_type, root_key, _location, numel, view = pid
        root_key, dtype, numel = str(root_key), _storage_dtype(storage_type), int(numel)
        if not 0 <= numel * torch.empty(0, dtype=dtype).element_size() <= file_size:
            raise UnsafePickleError(f"storage {root_key} declares {numel} elements, more than the file holds")
        if root_key not in objects:
            _charge(numel * torch.empty(0, dtype=dtype).element_size(), f"storage {root_key[:40]}")
            declared[root_key] = (dtype, numel)
            objects[root_key] = StorageBytes(torch.zeros(numel, dtype=dtype))  # filled from the raw section
        if view is not None:
            view_key, offset, size = view
            return objects.setdefault(str(view_key), StorageBytes(objects[root_key].flat[int(offset):int(offset) + int(size)]))
        return objects[root_key]

    result = SafeUnpickler(f, storage).load()
    keys = SafeUnpickler(f).load()
    if not isinstance(keys, list) or set(map(str, keys)) - set(declared):
        raise UnsafePickleError("the storage list does not match the storages the pickle named")
    for key in map(str, keys):
        dtype, numel = declared[key]
        count = int.from_bytes(f.read(8), "little")
        if count != numel:
            raise UnsafePickleError(f"storage {key} declares {numel} elements but holds {count}")
        nbytes = count * torch.empty(0, dtype=dtype).element_size()
        raw = bytearray(f.read(nbytes))
        if len(raw) != nbytes:
            raise UnsafePickleError("the file ends inside a storage (truncated)")
        if nbytes:
            objects[key].flat.view(torch.uint8).copy_(torch.frombuffer(raw, dtype=torch.uint8))
    return result


def _load_storage_from_bytes(data: bytes) -> StorageBytes:
    """What ``pickle.dump(model)`` writes for every storage: a torch.save of the storage alone, as bytes."""
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("an embedded storage is not bytes")
    obj = read_objects_from_bytes(data)
    if not isinstance(obj, StorageBytes):
        raise UnsafePickleError("an embedded storage is not a storage")
    return obj


def _looks_like_zip(data: bytes | BinaryIO) -> bool:
    try:
        return zipfile.is_zipfile(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
    except Exception:  # is_zipfile itself raises on some damaged end records: a damaged zip
        return True


def _from_zip(source: bytes | BinaryIO, size: int) -> Any:
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as zf:
            return _read_zip(zf, size)
    except UnsafePickleError:
        raise
    except Exception as e:  # a damaged archive: one clear message
        raise UnsafePickleError(f"not a readable checkpoint archive ({type(e).__name__}: {e})") from None


def _from_pickle(data: bytes) -> Any:
    kind = other_format(bytes(data[:16]))
    if kind is not None:
        raise UnsafePickleError(f"this is a {kind}, not a checkpoint (weights saved by torch.save or pickle)")
    first = _unpickle(data)
    if isinstance(first, int) and first == LEGACY_MAGIC:
        try:
            return _read_legacy(io.BytesIO(data), len(data))
        except UnsafePickleError:
            raise
        except Exception as e:
            raise UnsafePickleError(f"not a readable legacy torch checkpoint ({type(e).__name__}: {e})") from None
    return first  # a plain pickle.dump (PAINT / wise-ft checkpoints)


def read_objects_from_bytes(data: bytes | bytearray) -> Any:
    """``read_objects`` of a file's contents."""
    with _budget(len(data)):
        return _from_zip(data, len(data)) if _looks_like_zip(data) else _from_pickle(data)


def read_objects(path: str | Path) -> Any:
    """The object pickled in ``path`` with tensors rebuilt and every class an inert stand-in. A zip archive
    is read member by member from the file (memory: its tensors once, plus a bounded overhead)."""
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        with _budget(size):
            if _looks_like_zip(f):
                f.seek(0)
                return _from_zip(f, size)
            f.seek(0)
            return _from_pickle(f.read())

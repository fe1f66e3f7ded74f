"""Reading a pickled checkpoint without running anything from it, by construction.

torch.load is never called on a file to convert: this module opens the container itself (torch's zip format,
torch's legacy format, or a plain ``pickle.dump`` as mlfoundations/patching and wise-ft write) and unpickles it
with a pure-Python unpickler whose every global is either a function of this module that rebuilds a tensor, a
harmless constant (a dtype, OrderedDict), or an inert stand-in class. No opcode may modify anything but a
stand-in or a plain container (BUILD on a function, class or module is refused), persistent ids only name
storages inside the file, and TorchScript archives (whose loading runs their code) are refused outright.
"""
from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import io
import torch


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
    """The file asked for something that could run code or change the program; nothing was run."""


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


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, *_ignored: Any) -> torch.Tensor:
    if not isinstance(storage, StorageBytes):
        raise UnsafePickleError("a tensor was rebuilt from something that is not a storage of the file")
    return torch.as_strided(storage.flat, tuple(size), tuple(stride), int(offset))


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
    if cls is OrderedDict:
        return OrderedDict()
    raise UnsafePickleError(f"refused to reconstruct {cls!r}")


def _size(*args: Any) -> tuple:
    return tuple(*args)


def _device(*args: Any) -> str:
    return str(args[0]) if args else "cpu"


_SAFE = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor, ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("collections", "OrderedDict"): OrderedDict, ("copyreg", "_reconstructor"): _reconstructor,
    ("torch", "Size"): _size, ("torch", "device"): _device,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice,
    ("builtins", "object"): object, ("builtins", "list"): list, ("builtins", "dict"): dict,
    ("builtins", "tuple"): tuple, ("builtins", "bytearray"): bytearray,
}


class SafeUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be overridden
    """find_class returns only the functions above, dtypes, storage markers or stand-ins; BUILD only touches
    stand-ins and plain containers; persistent ids resolve through ``storages``."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO, storages: Any = None):
        super().__init__(file)
        self._storages = storages

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
        return type(name, (Stub,), {"__module__": "paint_core.stub." + module})

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


def _read_zip(zf: zipfile.ZipFile) -> Any:
    names = zf.namelist()
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise UnsafePickleError("this is a TorchScript archive: loading it runs the code it holds, so it is not "
                                "converted. Save the weights instead: torch.save(model.state_dict(), 'weights.pt')")
    pkl = [n for n in names if n.endswith("data.pkl")]
    if len(pkl) != 1:
        raise UnsafePickleError("not a torch checkpoint archive (no single data.pkl)")
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
            raw = bytearray(zf.read(name))
            flat = torch.frombuffer(raw, dtype=_storage_dtype(storage_type)) if raw else \
                torch.empty(0, dtype=_storage_dtype(storage_type))
            loaded[key] = StorageBytes(flat)
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
    obj = read_objects_from_bytes(bytes(data))
    if not isinstance(obj, StorageBytes):
        raise UnsafePickleError("an embedded storage is not a storage")
    return obj


def _looks_like_zip(data: bytes) -> bool:
    try:
        return zipfile.is_zipfile(io.BytesIO(data))
    except Exception:  # is_zipfile itself raises on some damaged end records: a damaged zip
        return True


def read_objects_from_bytes(data: bytes) -> Any:
    if _looks_like_zip(data):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return _read_zip(zf)
        except UnsafePickleError:
            raise
        except Exception as e:  # a damaged archive: one clear message
            raise UnsafePickleError(f"not a readable checkpoint archive ({type(e).__name__}: {e})") from None
    first = _unpickle(data)
    if isinstance(first, int) and first == LEGACY_MAGIC:
        try:
            return _read_legacy(io.BytesIO(data), len(data))
        except UnsafePickleError:
            raise
        except Exception as e:
            raise UnsafePickleError(f"not a readable legacy torch checkpoint ({type(e).__name__}: {e})") from None
    return first  # a plain pickle.dump (PAINT / wise-ft checkpoints)


def read_objects(path: str | Path) -> Any:
    """The object pickled in ``path`` with tensors rebuilt and every class an inert stand-in."""
    data = Path(path).read_bytes()
    return read_objects_from_bytes(data)

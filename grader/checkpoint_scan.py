"""What a checkpoint file declares, read without loading it.

The grader's own process reads students' checkpoints (probe reuse, the parameter count shown
to the instructor), so nothing in them may make it allocate more than the file holds: a deflated
zip record of 1.5 MB can expand to 20 GB, and a pickle can declare a storage of any size that
torch allocates before reading it.  `check` looks at the zip's central directory, the pickle's
declared storages (simulating the pickle machine's stack, never building an object) and the
safetensors header, and refuses before anything is allocated.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import struct
import zipfile

from grader.errors import GraderError

MAX_PICKLE_BYTES = 8 << 20  # a state_dict's pickle is about 150 bytes per tensor
MAX_SAFETENSORS_HEADER = 16 << 20
ELEMENT_BYTES = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                 "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
                 "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16, "UntypedStorage": 1}


class CheckpointRefused(GraderError):
    """The file is not a checkpoint we can read safely; the message says why and what to do."""


def size_text(n: float) -> str:
    """In units of 1024, as limits.memory_mb counts."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return ""  # not reached


def check(path: str, max_bytes: int) -> None:
    """Refuse (CheckpointRefused) a checkpoint whose reading could take more than the file and
    `max_bytes` allow; say nothing of files that are not checkpoints (the reader explains those)."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return
    if path.endswith(".safetensors"):
        _safetensors(path, name, size, head, max_bytes)
    elif head.startswith(b"PK"):
        _zip(path, name, max_bytes)
    elif head[:1] == b"\x80":
        _legacy(path, name, size, max_bytes)


def _too_large(name: str, declared: int, max_bytes: int) -> CheckpointRefused:
    return CheckpointRefused(f"{name}: declares {size_text(declared)} of tensors, more than the "
                             f"{size_text(max_bytes)} the rubric allows (limits.memory_mb)")


def _zip(path: str, name: str, max_bytes: int) -> None:
    """torch.save's zip stores every record uncompressed; the records' sizes are the whole cost."""
    try:
        with zipfile.ZipFile(path) as z:
            records = z.infolist()
            compressed = [info for info in records if info.compress_type != zipfile.ZIP_STORED]
            if compressed:
                info = max(compressed, key=lambda i: i.file_size)
                raise CheckpointRefused(
                    f"{name}: a compressed record of {size_text(info.compress_size)} that expands to "
                    f"{size_text(info.file_size)}; torch.save never writes one")
            for info in records:
                if info.file_size != info.compress_size:
                    raise CheckpointRefused(f"{name}: a stored record {info.filename!r} whose two sizes differ "
                                            f"({info.compress_size} and {info.file_size} bytes)")
            declared = sum(info.file_size for info in records)
            if declared > max_bytes:
                raise _too_large(name, declared, max_bytes)
            pickles = [info for info in records if info.filename.endswith("/data.pkl")]
            if len(pickles) != 1:
                return  # not torch's layout: torch.load says so, without allocating
            pkl = pickles[0]
            if pkl.file_size > MAX_PICKLE_BYTES:
                raise CheckpointRefused(f"{name}: its pickle is {size_text(pkl.file_size)}; a checkpoint's is "
                                        f"under {size_text(MAX_PICKLE_BYTES)}")
            prefix = pkl.filename[: -len("data.pkl")]
            by_name = {info.filename: info.file_size for info in records}
            for key, element, numel in _storages(io.BytesIO(z.read(pkl)), name):
                record = by_name.get(f"{prefix}data/{key}")
                if record is None or numel * element > record:
                    raise CheckpointRefused(
                        f"{name}: a tensor declares {size_text(numel * element)} over a record of "
                        f"{size_text(record or 0)}; torch.save never writes one")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError, OSError, EOFError,
            struct.error) as e:
        raise CheckpointRefused(f"{name}: not a readable zip ({e})") from None


def _legacy(path: str, name: str, size: int, max_bytes: int) -> None:
    """The format before PyTorch 1.6: five pickles (magic number, protocol, system, the object,
    the storage keys), then each storage's bytes.  torch allocates each storage at the size its
    persistent id declares before reading it, so the declared sizes must fit in the file."""
    declared = 0
    with open(path, "rb") as f:
        for number in range(5):
            start = f.tell()
            limited = io.BytesIO(f.read(MAX_PICKLE_BYTES))
            found = _storages(limited, name) if number == 3 else (_skip(limited, name) or [])
            used = limited.tell()
            if number < 4 and used >= MAX_PICKLE_BYTES:
                raise CheckpointRefused(f"{name}: its pickle is larger than {size_text(MAX_PICKLE_BYTES)}")
            f.seek(start + used)
            declared += sum(numel * element for _, element, numel in found)
        data_left = size - f.tell()
    if declared > max_bytes:
        raise _too_large(name, declared, max_bytes)
    if declared > data_left:
        raise CheckpointRefused(f"{name}: declares {size_text(declared)} of tensors in a file with "
                                f"{size_text(max(0, data_left))} of data; torch.save never writes one")


def _skip(stream, name: str) -> None:
    try:
        for _ in pickletools.genops(stream):
            pass
    except (ValueError, EOFError, struct.error, UnicodeDecodeError) as e:
        raise CheckpointRefused(f"{name}: not a readable pickle ({e})") from None


def _storages(stream, name: str) -> list[tuple[str, int, int]]:
    """(key, bytes per element, elements) of every storage the pickle's persistent ids declare.

    A stack machine that keeps only what a persistent id is made of (numbers, strings, tuples,
    globals' names): every other operation just takes and leaves the number of stack entries it
    takes and leaves, as pickletools documents for each opcode."""
    stack: list = []
    marks: list[int] = []
    memo: dict = {}
    found = []
    try:
        for op, arg, _ in pickletools.genops(stream):
            kind = op.name
            if kind == "MARK":
                marks.append(len(stack))
            elif kind in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif kind == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif kind in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(arg))
            elif kind == "GLOBAL":
                stack.append(("global", str(arg).split(" ")[-1]))
            elif kind == "STACK_GLOBAL":
                attribute = stack.pop()
                stack.pop()
                stack.append(("global", attribute))
            elif kind == "TUPLE":
                start = marks.pop()
                items = tuple(stack[start:])
                del stack[start:]
                stack.append(items)
            elif kind in ("EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
                n = len(op.stack_before)
                items = tuple(stack[len(stack) - n:]) if n else ()
                del stack[len(stack) - n:]
                stack.append(items)
            elif kind in ("BINPERSID", "PERSID"):
                found.append(_storage(stack.pop() if kind == "BINPERSID" else None, name))
                stack.append(None)
            elif kind == "STOP":
                break
            elif not op.stack_before and len(op.stack_after) == 1:
                stack.append(arg)  # a constant: number, string, None, an empty container
            else:
                _generic(op, stack, marks)
    except (ValueError, EOFError, IndexError, struct.error, UnicodeDecodeError) as e:
        raise CheckpointRefused(f"{name}: not a readable pickle ({e or type(e).__name__})") from None
    return found


def _generic(op, stack: list, marks: list[int]) -> None:
    before = op.stack_before
    if pickletools.markobject in before:
        below = before.index(pickletools.markobject)
        start = marks.pop() - below
    else:
        start = len(stack) - len(before)
    if start < 0:
        raise IndexError("the pickle takes from an empty stack")
    del stack[start:]
    stack.extend([None] * len(op.stack_after))


def _storage(pid, name: str) -> tuple[str, int, int]:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise CheckpointRefused(f"{name}: a persistent id that is not a tensor storage")
    _, kind, key, _, numel = pid[:5]
    element = ELEMENT_BYTES.get(kind[1]) if isinstance(kind, tuple) and len(kind) == 2 else None
    if element is None or not isinstance(numel, int) or numel < 0:
        raise CheckpointRefused(f"{name}: a storage of an unknown type or size")
    return str(key), element, numel


def _safetensors(path: str, name: str, size: int, head: bytes, max_bytes: int) -> None:
    """8 bytes of header length, the JSON header, then the tensors' bytes (which the reader checks
    against the header): the header and the data are the whole cost."""
    if len(head) < 8:
        return
    header = struct.unpack("<Q", head)[0]
    if header > min(MAX_SAFETENSORS_HEADER, size - 8):
        raise CheckpointRefused(f"{name}: a header of {size_text(header)} in a file of {size_text(size)}")
    with open(path, "rb") as f:
        f.seek(8)
        try:
            entries = json.loads(f.read(header))
        except (ValueError, RecursionError):
            raise CheckpointRefused(f"{name}: its header is not JSON") from None
    ends = [e["data_offsets"][1] for k, e in entries.items() if k != "__metadata__" and isinstance(e, dict)
            and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2] \
        if isinstance(entries, dict) else []
    declared = max([int(end) for end in ends if isinstance(end, int)], default=0)
    if declared > max_bytes:
        raise _too_large(name, declared, max_bytes)

"""Unpacking students' zip files safely.

A zip comes from a student, so it is read as hostile: no member may land outside
the target folder (absolute paths, '..', drive letters, symbolic links), and the
bytes actually written are counted against a size cap, whatever the zip's own
header claims (a zip bomb declares small sizes).  Members that cannot be placed
safely are left out and named in the notes; a zip that is not readable, is
encrypted or exceeds the caps is refused as a whole with a reason.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from grader.errors import GraderError
from grader.safe_text import shown as _shown

JUNK = ("__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class UnpackLimits:
    max_bytes: int = 2 << 30  # everything unpacked for one student
    max_files: int = 10_000


@dataclass
class Unpacked:
    files: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)


class UnpackRefused(GraderError):
    """The zip as a whole cannot be used; the message says why, for the student."""


def unpack(archive: Path, target: Path, limits: UnpackLimits = UnpackLimits(), *, budget: Unpacked | None = None,
           nested: bool = True) -> Unpacked:
    """Extract `archive` into `target`; zips inside it are unpacked once more, in place.

    `budget` carries counts across several zips of the same student.
    """
    done = budget or Unpacked()
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            if len(members) + done.files > limits.max_files:
                raise UnpackRefused(f"{archive.name} holds {len(members):,} files; at most {limits.max_files:,} "
                                    "are accepted")
            declared = sum(m.file_size for m in members)
            if declared + done.bytes > limits.max_bytes:
                raise UnpackRefused(f"{archive.name} unpacks to {_size(declared)}; at most "
                                    f"{_size(limits.max_bytes)} are accepted")
            extracted = [_extract(z, member, archive.name, target, limits, done) for member in members]
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, struct.error,
            UnicodeError) as e:  # a truncated or malformed zip, whatever part of it zipfile trips on
        raise UnpackRefused(f"{archive.name} is not a readable zip file ({_shown(e)})") from None
    except RuntimeError as e:  # zipfile raises RuntimeError for encrypted members
        if "encrypted" in str(e) or "password" in str(e):
            raise UnpackRefused(f"{archive.name} is password-protected; submit it without a password") from None
        raise UnpackRefused(f"{archive.name} is not a readable zip file ({_shown(e)})") from None
    if nested:
        for inner in sorted(p for p in extracted if p is not None and p.suffix.lower() == ".zip"):
            if inner.is_file():
                try:
                    unpack(inner, inner.parent, limits, budget=done, nested=False)
                    inner.unlink()
                    done.notes.append(f"unpacked {inner.relative_to(target).as_posix()} inside {archive.name}")
                except UnpackRefused as e:
                    done.notes.append(f"left {inner.name} packed: {e}")
    return done


def _extract(z: zipfile.ZipFile, member: zipfile.ZipInfo, zip_name: str, target: Path, limits: UnpackLimits,
             done: Unpacked) -> Path | None:
    name = member.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if not parts or any(p in JUNK for p in parts):
        return None
    mode = member.external_attr >> 16
    if stat.S_ISLNK(mode):
        done.notes.append(f"{_shown(name)} in {zip_name} is a symbolic link; links are not followed (not unpacked)")
        return None
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        done.notes.append(f"skipped {_shown(name)} in {zip_name}: it points outside the submission folder")
        return None
    path = target.joinpath(*parts)
    if not path.resolve().is_relative_to(target.resolve()):
        done.notes.append(f"skipped {_shown(name)} in {zip_name}: it points outside the submission folder")
        return None
    if member.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        return None
    if member.flag_bits & 0x1:
        raise UnpackRefused(f"{zip_name} is password-protected; submit it without a password")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()  # may be a hard link into the instructor's download: never write through it
        written = _copy_member(z, member, path, zip_name, limits.max_bytes - done.bytes, limits.max_bytes)
        _keep_time(path, member)
    except OSError as e:
        done.notes.append(f"skipped {_shown(name)} in {zip_name}: {e.strerror or e}")
        return None
    done.files += 1
    done.bytes += written
    return path


def _copy_member(z: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path, zip_name: str, allowed: int,
                 cap: int) -> int:
    """Copy one member, counting what is really written (headers can lie)."""
    written = 0
    with z.open(member) as source, open(path, "wb") as sink:
        while True:
            chunk = source.read(_CHUNK)
            if not chunk:
                return written
            written += len(chunk)
            if written > allowed:
                sink.close()
                path.unlink(missing_ok=True)
                raise UnpackRefused(f"{zip_name} unpacks to more than {_size(cap)} (its header understates the "
                                    "sizes)")
            sink.write(chunk)


def _keep_time(path: Path, member: zipfile.ZipInfo) -> None:
    """The member's time as the zip records it: an LMS's download dates each file by its submission,
    which the late policy reads (grader.batch.submissions)."""
    try:
        stamp = datetime(*member.date_time).timestamp()  # zip times are local times
        os.utime(path, (stamp, stamp))
    except (ValueError, OverflowError, OSError):
        pass


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def _size(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MB" if n < (1 << 30) else f"{n / (1 << 30):,.2f} GB"

"""Atomic file writes: a temporary file in the same folder, flushed to disk, then renamed over the target.

A reader sees the old file or the new one, never half of one, even if the writer is killed or the machine
stops; the folder entry is synced too, so the rename itself survives a crash.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from medner.errors import ConfigError


def not_a_record(name: str) -> bool:
    """A hidden entry (a part of its relative path starts with ``.``: ``._a.txt`` AppleDouble files, ``.DS_Store``)
    or Mac metadata (``__MACOSX/``): not a document of a folder or archive. ``./`` parts (tar's ``./a.txt``) and
    ``\\`` separators are allowed for. Pass names relative to the folder or archive, never absolute paths."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    return "__MACOSX" in parts or any(part.startswith(".") for part in parts)


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` lies strictly inside ``folder`` (both with ``~`` expanded and links resolved)."""
    return Path(folder).expanduser().resolve() in Path(path).expanduser().resolve().parents


def refuse_output_over_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike],
                             option: str = "--output") -> None:
    """Refuse writing ``output`` where it would replace one of ``inputs`` (the same file, under any name) or fall
    inside an input folder (a corpus folder, a model run): the records read would be lost, a gold corpus replaced by
    predictions or weak labels, a run's file damaged, or the output read as input by the next run over the folder."""
    target = Path(output).expanduser()
    for source in inputs:
        source = Path(source).expanduser()
        same = (os.path.samefile(source, target) if source.exists() and target.exists()
                else source.resolve() == target.resolve())
        if same:
            raise ConfigError(f"{option} {output} is the input {source}: writing it would replace what was read",
                              field=option, fix="write to another file")
        if source.is_dir() and is_inside(target, source):
            raise ConfigError(f"{option} {output} is inside the input folder {source}: it could replace a file "
                              "read from there, and would be read as input the next time", field=option,
                              fix="write outside that folder")


def share_like_other_files(paths: Iterable[str | os.PathLike]) -> None:
    """Give ``paths`` the permissions the umask gives any new file: safetensors writes its files owner-only
    (0600), so colleagues who can read a run's config could not load its weights."""
    mask = os.umask(0)
    os.umask(mask)
    for path in paths:
        os.chmod(path, 0o666 & ~mask)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary binary file beside ``path``, fsync it and rename it to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was; a folder at ``path`` is refused
    first (the rename would fail naming the temporary file)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")  # beside the target: cleanups that own it see it
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # no temporary file (its folder is missing or a file): nothing to remove
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename == str(tmp):  # name the file asked for, not the temporary one
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        raise
    sync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text, written atomically (see :func:`atomic_write`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sync_folder(folder: str | os.PathLike) -> None:
    """fsync a folder, so that renames inside it are on disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_TMP = ".tmp-"  # a folder being written by publish_folder: .NAME.tmp-HOST-PID
_OLD = ".old-"  # the folder it replaces, moved aside for the moment of the swap: .NAME.old-HOST-PID


def publish_folder(target: str | os.PathLike, write: Callable[[Path], None], *,
                   replace: Callable[[Path], bool] | None = None) -> bool:
    """Call ``write(folder)`` on a temporary folder beside ``target``, then rename it to ``target``: readers see
    the whole folder or none. The temporary folder is named by host and process, so concurrent writers never
    touch each other's, and the next writer on this host removes those of processes that died while writing.

    When ``target`` already exists once the new folder is written, ``replace(target)`` decides: True moves the
    existing folder aside, renames the new one in and deletes the old one; False (or no ``replace``: the folder
    is another process's finished copy) keeps it and drops the new one. Returns whether the new folder was
    published. A failed write leaves ``target`` as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for marker in (_TMP, _OLD):
        for stale in target.parent.glob(glob.escape(f".{target.name}{marker}") + "*"):
            if local_writer_died(stale.name):
                shutil.rmtree(stale, ignore_errors=True)
    writer = f"{socket.gethostname()}-{os.getpid()}"
    tmp = target.parent / f".{target.name}{_TMP}{writer}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    aside = None
    try:
        write(tmp)
        if target.exists():
            if replace is None or not replace(target):
                return False
            aside = target.parent / f".{target.name}{_OLD}{writer}"
            os.rename(target, aside)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.exists():
                if aside is not None:
                    os.rename(aside, target)  # the old folder back in place
                raise
            return False  # another writer renamed theirs first
        sync_folder(target.parent)
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


_ATOMIC_TMP = re.compile(r"(?P<name>.+)\.tmp\d+")  # atomic_write's NAME.tmpPID


def written_name(name: str) -> str:
    """The entry a leftover of a killed write stands for: ``NAME`` of :func:`atomic_write`'s ``NAME.tmpPID`` and of
    :func:`publish_folder`'s ``.NAME.tmp-HOST-PID`` / ``.NAME.old-HOST-PID``; any other name as it is."""
    for marker in (_TMP, _OLD):
        if name.startswith(".") and marker in name:
            return name[1:].split(marker)[0]
    match = _ATOMIC_TMP.fullmatch(name)
    return match.group("name") if match else name


def local_writer_died(name: str) -> bool | None:
    """For a temporary or aside folder named like :func:`publish_folder`'s (``.NAME.tmp-HOST-PID``,
    ``.NAME.old-HOST-PID``): True when its writer was a process of this host that no longer runs, False when it
    still runs, None when the name gives no writer of this host (another host, or another naming)."""
    marker = _TMP if _TMP in name else _OLD
    host, _, pid = name.rpartition(marker)[2].rpartition("-")
    if marker not in name or host != socket.gethostname() or not pid.isdigit():
        return None
    return not process_alive(pid)


def process_alive(pid: str | int) -> bool:
    """Whether process ``pid`` of this host runs (a process of another user counts; a non-number does not)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process
        return True
    return True

"""Archives of batch inputs (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``), read member
by member, never extracted to disk; members are taken in the archive's own order (zip central directory, tar
stream).

Safety: members with absolute paths or ``..`` components, links, devices/FIFOs, encrypted, nested archives,
members over ``max_member_bytes``, members whose (declared or actual) size exceeds ``max_ratio`` times their
compressed size, and whatever follows once an archive has produced ``max_total_bytes`` are rejected and
reported. Members are read into memory (at most ``max_member_bytes`` each), so a zip member's CRC is checked
before any of its records is used.

Record ids of ``.txt`` members are their paths without ``.txt``; in a zip archive whose members all sit in one
top-level folder (``zip -r notes.zip notes/``) that folder is left out, so a record has the same id as when the
folder is given itself (:func:`common_folder`). A tar stream cannot be seen whole before it is read, so its ids
keep the full member path. The ``key`` and ``source`` of every row always name the archive and the member.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import stat
import tarfile
import zipfile
import zlib
from typing import IO, Iterator

from medner.batch.formats import archive_kind, parquet_items, strip_txt, table_items, text_kind, txt_item
from medner.batch.items import ArchiveLimits, Item, MiB, ReadOptions, ReadStats, Source, fail, printable
from medner.files import not_a_record


def unsafe_member_name(name: str) -> str | None:
    """Why a member name is unsafe (absolute path, drive letter, ``..`` component, NUL), or None."""
    norm = name.replace("\\", "/")
    if "\x00" in norm:
        return "NUL character in the member name"
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "absolute member path"
    if ".." in norm.split("/"):
        return "`..` component in the member path"
    return None


def common_folder(names: list[str]) -> str:
    """``"folder/"`` when every member name starts with the same top-level folder (what ``zip -r x.zip folder``
    writes), else ``""``: stripped from ``.txt`` record ids, so a record has the same id whether the folder was
    given as it is or zipped. Hidden members and the ``__MACOSX/`` metadata a Mac adds are not read and do not
    count; ``\\`` separators (zips made on Windows) are ``/``."""
    names = [n.replace("\\", "/") for n in names if not not_a_record(n)]
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return tops.pop() + "/"
    return ""


def _member_item_stream(data: bytes, name: str, kind: str, source: Source, options: ReadOptions,
                        stats: ReadStats, prefix: str = "") -> Iterator[Item]:
    if kind == "txt":
        while name.startswith("./"):  # tar -C folder . : ./a.txt has the id a, as in the folder
            name = name[2:]
        yield txt_item(data, source, strip_txt(name[len(prefix):] if name.startswith(prefix) else name), options,
                       stats)
    elif kind == "parquet":
        yield from parquet_items(io.BytesIO(data), source, options, stats)
    else:
        yield from table_items(kind, io.BufferedReader(io.BytesIO(data)), source, options, stats)


def _member_kind(name: str, source: Source, options: ReadOptions, stats: ReadStats) -> tuple[str | None, Item | None]:
    if not_a_record(name):  # passed over without a count, as a folder's hidden entries are
        return None, None
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if archive_kind(base) is not None:
        return None, fail(source, "nested_archive", "an archive inside an archive is not read; extract it and "
                                                     "pass it as an input")
    kind = text_kind(base, options.input_format)
    if kind is None:
        stats.skip(source.key)
        return None, None
    return kind, None


def zip_items(fh: IO[bytes], label: str, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    """Items of the zip archive open as ``fh`` (a seekable binary file), named ``label``."""
    limits = options.limits
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        yield fail(Source(label), "corrupt", f"not a readable zip archive ({type(exc).__name__})")
        return
    total = 0
    with zf:
        prefix = common_folder([info.filename for info in zf.infolist() if not info.is_dir()])
        for info in zf.infolist():
            name = info.filename
            if info.is_dir():
                continue
            source = Source(label, printable(name))
            unsafe = unsafe_member_name(name)
            if unsafe:
                yield fail(source, "unsafe_path", unsafe)
                continue
            ftype = stat.S_IFMT(info.external_attr >> 16)
            if ftype == stat.S_IFLNK:
                yield fail(source, "link", "symbolic link member")
                continue
            if ftype and ftype != stat.S_IFREG:
                yield fail(source, "special_file", f"non-regular member (mode {oct(ftype)})")
                continue
            kind, failure = _member_kind(name, source, options, stats)
            if failure is not None:
                yield failure
            if kind is None:
                continue
            if info.flag_bits & 0x1:
                yield fail(source, "encrypted", "encrypted member")
                continue
            size = info.file_size
            if size > limits.max_member_bytes:
                yield fail(source, "member_too_large", f"{size} bytes > max_member_bytes {limits.max_member_bytes}")
                continue
            if size > limits.ratio_min_bytes and size > limits.max_ratio * max(info.compress_size, 1):
                yield fail(source, "ratio_exceeded", f"{size} bytes from {info.compress_size} compressed "
                                                      f"(ratio > {limits.max_ratio:g})")
                continue
            if total + size > limits.max_total_bytes:
                yield fail(source, "total_exceeded", f"archive content over max_total_bytes "
                                                      f"{limits.max_total_bytes}")
                continue
            try:
                data = _read_limited(zf.open(info), min(size, limits.max_member_bytes), info.compress_size, limits)
            except _LimitExceeded as exc:
                yield fail(source, exc.reason, str(exc))
                continue
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
                yield fail(source, "corrupt", f"cannot read the member ({type(exc).__name__}: bad CRC, "
                                               f"truncated or unsupported compression)")
                continue
            total += len(data)
            yield from _member_item_stream(data, printable(name.replace("\\", "/")), kind, source, options, stats,
                                           printable(prefix))


class _LimitExceeded(Exception):
    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def _read_limited(fh: IO[bytes], declared: int, compressed: int, limits: ArchiveLimits) -> bytes:
    """Read a member, refusing more bytes than declared or allowed (sizes in headers can lie)."""
    cap = min(declared, limits.max_member_bytes)
    chunks, got = [], 0
    with fh:
        while True:
            chunk = fh.read(min(MiB, cap + 1 - got))
            if not chunk:
                break
            got += len(chunk)
            if got > cap:
                if got > limits.max_member_bytes:
                    raise _LimitExceeded("member_too_large", f"more than max_member_bytes "
                                                             f"{limits.max_member_bytes} bytes")
                raise _LimitExceeded("corrupt", f"more bytes than the declared size {declared}")
            if got > limits.ratio_min_bytes and got > limits.max_ratio * max(compressed, 1):
                raise _LimitExceeded("ratio_exceeded", f"{got}+ bytes from {compressed} compressed "
                                                       f"(ratio > {limits.max_ratio:g})")
            chunks.append(chunk)
    return b"".join(chunks)


def _decompressed(fh: IO[bytes]) -> IO[bytes]:
    """The tar bytes of ``fh``: gzip/bz2/xz by magic number (their readers raise on truncation), else raw."""
    magic = fh.read(6)
    fh.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=fh, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(fh, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(fh, "rb")
    return fh


def tar_items(fh: IO[bytes], label: str, size: int, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    """Items of the tar archive (maybe compressed) open as ``fh``, of ``size`` bytes, named ``label``."""
    limits = options.limits
    compressed = max(size, 1)
    try:
        raw = _decompressed(fh)
        # streaming: members in stream order, never seeks, never extracts
        tf = tarfile.open(fileobj=raw, mode="r|")
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
        yield fail(Source(label), "corrupt", f"not a readable tar archive ({type(exc).__name__})")
        return
    last = None
    with tf, raw:
        members = iter(tf)
        while True:
            try:
                member = next(members)
            except StopIteration:
                member = None
                try:  # a truncated gzip/bz2/xz stream only shows at its end: read to the end-of-stream marker
                    while raw.read(MiB):
                        pass
                except (OSError, EOFError, zlib.error, ValueError) as exc:
                    yield fail(Source(label, last), "corrupt", f"archive truncated after member {last!r} "
                                                               f"({type(exc).__name__})")
                return
            except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
                after = f" after member {last!r}" if last else ""
                yield fail(Source(label, last), "corrupt", f"tar stream broken{after} ({type(exc).__name__}); the "
                                                           f"rest of the archive is skipped")
                return
            name = printable(member.name)
            last = name
            if member.isdir():
                continue
            source = Source(label, name)
            end = member.offset_data + member.size
            if end > limits.max_total_bytes:
                yield fail(source, "total_exceeded", f"archive content over max_total_bytes {limits.max_total_bytes}; "
                                                      f"the rest of the archive is skipped")
                return
            if end > limits.ratio_min_bytes and end > limits.max_ratio * compressed:
                yield fail(source, "ratio_exceeded", f"{end} bytes from a {compressed}-byte archive (ratio > "
                                                      f"{limits.max_ratio:g}); the rest of the archive is skipped")
                return
            unsafe = unsafe_member_name(member.name)
            if unsafe:
                yield fail(source, "unsafe_path", unsafe)
                continue
            if member.issym() or member.islnk():
                yield fail(source, "link", "symbolic link member" if member.issym() else "hard link member")
                continue
            if not member.isfile():
                yield fail(source, "special_file", "device, FIFO or other non-regular member")
                continue
            kind, failure = _member_kind(name, source, options, stats)
            if failure is not None:
                yield failure
            if kind is None:
                continue
            if member.size > limits.max_member_bytes:
                yield fail(source, "member_too_large", f"{member.size} bytes > max_member_bytes "
                                                        f"{limits.max_member_bytes}")
                continue
            try:
                fh = tf.extractfile(member)
                data = _read_limited(fh, member.size, compressed, ArchiveLimits(
                    limits.max_member_bytes, limits.max_total_bytes, float("inf"), limits.ratio_min_bytes)) \
                    if fh is not None else b""
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                yield fail(source, "corrupt", f"cannot read the member ({type(exc).__name__}); the rest of the "
                                               f"archive is skipped")
                return
            yield from _member_item_stream(data, name, kind, source, options, stats)

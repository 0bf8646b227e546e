"""Batch inputs -> one deterministic stream of :class:`Item` (a record to annotate, or a failure).

Inputs, in command-line order:
    a folder        walked recursively, entries sorted by relative path (symlinked folders not followed,
                    hidden entries skipped); every supported file in it is read as below
    ``.txt``        one record per file; id = path relative to the folder (or the stem) without ``.txt``
    ``.jsonl``      one JSON object per line; ``id_field``/``text_field`` name the keys
    ``.csv/.tsv``   header row, then one record per row; same column options
    ``.parquet``    one record per row; same column options (text may be string or binary)
    ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` (also ``.tar.bz2``, ``.tar.xz``)
                    archives of the above, read member by member (never extracted to disk); members are
                    taken in the archive's own order (zip central directory, tar stream)
``input_format`` other than ``auto`` reads every file named as an input (not an archive) as that format whatever
its suffix (``notes.json``), and every file of the suffixes above in folders and archives (e.g. CCKS 2019 ``.txt``
files that hold JSON lines). Files of other suffixes in folders and archives are skipped and counted.

Every record gets a stable :attr:`Source.key` (``path!member:line`` or ``path!member#row``) so a resumed run
can tell records apart; the same inputs always give the same stream in the same order. Keys are unique: a key
seen before in the stream gets ``~2``, ``~3``, ... and repeated record ids are counted
(:mod:`medner.batch.unique`). File and member names that are not valid UTF-8 appear with ``\\xNN`` escapes.

Only regular files are read (checked after following links, on the open file): FIFOs, sockets, devices and
links to them in a folder become ``special_file`` failures, unreadable files and folders ``corrupt`` ones, a
file reached twice through links ``duplicate_file``, and a link into the output folder ``inside_output``. As
inputs on the command line, non-regular files, paths given twice and inputs inside other inputs are refused
(:func:`check_inputs`); :func:`check_overlap` refuses inputs and an output folder that overlap. Every read is
bounded while it happens (a ``.txt`` file at ``max_record_bytes``, a JSONL line or CSV row a little above it).

Encodings: :mod:`medner.batch.encodings`; formats: :mod:`medner.batch.formats`; archives and their safety
limits: :mod:`medner.batch.archives`; items and failure reasons: :mod:`medner.batch.items`.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import IO, Iterator, Sequence

from medner.batch.archives import tar_items, zip_items
from medner.batch.formats import archive_kind, parquet_items, strip_txt, table_items, text_kind, txt_item
from medner.batch.items import Item, ReadOptions, ReadStats, Source, fail, printable
from medner.batch.unique import DigestSet, Unique, digest
from medner.errors import CorpusError

log = logging.getLogger(__name__)

_FILE_TYPES = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder"}


def file_type(mode: int) -> str:
    """``a FIFO``, ``a socket``, ... for a non-regular ``st_mode``."""
    return _FILE_TYPES.get(stat.S_IFMT(mode), f"a special file (mode {oct(stat.S_IFMT(mode))})")


class NotRegular(OSError):
    """The path is (or links to) a FIFO, socket, device or folder; ``kind`` says which."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}, not a regular file")


def open_regular(path: str | os.PathLike) -> tuple[IO[bytes], os.stat_result]:
    """``(binary file, stat)`` of a regular file, links followed; raises :class:`NotRegular` for anything else.

    The type is checked before opening (a device is never opened) and again on the open file, which is opened
    non-blocking, so a path swapped for a FIFO in between cannot hang the reader.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegular(file_type(st.st_mode))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(file_type(st.st_mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


def _listing(folder: Path) -> tuple[list[Path], list[OSError]]:
    """Files under ``folder`` sorted by relative path (hidden entries and symlinked folders skipped), and the
    sub-folders that could not be listed."""
    problems: list[OSError] = []
    files = []
    for root, dirs, names in os.walk(folder, followlinks=False, onerror=problems.append):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(root) / name for name in names if not name.startswith(".")]
    # os.walk yields a folder's files before its sub-folders; sort the whole listing by relative path instead
    files.sort(key=lambda p: p.relative_to(folder).as_posix())
    problems.sort(key=lambda exc: str(exc.filename))
    return files, problems


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(path))


def check_inputs(inputs: Sequence[str | os.PathLike], options: ReadOptions) -> list[Path]:
    """The inputs as paths; a missing, non-regular or unsupported input, or one given twice (also as a file
    inside a folder given too) is a :class:`CorpusError`."""
    if not inputs:
        raise CorpusError("no input given", fix="pass folders, .txt/.jsonl/.csv/.parquet files or archives")
    paths: list[Path] = []
    reals: list[tuple[Path, Path, bool]] = []
    for raw in inputs:
        path = Path(raw)
        try:
            st = path.stat()
        except OSError as exc:
            if path.is_symlink():
                raise CorpusError("a link to nothing", where=str(path), fix="check the input path") from None
            if isinstance(exc, FileNotFoundError):
                raise CorpusError("no such file or folder", where=str(path), fix="check the input path") from None
            raise CorpusError(f"cannot read the input: {exc.strerror or type(exc).__name__}", where=str(path),
                              fix="check the input path and its permissions") from None
        is_dir = stat.S_ISDIR(st.st_mode)
        if not is_dir and not stat.S_ISREG(st.st_mode):
            raise CorpusError(f"{file_type(st.st_mode)}, not a regular file or folder", where=str(path),
                              fix="pass files and folders; FIFOs, sockets and devices are not read")
        if not is_dir and archive_kind(path.name) is None and text_kind(path.name, options.input_format) is None:
            if options.input_format == "auto":
                raise CorpusError("unsupported input file type", where=str(path),
                                  fix="use .txt, .jsonl, .csv, .tsv, .parquet, .zip, .tar or .tar.gz, "
                                      "or force a reader with --input-format")
        real = _real(path)
        for other, other_real, other_dir in reals:
            if real == other_real:
                raise CorpusError("input given twice", where=str(path), fix="pass each input once")
            if other_dir and _within(real, other_real):
                raise CorpusError(f"input inside another input ({other}): its records would be read twice",
                                  where=str(path), fix="pass the folder or what is inside it, not both")
            if is_dir and _within(other_real, real):
                raise CorpusError(f"input holds another input ({other}): its records would be read twice",
                                  where=str(path), fix="pass the folder or what is inside it, not both")
        reals.append((path, real, is_dir))
        paths.append(path)
    return paths


def check_overlap(inputs: Sequence[Path], out: str | os.PathLike) -> None:
    """Refuse an output folder that is, holds or lies inside an input (real paths, links followed)."""
    out_real = _real(out)
    for path in inputs:
        real = _real(path)
        if _within(real, out_real):
            raise CorpusError(f"the input is inside the output folder {out}", where=str(path),
                              fix="choose an --out outside every input, and keep inputs out of output folders")
        if path.is_dir() and _within(out_real, real):
            raise CorpusError(f"the output folder {out} is inside this input folder: the run would read its own "
                              f"output", where=str(path), fix="choose an --out outside every input")


def inputs_fingerprint(inputs: Sequence[Path]) -> list[dict]:
    """Per input: path, kind and a digest of (relative path, size, mtime) of every file it holds.

    Stored in the ledger so that resuming over changed inputs is refused instead of silently mixing them.
    """
    out = []
    for path in inputs:
        h = hashlib.sha256()
        files = _listing(path)[0] if path.is_dir() else [path]
        for f in files:
            rel = f.relative_to(path).as_posix() if path.is_dir() else f.name
            try:
                st = f.stat()
            except OSError:  # a broken link, or no access: its name still counts
                try:
                    st = f.lstat()
                except OSError:  # gone since it was listed
                    h.update(f"{rel}\0gone\n".encode("utf-8", "surrogateescape"))
                    continue
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        out.append({"path": str(path), "files": len(files), "digest": h.hexdigest()[:16]})
    return out


COUNT_LIMIT_BYTES = 4 << 30  # inputs larger than this are not counted up front (the bar then has no total)


def count_items(inputs: Sequence[Path], options: ReadOptions) -> int | None:
    """About how many items :func:`iter_items` will yield, cheaply, for a progress total; None when unknown.

    ``.txt`` files count one each, JSONL/CSV their non-blank lines (less a CSV header: quoted line breaks make
    this an estimate), Parquet its row count from the file's metadata, zip archives their ``.txt`` members.
    Tar archives, other archive members, unreadable files and inputs over :data:`COUNT_LIMIT_BYTES` give None.
    Reads only sizes, metadata and lines; never keeps text."""
    files = [f for path in inputs for f in (_listing(path)[0] if path.is_dir() else [path])]
    try:
        if sum(f.stat().st_size for f in files) > COUNT_LIMIT_BYTES:
            return None
        return sum(_count_file(f, options) for f in files)
    except (OSError, ValueError, _Unknown):
        return None


class _Unknown(Exception):
    """The item count of a file cannot be known cheaply."""


def _count_file(path: Path, options: ReadOptions) -> int:
    archive = archive_kind(path.name)
    if archive == "zip":
        import zipfile  # start-up time: only zip inputs

        with zipfile.ZipFile(path) as zf:
            kinds = [text_kind(info.filename, options.input_format) for info in zf.infolist() if not info.is_dir()]
        if any(kind not in ("txt", None) for kind in kinds):
            raise _Unknown(path)
        return kinds.count("txt")
    if archive is not None:
        raise _Unknown(path)
    kind = text_kind(path.name, options.input_format)
    if kind is None:
        return 0
    if kind == "txt":
        return 1
    if kind == "parquet":
        import pyarrow.parquet as pq  # start-up time: only Parquet inputs need pyarrow

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as fh:
        lines = sum(1 for line in fh if line.strip())
    return max(0, lines - 1) if kind == "csv" else lines


def iter_items(inputs: Sequence[str | os.PathLike], options: ReadOptions | None = None,
               stats: ReadStats | None = None, *, avoid: str | os.PathLike | None = None) -> Iterator[Item]:
    """The deterministic item stream of ``inputs`` (see module docstring); files that resolve into ``avoid``
    (the output folder) are not read."""
    options = options or ReadOptions()
    stats = stats if stats is not None else ReadStats()
    unique = Unique(stats)
    files = _Files(options, stats, _real(avoid) if avoid is not None else None)
    for path in check_inputs(inputs, options):
        if path.is_dir():
            listed, problems = _listing(path)
            for file in listed:
                rel = file.relative_to(path).as_posix()
                yield from unique.items(files.items(file, printable(strip_txt(rel))))
            for exc in problems:
                where = Source(printable(str(exc.filename or path)))
                yield unique.one(fail(where, "corrupt", f"cannot list the folder: "
                                                        f"{exc.strerror or type(exc).__name__}"))
        else:
            yield from unique.items(files.items(path, printable(strip_txt(path.name)), named=True))


class _Files:
    """Reads one input file after the checks of the module docstring."""

    def __init__(self, options: ReadOptions, stats: ReadStats, avoid: Path | None) -> None:
        self.options = options
        self.stats = stats
        self.avoid = avoid
        self.seen = DigestSet()  # (device, inode) of files read

    def items(self, path: Path, txt_id: str, *, named: bool = False) -> Iterator[Item]:
        """The items of one file; ``named``: given on the command line, so a forced ``input_format`` reads it
        whatever its suffix (in a folder, files of other suffixes are skipped and counted)."""
        options, stats = self.options, self.stats
        label = printable(str(path))
        source = Source(label)
        archive = archive_kind(path.name)
        kind = None if archive else text_kind(path.name, options.input_format)
        if kind is None and archive is None and named and options.input_format != "auto":
            kind = options.input_format
        if archive is None and kind is None:
            stats.skip(label)
            log.debug("skipped %s (unsupported file type)", label)
            return
        if self.avoid is not None and os.path.islink(path) and _within(_real(path), self.avoid):
            yield fail(source, "inside_output", "a link into the output folder; not read")
            return
        try:
            fh, st = open_regular(path)
        except NotRegular as exc:
            yield fail(source, "special_file", f"{exc.kind} (links followed), not a regular file; not read")
            return
        except OSError as exc:
            yield fail(source, "corrupt", f"cannot open the file: {exc.strerror or type(exc).__name__}")
            return
        with fh:
            if not self.seen.add(digest(f"{st.st_dev}:{st.st_ino}")):
                yield fail(source, "duplicate_file", "the same file (device and inode) as an earlier input file, "
                                                     "reached again through a link; its records are read once, "
                                                     "under the earlier path")
                return
            try:
                if archive == "zip":
                    yield from zip_items(fh, label, options, stats)
                elif archive == "tar":
                    yield from tar_items(fh, label, st.st_size, options, stats)
                elif kind == "txt":
                    yield self._txt(fh, st, source, txt_id)
                elif kind == "parquet":
                    yield from parquet_items(fh, source, options, stats)
                else:
                    yield from table_items(kind, fh, source, options, stats)
            except OSError as exc:
                yield fail(source, "corrupt", f"cannot read the file: {exc.strerror or type(exc).__name__}")

    def _txt(self, fh: IO[bytes], st: os.stat_result, source: Source, txt_id: str) -> Item:
        limit = self.options.max_record_bytes
        if st.st_size > limit:
            return fail(source, "too_long", f"{st.st_size} bytes cannot hold <= {self.options.max_record_chars} "
                                            f"characters", txt_id)
        data = fh.read(limit + 1)  # bounded even if the file grows while it is read
        return txt_item(data, source, txt_id, self.options, self.stats)

"""One loader per source kind; each returns a :class:`LoadResult` (entries + row accounting).

Kinds (``kind:`` in a lexicon config, see :mod:`medner.lexicon.build`):

``icd10_xlsx``
    国家临床版 ICD-10 workbook, sheet ``全部``, columns ``主要编码``, ``附加编码``, ``疾病名称``.
``icd9cm3_xlsx``
    国家临床版 ICD-9-CM-3 workbook, sheet ``所有条目``, columns ``主要编码``, ``附加编码``, ``手术名称``,
    ``类别`` (手术 / 治疗性操作 / 诊断性操作 / 介入治疗; ``category_labels`` maps them to labels).
``csv``
    delimited ``code,name`` with a header (北京临床版 v6.01: BOM, ``code,disease``); the delimiter is
    sniffed unless given; ``encoding`` defaults to ``utf-8-sig`` (a BOM is accepted); codes are kept as written
    unless ``code_format: dotted`` (WHO ``A000`` -> ``A00.0``).
``po``
    gettext catalogue read with polib (gnuhealth ``zh_CN.po``): the code is the end of ``msgctxt``
    (``model:gnuhealth.pathology,name:J155``), the name is ``msgstr``; fuzzy, untranslated and obsolete
    entries and other contexts are skipped and counted; ``code_format: dotted`` (the default) dots WHO codes.
``list``
    one term a line with the label from the config; ``#`` starts a comment; a second column (THUOCL's
    document frequency, after a tab or two or more spaces) is ignored; a single space belongs to the term
    (``维生素B 12``).
``tsv``
    the project's own lexicon format (:mod:`medner.lexicon.store`).

Columns are found by header name, never by position. In the xlsx loaders the code is ``主要编码``; when
``主要编码`` is empty (ICD-10 chapters such as B95-B97, V01-Y98, asterisk-only and morphology rows) it is
``附加编码``; when ``附加编码`` holds an asterisk code the pair is written in the Beijing form
``A01.000x003+G01*`` (a leading ``†`` in either column is dropped); a morphology ``附加编码`` is not kept.

Every loader but ``list`` takes ``exclude_codes`` (a regex searched in the code): matching rows are
skipped and counted (``configs/lexicon_zh.yaml`` drops ICD-10 chapters R, V-Z this way). A "term" with
no letter at all (``21``, ``8-11``, ``Ⅲ``) or made only of Roman numerals (``II``, ``IV``) is a
``not_a_term`` bad row (the crawled drug list has such rows).

Duplicates within one source: the same term with the same code is merged; the same term whose codes
refine one another (``A00`` / ``A00.901``: one is a prefix of the other, ignoring dots and marks) is merged
keeping the more specific code; the same term with unrelated codes (``肝细胞癌`` ``C22.000`` and
``M81700/3``) is a ``conflicting_duplicate`` bad row and the first row wins.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from medner.decoding import utf8_declared_gb
from medner.errors import LexiconError, location
from medner.lexicon.codes import code_pattern as _code_pattern
from medner.lexicon.codes import dotted_icd10, is_valid_code, normalise_code
from medner.lexicon.entry import BadRow, LexiconEntry, LoadReport, LoadResult

__all__ = [
    "LOADERS",
    "load_icd10_xlsx",
    "load_icd9cm3_xlsx",
    "load_xlsx",
    "load_csv",
    "load_po",
    "load_list",
    "load_project_tsv",
]

log = logging.getLogger(__name__)

_SPACE = re.compile(r"\s+")
# no letter at all ("21", "8-11", "Ⅲ") or only Roman numerals ("II", "IV"): list noise, not a term
_NOT_A_TERM = re.compile(r"^(?:[\d\W_\u2160-\u217f]*|[IVXivx]+)$")
#: how a bad row may be passed over, for a source of a build config (a lexicon file read strictly has its own)
LENIENT = "set `strict: false` for this source to skip such rows"


#: the longest name (and code) a bad row's message shows; a longer one is given by its length: a lexicon term is
#: short, a longer "name" is more likely record text (a corpus given as a lexicon), which no message may hold
SHOWN_TERM_LENGTH = 32
SHOWN_CODE_LENGTH = 24


def _shown(value: str, what: str = "name", limit: int = SHOWN_TERM_LENGTH) -> str:
    """``value`` quoted for a message when short and without a tab, else its length: ``a name of 85 characters``."""
    if len(value) <= limit and "\t" not in value:
        return repr(value)
    return f"a {what} of {len(value)} characters"


def clean_term(value: Any) -> str:
    """A cell value as a term: str, stripped, inner whitespace runs collapsed to one space."""
    if value is None:
        return ""
    return _SPACE.sub(" ", str(value)).strip()


def _code_key(code: str) -> str:
    """Comparable form of a code for the refinement test: first code of a pair, letters and digits only."""
    first = code.split("+")[0]
    return re.sub(r"[^0-9A-Za-z]", "", first).upper()


class _Collector:
    """Validates rows, merges duplicates and fills the report; raises at the first bad row when strict."""

    def __init__(self, path: str | PathLike, source: str, label: str | None, *, strict: bool | None,
                 code_system: str = "none", code_regex: str | None = None, require_code: bool = False,
                 exclude_codes: str | None = None, lenient: str = LENIENT) -> None:
        self.path = str(path)
        self.label = label
        self.strict = strict
        self.lenient = lenient  # the second half of a bad row's fix: how to pass it over
        self.require_code = require_code
        try:
            self.pattern = _code_pattern(code_system, code_regex)
        except ValueError as exc:
            raise LexiconError(str(exc), where=self.path, field="code_system",
                               fix="use icd10, icd9cm3 or none, or a valid `code_pattern`") from None
        self.code_system = code_system if not code_regex else "custom"
        try:
            self.exclude = re.compile(exclude_codes) if exclude_codes else None
        except re.error as exc:
            raise LexiconError(f"invalid regular expression {exclude_codes!r}: {exc}", where=self.path,
                               field="exclude_codes", fix="write a Python regex such as ^[RVWXYZ]") from None
        self.report = LoadReport(source=source, path=self.path)
        self._entries: list[LexiconEntry] = []
        self._by_term: dict[tuple[str, str], int] = {}

    def row(self) -> None:
        self.report.rows += 1

    def skip(self, reason: str) -> None:
        self.report.skipped[reason] += 1

    def bad(self, line: int | None, kind: str, field: str, message: str, fix: str = "correct the row") -> None:
        where = location(self.path, line)
        if self.strict:
            raise LexiconError(message, where=where, field=field, fix=f"{fix}, or {self.lenient}")
        self.report.bad.append(BadRow(where=where, kind=kind, field=field, message=message))

    def refuse(self, line: int | None, kind: str, field: str, message: str, fix: str) -> None:
        """A bad row that may hide others (a stray quote): an error unless the source set `strict: false`
        (``strict`` None: not set), then a bad row like any other."""
        if self.strict is None:
            raise LexiconError(message, where=location(self.path, line), field=field, fix=f"{fix}, or {self.lenient}")
        self.bad(line, kind, field, message, fix)

    def add(self, line: int | None, term: Any, code: Any, *, label: str | None = None, canonical: str = "",
            term_field: str = "name", code_field: str = "code") -> None:
        """Validate one row and keep, merge or reject it."""
        term = clean_term(term)
        code = normalise_code(clean_term(code), self.code_system) or None
        label = label or self.label
        if not term:
            self.bad(line, "empty_name", term_field, "empty name")
            return
        if "\t" in term or len(term) > 200:
            tab = "holds a tab" if "\t" in term else "is too long for a term"
            self.bad(line, "malformed_row", term_field, f"the name ({len(term)} characters) {tab}: a record, or "
                     "columns read as one?", fix="check the source's kind and delimiter, or correct the row")
            return
        if _NOT_A_TERM.match(term):
            self.bad(line, "not_a_term", term_field, f"{_shown(term)} has no letters (a number, numeral or mark)",
                     fix="remove the row")
            return
        if code is None and self.require_code:
            self.bad(line, "malformed_code", code_field, f"missing code for {_shown(term)}")
            return
        if code is not None and not is_valid_code(code, self.pattern):
            self.bad(line, "malformed_code", code_field,
                     f"malformed {self.code_system} code {_shown(code, 'code', SHOWN_CODE_LENGTH)} for {_shown(term)}")
            return
        if code is not None and self.exclude is not None and self.exclude.search(code):
            self.skip("excluded code")
            return
        if not label:
            self.bad(line, "malformed_row", "label", f"no label for {_shown(term)}",
                     fix="give the source a `label` in the config, or fill the label column")
            return
        key = (term, label)
        index = self._by_term.get(key)
        if index is None:
            self._by_term[key] = len(self._entries)
            self._entries.append(LexiconEntry(term, label, code, canonical or term, self.report.source))
            return
        kept = self._entries[index]
        if kept.code == code or code is None:
            self.report.merged += 1
            return
        if kept.code is None:
            self._entries[index] = LexiconEntry(term, label, code, kept.canonical, kept.source)
            self.report.merged += 1
            return
        old, new = _code_key(kept.code), _code_key(code)
        if new.startswith(old) or old.startswith(new):
            if len(new) > len(old):  # keep the more specific code
                self._entries[index] = LexiconEntry(term, label, code, kept.canonical, kept.source)
            self.report.merged += 1
            return
        self.bad(line, "conflicting_duplicate", code_field,
                 f"{_shown(term)} has code {_shown(code, 'code', SHOWN_CODE_LENGTH)} here but "
                 f"{_shown(kept.code, 'code', SHOWN_CODE_LENGTH)} in an earlier row",
                 fix="give the term one code (or mark one row as an alias)")

    def result(self, level: int = logging.INFO) -> LoadResult:
        self.report.loaded = len(self._entries)
        assert self.report.balanced(), self.report
        self.report.log(log, level)
        return LoadResult(entries=list(self._entries), report=self.report)


_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .\-]{0,31}")


def _headers_found(cells: list[str], known: Iterable[str] = ()) -> str:
    """The header cells for an error message: those that read as a column name (ASCII, or one of the ``known``
    names), the others counted, not shown: a first row that is no header (a record file given by mistake, a
    tagged corpus) may be record text."""
    names = set(known)
    shown = [c for c in cells if c in names or _COLUMN_NAME.fullmatch(c)]
    hidden = len(cells) - len(shown)
    return f"headers found: {shown}" + (f" and {hidden} other cell(s), not shown in case the file holds record text "
                                        f"(look at its first rows yourself)" if hidden else "")


def _resolve_columns(headers: list[str], wanted: Mapping[str, str | list[str] | None], where: str,
                     what: str, given: Collection[str] = ()) -> dict[str, int | None]:
    """Map logical column names to indices by header name; required names are those not ending in ``?``. For a
    name whose candidates are the loader's defaults (not in ``given``, the config's `columns`), two candidates
    present is an error: taking either silently may read the wrong column (``name`` beside ``疾病名称``)."""
    index = {h: i for i, h in reversed(list(enumerate(headers))) if h}
    out: dict[str, int | None] = {}
    missing: list[str] = []
    for key, names in wanted.items():
        optional = key.endswith("?")
        key = key.rstrip("?")
        if names is None:
            out[key] = None
            continue
        candidates = [names] if isinstance(names, str) else list(names)
        present = [n for n in candidates if n in index]
        if len(present) > 1 and key not in given and f"{key}?" not in given:
            raise LexiconError(f"{what} has {len(present)} columns that could be the {key} column: "
                               f"{', '.join(present)}", where=where, field="header",
                               fix=f"say which with `columns: {{{key}: {present[0]}}}` in the lexicon config")
        found = index[present[0]] if present else None
        if found is None and not optional:
            missing.append("/".join(candidates))
        out[key] = found
    if missing:
        known = [n for names in wanted.values() if names for n in ([names] if isinstance(names, str) else names)]
        raise LexiconError(f"{what} lacks column(s) {', '.join(missing)}; {_headers_found(headers, known)}",
                           where=where, field="header",
                           fix="point the config at the right sheet/file or name the columns with "
                               "`columns: {name: ..., code: ...}`")
    return out


# --------------------------------------------------------------------------------------------- xlsx
def load_xlsx(path: str | PathLike, *, source: str, label: str | None, sheet: str | None,
              columns: Mapping[str, Any], code_system: str, strict: bool = False,
              category_labels: Mapping[str, str | None] | None = None, code_pattern: str | None = None,
              exclude_codes: str | None = None, given: Collection[str] = (), **_: Any) -> LoadResult:
    """Read a sheet with openpyxl in read-only mode; columns by header name (``name``, ``code``,
    ``extra_code?``, ``category?``; ``given``: those the config named). Row numbers in reports are Excel row
    numbers (header = its own row).
    """
    import openpyxl  # local import: only xlsx sources need it

    path = Path(path)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise LexiconError("file not found", where=str(path), field="path",
                           fix="check `path` in the lexicon config") from None
    except Exception as exc:  # zipfile.BadZipFile, KeyError, InvalidFileException ...
        raise LexiconError(f"cannot open as an xlsx workbook ({type(exc).__name__}: {exc})", where=str(path),
                           field="path", fix="give an .xlsx file (not .xls/.csv) or change `kind`") from None
    try:
        if sheet is None:
            worksheet = workbook.worksheets[0]
        elif sheet in workbook.sheetnames:
            worksheet = workbook[sheet]
        else:
            raise LexiconError(f"no sheet {sheet!r}; sheets found: {workbook.sheetnames}", where=str(path),
                               field="sheet", fix="set `sheet:` to one of the sheets found")
        where_sheet = f"{path} sheet {worksheet.title}"
        collector = _Collector(f"{path}[{worksheet.title}]", source, label, strict=strict,
                               code_system=code_system, code_regex=code_pattern, exclude_codes=exclude_codes)
        rows = worksheet.iter_rows()  # cells, not values: a numeric code needs its number format
        header_row, headers = _find_header(rows, columns)
        if not any(headers):
            raise LexiconError("the sheet is empty", where=where_sheet, field="sheet",
                               fix="point `sheet:` at the sheet holding the codes")
        cols = _resolve_columns(headers, columns, where_sheet, f"the header row (row {header_row})", given)
        name_i, code_i = cols["name"], cols["code"]
        extra_i, cat_i = cols.get("extra_code"), cols.get("category")
        unmapped: Counter = Counter()
        for line, cells in enumerate(rows, start=header_row + 1):
            if not any(c.value not in (None, "") for c in cells):
                continue  # blank spreadsheet row: not a row
            collector.row()

            def cell(i: int | None) -> str:
                return clean_term(cells[i].value) if i is not None and i < len(cells) else ""

            def code_cell(i: int | None) -> str | None:
                if i is None or i >= len(cells):
                    return ""
                return code_text(cells[i].value, getattr(cells[i], "number_format", None))

            row_label = label
            if cat_i is not None and category_labels is not None:
                category = cell(cat_i)
                if not category:
                    collector.bad(line, "unknown_category", headers[cat_i],
                                  "empty category (a merged cell? only its first row holds the value)",
                                  fix="unmerge and fill the category cells")
                    continue
                if category not in category_labels:
                    unmapped[category] += 1  # keeps the source's label, named below
                else:
                    row_label = category_labels[category]
                    if row_label is None:
                        collector.skip(f"category {category}")
                        continue
            main, extra = code_cell(code_i), code_cell(extra_i)
            if main is None or extra is None:
                number = cells[code_i if main is None else extra_i].value
                collector.bad(line, "malformed_code", headers[code_i if main is None else extra_i],
                              f"the code cell holds the number {number!r}, which Excel may show otherwise "
                              f"(38.1 as 38.10)", fix="format the code column as text, or give it a number format "
                                                      "such as 00.00")
                continue
            collector.add(line, cell(name_i), _xlsx_code(main, extra), label=row_label, term_field=headers[name_i],
                          code_field=headers[code_i])
    finally:
        workbook.close()
    for category, n in unmapped.most_common():
        log.warning("%s: category %r is not in `category_labels`: its %d rows keep the label %r (map it, or null to "
                    "skip them)", where_sheet, category, n, label)
    return collector.result()


#: how many first rows may hold a title above a sheet's header row
HEADER_SEARCH_ROWS = 20
_ZERO_FORMAT = re.compile(r"(0+)(?:\.(0+))?")


def _find_header(rows: Iterator[tuple], columns: Mapping[str, Any]) -> tuple[int, list[str]]:
    """The header row's number and cells: the first of the first :data:`HEADER_SEARCH_ROWS` rows that names every
    required column (a title row above it is passed over), else the first row with any content."""
    required = [[names] if isinstance(names, str) else list(names) for key, names in columns.items()
                if names is not None and not key.endswith("?")]
    first: tuple[int, list[str]] = (0, [])
    for number, cells in enumerate(rows, start=1):
        headers = [clean_term(c.value) for c in cells]
        if not any(headers):
            continue
        if not first[1]:
            first = (number, headers)
        if all(any(name in headers for name in names) for names in required):
            return number, headers
        if number >= HEADER_SEARCH_ROWS:
            break
    return first


def code_text(value: Any, number_format: str | None) -> str | None:
    """A code cell as text. A number is written as Excel shows it under a zero-padded format (``00.00``: 38.1 ->
    ``38.10``, 1.01 -> ``01.01``), a whole number as such; None for any other number (its digits are ambiguous)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return clean_term(value)
    zeros = _ZERO_FORMAT.fullmatch(number_format or "")
    if zeros:
        decimals = len(zeros.group(2) or "")
        return f"{value:0{len(zeros.group(1)) + (decimals + 1 if decimals else 0)}.{decimals}f}"
    if float(value).is_integer():
        return str(int(value))
    return None


def _xlsx_code(main: str, extra: str) -> str:
    """Combine 主要编码 and 附加编码 (see the module docstring)."""
    if not main:
        return extra
    if extra.endswith("*") and not extra.startswith("M"):
        return f"{main.rstrip('†+')}+{extra.lstrip('†')}"
    return main


def load_icd10_xlsx(path: str | PathLike, *, source: str = "icd10_xlsx", label: str | None = "疾病和诊断",
                    sheet: str | None = "全部", strict: bool = False, columns: Mapping[str, Any] | None = None,
                    code_system: str = "icd10", **kw: Any) -> LoadResult:
    """国家临床版 ICD-10 workbook (sheet 全部: 主要编码, 附加编码, 疾病名称)."""
    cols = {"name": ["疾病名称", "名称"], "code": ["主要编码", "编码"], "extra_code?": ["附加编码"]}
    cols.update(columns or {})
    return load_xlsx(path, source=source, label=label, sheet=sheet, columns=cols, code_system=code_system,
                     strict=strict, given=set(columns or {}), **kw)


def load_icd9cm3_xlsx(path: str | PathLike, *, source: str = "icd9cm3_xlsx", label: str | None = "手术",
                      sheet: str | None = "所有条目", strict: bool = False,
                      columns: Mapping[str, Any] | None = None, code_system: str = "icd9cm3",
                      **kw: Any) -> LoadResult:
    """国家临床版 ICD-9-CM-3 workbook (sheet 所有条目: 主要编码, 附加编码, 手术名称, 类别)."""
    cols = {"name": ["手术名称", "名称"], "code": ["主要编码", "编码"], "extra_code?": ["附加编码"],
            "category?": ["类别"]}
    cols.update(columns or {})
    return load_xlsx(path, source=source, label=label, sheet=sheet, columns=cols, code_system=code_system,
                     strict=strict, given=set(columns or {}), **kw)


# ---------------------------------------------------------------------------------------------- csv
_DEFAULT_CSV_COLUMNS = {
    "code": ["code", "编码", "主要编码", "icd_code"],
    "name": ["name", "disease", "term", "名称", "疾病名称", "手术名称"],
}


def _read_text(path: Path, encoding: str, field_hint: str = "encoding",
               decode_fix: str = "set `encoding:` (e.g. gb18030 for GBK files)") -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LexiconError("file not found", where=str(path), field="path",
                           fix="check `path` in the lexicon config") from None
    except IsADirectoryError:
        raise LexiconError("is a folder, not a lexicon file", where=str(path), field="path",
                           fix="give the lexicon file itself") from None
    if utf8_declared_gb(data, encoding):
        raise LexiconError(f"the file is UTF-8, not {encoding}: read as {encoding} every Chinese term would be garbled",
                           where=str(path), field=field_hint,
                           fix=f"remove `{field_hint}: {encoding}` (UTF-8 is the default) or set `{field_hint}: utf-8`")
    try:
        return data.decode(encoding)
    except LookupError:
        raise LexiconError(f"unknown encoding {encoding!r}", where=str(path), field=field_hint,
                           fix="use a Python codec name such as utf-8-sig or gb18030") from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LexiconError(f"cannot decode byte {exc.start} as {encoding}", where=location(path, line),
                           field=field_hint, fix=_decode_fix(data, encoding, decode_fix)) from None


def _decode_fix(data: bytes, encoding: str, default: str) -> str:
    """What the bytes look like when they do not decode: a workbook, UTF-16, or (the default hint) another codec."""
    if data.startswith(b"PK\x03\x04"):
        return "this is a zip file (an .xlsx workbook?): use `kind: icd10_xlsx` or `icd9cm3_xlsx`"
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:200].count(b"\x00") > 20:
        return "the file looks like UTF-16: set `encoding: utf-16`"
    if encoding.replace("-", "").lower() in ("gb18030", "gbk", "gb2312"):
        return "the file is not GB18030 either: convert it to UTF-8, or set its codec in `encoding:`"
    return default


def _sniff_delimiter(text: str, candidates: str = ",\t;|") -> str:
    """The candidate found most often in the header line (header names hold no delimiters); when that is
    not decisive, :class:`csv.Sniffer` on the first 8 KiB; else a comma."""
    header = text.split("\n", 1)[0]
    counts = sorted(((header.count(c), c) for c in candidates), reverse=True)
    if counts[0][0] > 0 and counts[0][0] != counts[1][0]:
        return counts[0][1]
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=candidates).delimiter
    except csv.Error:
        return ","


def load_csv(path: str | PathLike, *, source: str = "csv", label: str | None = None, strict: bool | None = None,
             encoding: str = "utf-8-sig", delimiter: str | None = None, columns: Mapping[str, Any] | None = None,
             code_system: str = "icd10", code_pattern: str | None = None, exclude_codes: str | None = None,
             code_format: str = "given", **_: Any) -> LoadResult:
    """Delimited file with a header naming a code and a name column; codes kept as given
    (``A01.003+G01*``), or WHO codes dotted with ``code_format: dotted`` (``A000`` -> ``A00.0``). ``delimiter`` is
    sniffed among ``, \\t ; |`` when not given (see :func:`_sniff_delimiter`). A quoted field that runs past its
    line's end (a stray quote, which would swallow the rows after it) is an error at the line it opens unless
    ``strict`` is False (not None): then that row alone is a ``malformed_row``.
    """
    path = Path(path)
    dot = _dot_codes(path, code_format)
    text = _read_text(path, encoding)
    if text.startswith("\ufeff"):  # a BOM left by a non-sig codec
        text = text[1:]
    if delimiter is None:
        delimiter = _sniff_delimiter(text)
    lines = list(io.StringIO(text, newline=""))
    collector = _Collector(path, source, label, strict=strict, code_system=code_system, code_regex=code_pattern,
                           exclude_codes=exclude_codes)
    headers = [clean_term(h) for h in next(csv.reader(lines[:1], delimiter=delimiter), [])]
    cols = {**_DEFAULT_CSV_COLUMNS, **(columns or {})}
    idx = _resolve_columns(headers, cols, location(path, 1), f"the header (delimiter {delimiter!r})", set(columns or {}))
    name_i, code_i = idx["name"], idx["code"]
    for line, values, problem in _csv_rows(lines, delimiter):
        if problem:
            collector.row()
            collector.refuse(line, "malformed_row", "row", problem, fix="close the quote or remove it")
            continue
        if not any(v.strip() for v in values):
            continue
        collector.row()
        while len(values) > len(headers) and not values[-1].strip():
            values = values[:-1]  # a trailing delimiter (spreadsheet exports write one): no field
        if len(values) != len(headers):
            collector.bad(line, "malformed_row", "row",
                          f"expected {len(headers)} fields (delimiter {delimiter!r}), got {len(values)}")
            continue
        collector.add(line, values[name_i], dot(values[code_i]), term_field=headers[name_i],
                      code_field=headers[code_i])
    return collector.result()


def _csv_rows(lines: list[str], delimiter: str) -> Iterator[tuple[int, list[str], str | None]]:
    """(line number, fields, problem) of each row after the header line. A quoted cell over several lines (Excel's
    Alt+Enter) is one row; a field holding a line end and the delimiter is a stray quote that ran on into the rows
    after it: that row is a problem, reading goes on at the line after its first (so the rows it swallowed are
    read), and the line where its quote closed is a problem too (its cell would keep the quote)."""
    pos, closer = 1, 0
    while pos < len(lines):
        reader = csv.reader(lines[pos:], delimiter=delimiter)
        read = 0  # lines the reader consumed before this row
        for values in reader:
            line, last = pos + read + 1, pos + reader.line_num
            read = reader.line_num
            if any(("\n" in v or "\r" in v) and delimiter in v for v in values):
                if lines[last - 1].count('"') % 2:
                    closer = last
                yield line, values, "a quoted field runs past the end of this line (a stray quote?): the rows after " \
                                    "it would be read into that one field"
                pos = line  # the index of the line after the row's first
                break
            if line == closer:
                yield line, values, "this line closes a quote opened on an earlier line (a stray quote?)"
                continue
            yield line, values, None
        else:
            return


def _dot_codes(path: Path, code_format: str) -> Callable[[str], str]:
    """The code rewrite of ``code_format``: ``dotted`` writes WHO codes with a dot (``J155`` -> ``J15.5``, the
    normalised code first), ``given`` keeps them."""
    if code_format not in ("dotted", "given"):
        raise LexiconError(f"unknown code_format {code_format!r}", where=str(path), field="code_format",
                           fix="use `dotted` or `given`")
    return (lambda code: dotted_icd10(normalise_code(clean_term(code), "icd10"))) if code_format == "dotted" \
        else (lambda code: code)


# ----------------------------------------------------------------------------------------------- po
_PO_CONTEXT = r"model:gnuhealth\.pathology,name:(?P<code>.+)"


def load_po(path: str | PathLike, *, source: str = "po", label: str | None = "疾病和诊断", strict: bool = False,
            encoding: str | None = None, context: str = _PO_CONTEXT, code_format: str = "dotted",
            code_system: str = "icd10", code_pattern: str | None = None, exclude_codes: str | None = None,
            **_: Any) -> LoadResult:
    """gettext catalogue: code from ``msgctxt`` (regex ``context`` with a ``code`` group), name = ``msgstr``.

    ``code_format: dotted`` writes WHO codes with a dot (``J155`` -> ``J15.5``), ``given`` keeps them.
    Skipped and counted: other contexts, fuzzy, untranslated and obsolete entries.
    """
    import polib  # local import: only gettext (.po) sources need it

    path = Path(path)
    dot = _dot_codes(path, code_format)
    if not path.is_file():
        raise LexiconError("file not found", where=str(path), field="path", fix="check `path` in the lexicon config")
    try:
        catalogue = polib.pofile(str(path), encoding=encoding) if encoding else polib.pofile(str(path))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise LexiconError(f"cannot parse as a gettext .po file: {str(exc)[:120]}", where=str(path),
                           field="path", fix="check the file (msgfmt --check) or its `encoding`") from None
    ctx_re = re.compile(context)
    collector = _Collector(path, source, label, strict=strict, code_system=code_system, code_regex=code_pattern,
                           exclude_codes=exclude_codes)
    for entry in catalogue:  # obsolete entries included
        collector.row()
        if entry.obsolete:
            collector.skip("obsolete")
            continue
        match = ctx_re.fullmatch(entry.msgctxt or "")
        if match is None:
            collector.skip("other context")
            continue
        if entry.fuzzy:
            collector.skip("fuzzy")
            continue
        if not entry.msgstr.strip():
            collector.skip("untranslated")
            continue
        collector.add(entry.linenum, entry.msgstr, dot(match.group("code").strip()), term_field="msgstr",
                      code_field="msgctxt")
    return collector.result()


# --------------------------------------------------------------------------------------------- list
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
#: a frequency after two or more spaces (a space-aligned THUOCL export); one space belongs to the term (维生素B 12)
_SPACED_NUMBER = re.compile(r"^(.*?\S) {2,}\d+(?:\.\d+)?$")


def load_list(path: str | PathLike, *, source: str = "list", label: str | None = None, strict: bool = False,
              encoding: str = "utf-8-sig", **_: Any) -> LoadResult:
    """One term a line; ``#`` comments and blank lines are not rows; a second tab-separated column that is a
    number (THUOCL's frequency) is ignored, any other is ignored with a warning (the label comes from the config)."""
    path = Path(path)
    text = _read_text(path, encoding)
    collector = _Collector(path, source, label, strict=strict)
    if not label:
        raise LexiconError("a plain term list needs a label", where=str(path), field="label",
                           fix="add `label:` to this source in the lexicon config")
    other_columns: list[int] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        collector.row()
        term, _, rest = stripped.partition("\t")
        spaced = _SPACED_NUMBER.match(term)
        if spaced:
            term = spaced.group(1)
        if rest.strip() and not _NUMBER.fullmatch(rest.strip()):
            other_columns.append(line)
        collector.add(line, term, None, term_field="term")
    if other_columns:
        log.warning("%s: %d lines have a second column that is not a frequency (the first at line %d); it is ignored: "
                    "every term takes the label %r (for a label a row, use `kind: tsv` or `csv`)", path,
                    len(other_columns), other_columns[0], label)
    return collector.result()


# ---------------------------------------------------------------------------------------------- tsv
def read_rows(path: str | PathLike) -> Iterator[tuple[int, tuple[str, str, str | None, str, str] | str]]:
    """Yield ``(line, (term, label, code, canonical, source))`` per entry row, or ``(line, reason)`` for a
    row with too few fields. Raises :class:`LexiconError` when the file is missing or has no header row.
    """
    path = Path(path)
    if not path.exists():
        raise LexiconError("lexicon file not found", where=str(path), field="path",
                           fix="build it with `medner lexicon build CONFIG -o FILE` or fix the path")
    text = _read_text(path, "utf-8-sig", field_hint="path",
                      decode_fix="a medner lexicon is UTF-8: rebuild it with `medner lexicon build`, or convert it "
                                 "(e.g. `iconv -f GB18030 -t UTF-8`)")
    index: dict[str, int] | None = None
    for line_no, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if index is None:
            index = {name.strip(): i for i, name in enumerate(fields)}
            missing = [c for c in ("term", "label") if c not in index]
            if missing:
                corpus = line.lstrip().startswith(("{", "["))
                raise LexiconError(f"header row lacks column(s) {missing}; {_headers_found(fields)}",
                                   where=location(path, line_no), field="header",
                                   fix=("this looks like a JSON corpus, not a lexicon; " if corpus else "")
                                   + "a lexicon starts with the tab-separated header "
                                     "`term label code canonical source` (`medner lexicon build` writes one)")
            continue
        need = max(index["term"], index["label"]) + 1
        if len(fields) < need:
            yield line_no, f"expected >= {need} tab-separated fields, got {len(fields)}"
            continue

        def get(name: str) -> str:
            i = index.get(name)  # type: ignore[union-attr]
            return fields[i].strip() if i is not None and i < len(fields) else ""

        yield line_no, (get("term"), get("label"), get("code") or None, get("canonical"), get("source"))
    if index is None:
        raise LexiconError("no header row", where=str(path), field="header",
                           fix="start the file with the tab-separated header `term label code canonical source`")


def load_project_tsv(path: str | PathLike, *, source: str | None = None, label: str | None = None,
                     strict: bool = False, code_system: str = "none", code_pattern: str | None = None,
                     exclude_codes: str | None = None, log_level: int = logging.INFO, lenient: str = LENIENT,
                     **_: Any) -> LoadResult:
    """The project's lexicon TSV (``term label code canonical source``; ``#`` comment lines).

    An empty label cell takes the config ``label``; an empty source cell takes ``source``; ``lenient``: how a bad
    row's fix says to pass it over.
    """
    path = Path(path)
    name = source or path.stem
    collector = _Collector(path, name, label, strict=strict, code_system=code_system, code_regex=code_pattern,
                           exclude_codes=exclude_codes, lenient=lenient)
    for line, row in read_rows(path):
        collector.row()
        if isinstance(row, str):  # a malformed line: read_rows gives the reason
            collector.bad(line, "malformed_row", "row", row)
            continue
        term, row_label, code, canonical, row_source = row
        before = len(collector._entries)
        collector.add(line, term, code, label=row_label or label, canonical=canonical, term_field="term")
        if row_source and len(collector._entries) > before:
            kept = collector._entries[-1]
            collector._entries[-1] = LexiconEntry(kept.term, kept.label, kept.code, kept.canonical, row_source)
    return collector.result(log_level)


LOADERS: dict[str, Callable[..., LoadResult]] = {
    "icd10_xlsx": load_icd10_xlsx,
    "icd9cm3_xlsx": load_icd9cm3_xlsx,
    "csv": load_csv,
    "po": load_po,
    "list": load_list,
    "tsv": load_project_tsv,
}


def known_kinds() -> Iterable[str]:
    return sorted(LOADERS)

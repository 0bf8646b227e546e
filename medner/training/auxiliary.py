"""Other labelled corpora for intermediate training (`data.auxiliary`).

Each corpus is read with its own reader, its own `encoding` (auto-detected by default, whatever
`data.encoding` says) and its own `on_error` (skip by default: a malformed span or record of a third-party
corpus is dropped, counted and logged); its spans are either mapped onto the target label set (`label_map`:
its label -> a target label, or null to drop spans of that label, counted) or kept as its own labels,
namespaced ``NAME:label`` so that they never mix with the target labels (`own_labels`). Record ids are
prefixed with the corpus name. Everything is checked before training: a map naming a target label outside
`data.labels`, a label of the corpus the map does not name, or (when the corpus was read in full, not cut
short by `limit`) a source label the corpus never uses, is an error.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from medner.config import AuxiliaryCorpusConfig, read_yaml
from medner.corpus import ReadReport, read_corpus
from medner.errors import ConfigError, CorpusError
from medner.types import Record, Span

log = logging.getLogger(__name__)


def label_map_of(aux: AuxiliaryCorpusConfig) -> dict[str, str | None]:
    """The corpus's label map: `label_map`, over the map read from `label_map_file` (key `label_map`)."""
    mapping: dict[str, str | None] = {}
    if aux.label_map_file:
        if not Path(aux.label_map_file).is_file():
            raise ConfigError(f"auxiliary corpus `{aux.name}`: label map file not found", where=aux.label_map_file,
                              field="data.auxiliary[].label_map_file", fix="check the path (configs/label_maps/ "
                                                                          "holds the shipped maps)")
        tree = read_yaml(aux.label_map_file)
        if not isinstance(tree, dict) or not isinstance(tree.get("label_map"), dict):
            raise ConfigError("expected a mapping with `label_map: {source label: target label or null}`",
                              where=aux.label_map_file, fix="see configs/label_maps/")
        mapping.update({str(k): (None if v is None else str(v)) for k, v in tree["label_map"].items()})
    mapping.update(aux.label_map)
    return mapping


def read_auxiliary(aux: AuxiliaryCorpusConfig, target_labels: list[str]) -> list[Record]:
    """The corpus's records with mapped (or namespaced) spans; errors name the corpus and the label."""
    mapping = {} if aux.own_labels else label_map_of(aux)
    unknown = sorted({v for v in mapping.values() if v is not None} - set(target_labels))
    if unknown:
        raise ConfigError(f"auxiliary corpus `{aux.name}`: its label map names {unknown[0]!r}, which is not a target "
                          f"label {target_labels}", field="data.auxiliary", fix="map onto `data.labels` or to null")
    records: list[Record] = []
    seen: Counter = Counter()
    dropped: Counter = Counter()
    cut_short = False
    for path in aux.train:
        cut_short = _read_file(aux, path, mapping, records, seen, dropped)
        if cut_short:
            break
    _check_map_use(aux, mapping, seen, cut_short)
    kept = sum(seen.values()) - sum(dropped.values())
    if not kept:
        raise ConfigError(f"auxiliary corpus `{aux.name}`: no span is left after its label map (dropped by label: "
                          f"{dict(dropped) or 'none'}): it would teach that its texts hold no entity",
                          field="data.auxiliary", fix="map at least one of its labels onto a target label")
    log.info("auxiliary corpus %s: %d records, %d spans kept, dropped by label: %s", aux.name, len(records), kept,
             dict(dropped) or "none")
    return records


def _read_file(aux: AuxiliaryCorpusConfig, path: str, mapping: dict[str, str | None], records: list[Record],
               seen: Counter, dropped: Counter) -> bool:
    """Append the records of one file of the corpus (mapped); whether `limit` stopped the read early."""
    before = len(records)
    report = ReadReport()
    reader = read_corpus(path, format=aux.format, encoding=aux.encoding, on_error=aux.on_error, report=report)
    cut_short = False
    for record in reader:
        records.append(Record(f"{aux.name}:{Path(path).name}:{record.id}", record.text,
                              _spans(aux, path, record, mapping, seen, dropped)))
        if aux.limit and len(records) >= aux.limit:
            cut_short = True
            break
    if cut_short:  # the reader logs its summary only when read to the end
        reader.close()
        _log_partial_read(aux, report)
    if len(records) == before:  # every record skipped: the wrong format, most likely
        raise CorpusError(f"auxiliary corpus `{aux.name}`: no record could be read as {aux.format}", where=path,
                          field="data.auxiliary", fix="check the corpus's `format` (`medner corpus stats --help` "
                                                      "lists them) and its file")
    return cut_short


def _spans(aux: AuxiliaryCorpusConfig, path: str, record: Record, mapping: dict[str, str | None], seen: Counter,
           dropped: Counter) -> tuple[Span, ...]:
    """The record's spans, mapped (dropped ones counted) or namespaced."""
    spans = []
    for span in record.spans:
        seen[span.label] += 1
        if not aux.own_labels and span.label not in mapping:
            raise ConfigError(f"auxiliary corpus `{aux.name}`: its label map does not say what becomes of "
                              f"{span.label!r} (map names {sorted(mapping)})", where=path,
                              field="data.auxiliary", fix=f"map {span.label!r} onto a target label, or to null "
                                                          "to drop its spans")
        label = f"{aux.name}:{span.label}" if aux.own_labels else mapping[span.label]
        if label is None:
            dropped[span.label] += 1
            continue
        spans.append(Span(span.start, span.end, label))
    return tuple(spans)


def _log_partial_read(aux: AuxiliaryCorpusConfig, report: ReadReport) -> None:
    """The read summary of a file whose reading `limit` stopped (no record text: counts and file:line)."""
    summary = f"{report.summary()} (read up to `limit: {aux.limit}` of auxiliary corpus `{aux.name}`)"
    if report.skipped:
        log.warning("%s; first problems: %s", summary, " | ".join(report.examples))
    elif report.unusual:
        log.info("%s", summary)


def _check_map_use(aux: AuxiliaryCorpusConfig, mapping: dict[str, str | None], seen: Counter, cut_short: bool
                   ) -> None:
    """A map naming a label the corpus never uses is an error, unless `limit` left records unread."""
    never = sorted(set(mapping) - set(seen))
    if never and cut_short:
        log.debug("auxiliary corpus %s: labels of its map not seen before `limit`: %s", aux.name, never)
    elif never:
        raise ConfigError(f"auxiliary corpus `{aux.name}`: its label map names {never[0]!r}, a label the corpus never "
                          f"uses (it uses {sorted(seen)})", field="data.auxiliary",
                          fix="fix the map's source labels, or check `format`")


def auxiliary_labels(auxiliary: list[AuxiliaryCorpusConfig], records: list[Record]) -> list[str]:
    """The namespaced labels of the corpora kept with their own labels, sorted."""
    own = {a.name for a in auxiliary if a.own_labels}
    return sorted({s.label for r in records for s in r.spans if s.label.split(":", 1)[0] in own})

"""Progress of long work: a tqdm bar on a terminal, else one log line every N percent.

    with Progress(len(records), "predict", unit="rec", bar=not args.no_progress) as progress:
        for chunk in chunks:
            ...
            progress.update(len(chunk))

    for record in track(records, "dev", total=len(records), unit="rec"): ...

The bar goes to stderr and is drawn only when ``bar`` is true (the CLI's ``--no-progress`` sets it false) and
stderr is a terminal. Otherwise, as in a job log or a pipe, the work logs one INFO line each time it passes
another ``every`` percent of ``total`` (and at the end), but no more often than every ``min_seconds``: short work
logs nothing. ``quiet`` silences both (e.g. on ranks other than 0 of a data-parallel run). A bar or line never
holds record text: only counts, the ``desc`` and the ``postfix`` values the caller gives.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

from tqdm import tqdm

__all__ = ["Progress", "track", "use_bar"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def use_bar(bar: bool = True, stream: Any = None) -> bool:
    """Whether a bar would be drawn: ``bar`` and ``stream`` (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(bar) and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """A progress bar or periodic log lines (module docstring); a context manager. ``total`` None: unknown
    (no percent: a log line every ``min_seconds`` instead)."""

    def __init__(self, total: int | None, desc: str, *, unit: str = "it", bar: bool = True, quiet: bool = False,
                 every: float = 10.0, min_seconds: float = 5.0, initial: int = 0, leave: bool = True,
                 logger: logging.Logger | None = None) -> None:
        if every <= 0 or every > 100:
            raise ValueError(f"every must be in (0, 100] percent, got {every}")
        self.total, self.desc, self.unit = total, desc, unit
        self.n = initial
        self.every, self.min_seconds = every, min_seconds
        self.logger = logger or log
        self.quiet = quiet
        self.postfix: dict[str, Any] = {}
        self._started = self._last_time = time.monotonic()
        self._last_mark = self._mark(initial)
        self._logged = False
        self._closed = False
        self._bar = None
        if not quiet and use_bar(bar):
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, dynamic_ncols=True,
                             file=sys.stderr)

    @property
    def drawing(self) -> bool:
        """True when a bar is drawn (else log lines, unless quiet)."""
        return self._bar is not None

    def _mark(self, n: int) -> int:
        """Index of the last ``every``-percent step ``n`` has reached."""
        if not self.total:
            return 0
        return int(100.0 * min(n, self.total) / self.total // self.every)

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return
        if self.quiet:
            return
        now = time.monotonic()
        if now - self._last_time < self.min_seconds:
            return
        mark = self._mark(self.n)
        if self.total and mark <= self._last_mark:
            return
        self._last_mark, self._last_time = mark, now
        self._log()

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the counts (``loss=0.12``): on the bar, or in the next log line."""
        self.postfix = {k: v for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def _log(self, done: bool = False) -> None:
        elapsed = time.monotonic() - self._started
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        percent = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        self.logger.info("%s: %s%s %s%s, %.0fs%s", self.desc, count, percent, self.unit, extra, elapsed,
                         " (done)" if done else "")
        self._logged = True

    def close(self) -> None:
        """Close the bar; in log mode, a last line when earlier lines were logged (so a log shows the end)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._logged and not self.quiet:
            self._log(done=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], desc: str, *, total: int | None = None, **options: Any) -> Iterator[T]:
    """Yield ``items``, advancing a :class:`Progress` (same options) by one per item; ``total`` defaults to
    ``len(items)`` where it has one."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, **options) as progress:
        for item in items:
            yield item
            progress.update(1)

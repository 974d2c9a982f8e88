"""The text exposition of /metrics, written without prometheus-client's per-sample objects where it matters.

A scrape of a province is ~18 k samples (120 units x 3 periods x ~50 series). Building a ``Sample`` (a label
dict) per sample and formatting each label pair again took most of a scrape's 120-230 ms of the worker's event
loop, which is time the agent does not run and bounded produce-to-/metrics latency (docs/benchmarks.md). The
unit families are therefore written as text as they are built (``TextGauge``): the labels shared by a unit's
series are escaped and joined once, and each sample costs one string format. ``render`` writes exactly what
``prometheus_client.generate_latest`` writes for the same registry, byte for byte (tests/test_exposition.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["Chunk", "LabelValues", "NamedRegistry", "TextGauge", "collect_named", "render", "format_value"]

_LEGACY_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LEGACY_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TYPE_MUNGING = {"counter": ("_total", "counter"), "info": ("_info", "gauge"), "stateset": ("", "gauge"),
                 "gaugehistogram": ("", "histogram"), "unknown": ("", "untyped")}
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")


def escape_value(v: str) -> str:
    if "\\" in v or "\n" in v or '"' in v:
        return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return v


def format_value(v: float) -> str:
    """``floatToGoString`` with a shortcut for the integers most samples are (Go switches to an exponent from
    one million on, so larger integers take the general path)."""
    if type(v) is int and -(10**15) < v < 1_000_000:
        return f"{v}.0"
    return floatToGoString(v)


Chunk = tuple[tuple[str, ...], list[tuple[str | None, float]]]  # base label values, then (extra, value) rows


class TextGauge(Metric):
    """A gauge family over a fixed set of base labels plus at most one extra label, kept as exposition lines.

    ``use(values)`` sets the base label values for the following ``add`` calls (a unit and period, say); each
    ``add`` writes one line. ``write`` does both for a whole set of rows and returns them as text, which ``extend``
    appends again at a later scrape if nothing changed. ``samples`` is still there, built on demand, for anything
    that reads the registry the usual way (``generate_latest``, tests).
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str], extra: str | None = None) -> None:
        super().__init__(name, documentation, "gauge")
        if not _LEGACY_NAME.match(name) or not all(_LEGACY_LABEL.match(k) for k in (*labels, *filter(None, [extra]))):
            raise ValueError(f"{name}: text gauges take plain metric and label names only")
        self._names = tuple(labels)
        self._extra = extra
        self._lines: list[str] = []
        self._rows: list[tuple[str | None, float]] = []  # what ``add`` writes under the current base labels
        self._chunks: list[Chunk] = [((), self._rows)]  # what backs ``samples``
        self._head = self._tail = ""
        self._extra_cache: dict[str, str] = {}

    def use(self, values: Sequence[str] | "LabelValues") -> None:
        """Base label values for the next ``add`` calls; pass one ``LabelValues`` to many families over the same
        labels so the escaping and joining is done once for all of them."""
        if not isinstance(values, LabelValues):
            values = LabelValues(self._names, values)
        self._head, self._tail = self._affixes(values)
        self._rows = []
        self._chunks.append((values.values, self._rows))

    def add(self, value: float, extra: str | None = None) -> None:
        self._rows.append((extra, value))
        if self._extra is None:
            self._lines.append(f"{self._head}{format_value(value)}\n")
            return
        self._lines.append(f"{self._head}{self._extra_part(extra)}{self._tail}{format_value(value)}\n")

    def write(self, base: "LabelValues", rows: list[tuple[str | None, float]],
              previous: tuple[str, Chunk] | None = None) -> tuple[str, Chunk]:
        """The lines of ``rows`` (``(extra, value)``; ``extra`` is None for a family without one) under ``base``,
        appended and returned for ``extend`` at a later scrape. ``rows`` is kept: do not change it afterwards.

        ``previous`` is what this family's ``write`` returned for the same unit at an earlier scrape: if its labels
        and rows are the same, its text is used as it is (formatting is most of a scrape's cost, and an event
        changes a few of a unit's families, not all of them)."""
        if previous is not None and previous[1][1] == rows and previous[1][0] == base.values:
            self.extend(*previous)
            return previous
        head, tail = self._affixes(base)
        if len(rows) == 1:  # most families: one line per unit and period
            extra, value = rows[0]
            text = (f"{head}{format_value(value)}\n" if self._extra is None else
                    f"{head}{self._extra_part(extra)}{tail}{format_value(value)}\n")
        elif self._extra is None:
            text = "".join([f"{head}{format_value(v)}\n" for _, v in rows])
        else:
            part = self._extra_part
            text = "".join([f"{head}{part(e)}{tail}{format_value(v)}\n" for e, v in rows])
        chunk = (base.values, rows)
        self._lines.append(text)
        self._chunks.append(chunk)
        return text, chunk

    def extend(self, text: str, chunk: Chunk) -> None:
        """Append what an earlier ``write`` returned."""
        self._lines.append(text)
        self._chunks.append(chunk)

    def _affixes(self, values: "LabelValues") -> tuple[str, str]:
        """What a line writes before and after its extra label and value (kept on ``values`` by family name, so
        label values kept from one scrape to the next are not joined again)."""
        got = values.affixes.get(self.name)
        if got is not None:
            return got
        if values.names != self._names:
            raise ValueError(f"{self.name}: labels {values.names} given, {self._names} expected")
        before, after = values.split(self._extra)
        if self._extra is None:
            got = (f"{self.name}{{{before}}} " if before else f"{self.name} "), ""
        else:
            got = (f"{self.name}{{{before}," if before else f"{self.name}{{"), (f",{after}}} " if after else "} ")
        values.affixes[self.name] = got
        return got

    def _extra_part(self, extra: str | None) -> str:
        part = self._extra_cache.get(extra)  # type: ignore[arg-type]
        if part is None:
            part = self._extra_cache[extra] = f'{self._extra}="{escape_value(extra)}"'  # type: ignore[arg-type]
        return part

    @property  # type: ignore[override]
    def samples(self) -> list[Sample]:
        names = self._names + ((self._extra,) if self._extra else ())
        return [Sample(self.name, dict(zip(names, base + ((extra,) if self._extra else ()))), value, None, None)
                for base, rows in self._chunks for extra, value in rows]

    @samples.setter
    def samples(self, _value: list) -> None:  # Metric.__init__ assigns an empty list; the rows are the truth
        pass

    def text(self) -> str:
        return "".join(self._lines)


class LabelValues:
    """One set of base label values (a unit in a period), escaped and joined once for every family that uses it.

    Exposition order is by label name, so a family's extra label splits the base labels into those written
    before it and those after; each split is kept per extra label name.
    """

    __slots__ = ("names", "values", "affixes", "_pairs", "_splits")

    def __init__(self, names: Sequence[str], values: Sequence[str]) -> None:
        self.names = tuple(names)
        self.values = tuple(values)
        self.affixes: dict[str, tuple[str, str]] = {}  # by family name: TextGauge._affixes
        self._pairs = sorted((n, f'{n}="{escape_value(v)}"') for n, v in zip(self.names, self.values))
        self._splits: dict[str | None, tuple[str, str]] = {}

    def split(self, extra: str | None) -> tuple[str, str]:
        got = self._splits.get(extra)
        if got is None:
            if extra is None:
                got = (",".join([p for _, p in self._pairs]), "")
            else:
                got = (",".join([p for n, p in self._pairs if n < extra]),
                       ",".join([p for n, p in self._pairs if n > extra]))
            self._splits[extra] = got
        return got


class NamedRegistry(CollectorRegistry):
    """A registry that remembers its collectors in order, so ``collect_named`` can ask each for named families
    only (Prometheus clients' ``name[]`` filter) instead of building everything and dropping most of it."""

    def __init__(self) -> None:
        super().__init__(auto_describe=False)
        self._in_order: list[Any] = []

    def register(self, collector: Any) -> None:
        super().register(collector)
        self._in_order.append(collector)

    def unregister(self, collector: Any) -> None:
        super().unregister(collector)
        self._in_order.remove(collector)

    def collectors(self) -> list[Any]:
        return list(self._in_order)


def collect_named(registry: Any, names: frozenset[str]) -> Iterator[Metric]:
    """The samples whose names are in ``names``, in their families, as ``restricted_registry`` selects them.

    A collector with a ``collect_named(names)`` is asked for those names alone (the unit families of a province
    are most of a scrape's cost, and a probe of the event counter needs none of them); any other collector is
    collected and filtered."""
    if not isinstance(registry, NamedRegistry):
        yield from _restrict(registry.collect(), names)
        return
    for collector in registry.collectors():
        named = getattr(collector, "collect_named", None)
        if named is not None:
            yield from _restrict(named(names), names)
        elif _may_export(collector, names):
            yield from _restrict(collector.collect(), names)


def _may_export(collector: Any, names: frozenset[str]) -> bool:
    """False only when the collector cannot have any of ``names``: it declares its families (``FAMILIES``), or it
    is one of prometheus-client's process and GC collectors, whose names all start with their namespace. A sample
    is named after its family, or the family and a suffix (``_total``, ``_created``, ``_sum``...)."""
    families = getattr(collector, "FAMILIES", None)
    if families is not None:
        return any(name in families or name.rpartition("_")[0] in families for name in names)
    prefix = next((p for kind, p in _LIBRARY_PREFIXES if isinstance(collector, kind)), None)
    return prefix is None or any(name.startswith(prefix) for name in names)


_LIBRARY_PREFIXES = ((ProcessCollector, "process_"), (GCCollector, "python_gc_"))


def _restrict(metrics: Iterable[Metric], names: frozenset[str]) -> Iterator[Metric]:
    for metric in metrics:
        if isinstance(metric, TextGauge):  # a gauge: its samples carry the family's name
            if metric.name in names:
                yield metric
            continue
        samples = [sample for sample in metric.samples if sample.name in names]
        if samples:
            kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            kept.samples = samples
            yield kept


class _Collected:
    """Already collected families, for ``generate_latest``."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


def render(registry: CollectorRegistry, names: frozenset[str] | None = None) -> bytes:
    """The text exposition, byte for byte what ``generate_latest`` writes, several times faster; with ``names``,
    only the samples so named (``?name[]=`` on /metrics), those prometheus-client's ``restricted_registry`` keeps.

    Text gauges are copied as written; other families are formatted here, with each sorted label-name tuple
    checked once per scrape instead of once per sample. Anything outside the plain legacy names falls back to
    ``generate_latest``.
    """
    metrics = list(registry.collect()) if names is None else list(collect_named(registry, names))
    fallback = registry if names is None else _Collected(metrics)
    out: list[str] = []
    append = out.append
    checked: dict[tuple[str, ...], bool] = {}
    for metric in metrics:
        name, mtype = metric.name, metric.type
        suffix, mtype = _TYPE_MUNGING.get(mtype, ("", mtype))
        mname = name + suffix
        if not _LEGACY_NAME.match(mname):
            return generate_latest(fallback)
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        append(f"# HELP {mname} {doc}\n# TYPE {mname} {mtype}\n")
        if isinstance(metric, TextGauge):
            append(metric.text())
            continue
        om: dict[str, list[str]] = {}
        for sample in metric.samples:
            sname = sample.name
            if not _LEGACY_NAME.match(sname):
                return generate_latest(fallback)
            labels = sample.labels
            if labels:
                keys = tuple(sorted(labels))
                ok = checked.get(keys)
                if ok is None:
                    ok = checked[keys] = all(_LEGACY_LABEL.match(k) for k in keys)
                if not ok:
                    return generate_latest(fallback)
                body = ",".join([f'{k}="{escape_value(labels[k])}"' for k in keys])
                line = f"{sname}{{{body}}} {floatToGoString(sample.value)}"
            else:
                line = f"{sname} {floatToGoString(sample.value)}"
            if sample.timestamp is not None:
                line += f" {int(float(sample.timestamp) * 1000):d}"
            line += "\n"
            for om_suffix in _OM_SUFFIXES:
                if sname == name + om_suffix:
                    om.setdefault(om_suffix, []).append(line)
                    break
            else:
                append(line)
        for om_suffix, lines in sorted(om.items()):
            append(f"# HELP {name + om_suffix} {doc}\n# TYPE {name + om_suffix} gauge\n")
            out.extend(lines)
    return "".join(out).encode("utf-8")

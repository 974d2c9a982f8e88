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
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["LabelValues", "TextGauge", "render", "format_value"]

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


class TextGauge(Metric):
    """A gauge family over a fixed set of base labels plus at most one extra label, kept as exposition lines.

    ``use(values)`` sets the base label values for the following ``add`` calls (a unit and period, say); each
    ``add`` writes one line. ``samples`` is still there, built on demand, for anything that reads the registry
    the usual way (``generate_latest``, tests).
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str], extra: str | None = None) -> None:
        super().__init__(name, documentation, "gauge")
        if not _LEGACY_NAME.match(name) or not all(_LEGACY_LABEL.match(k) for k in (*labels, *filter(None, [extra]))):
            raise ValueError(f"{name}: text gauges take plain metric and label names only")
        self._names = tuple(labels)
        self._extra = extra
        self._rows: list[tuple[tuple[str, ...], str | None, float]] = []
        self._lines: list[str] = []
        self._base: tuple[str, ...] = ()
        self._head = self._tail = ""
        self._extra_cache: dict[str, str] = {}

    def use(self, values: Sequence[str] | "LabelValues") -> None:
        """Base label values for the next ``add`` calls; pass one ``LabelValues`` to many families over the same
        labels so the escaping and joining is done once for all of them."""
        if not isinstance(values, LabelValues):
            values = LabelValues(self._names, values)
        elif values.names != self._names:
            raise ValueError(f"{self.name}: labels {values.names} given, {self._names} expected")
        self._base = values.values
        before, after = values.split(self._extra)
        if self._extra is None:
            self._head = f"{self.name}{{{before}}} " if before else f"{self.name} "
        else:
            self._head = f"{self.name}{{{before}," if before else f"{self.name}{{"
            self._tail = f",{after}}} " if after else "} "

    def add(self, value: float, extra: str | None = None) -> None:
        self._rows.append((self._base, extra, value))
        if self._extra is None:
            self._lines.append(f"{self._head}{format_value(value)}\n")
            return
        part = self._extra_cache.get(extra)  # type: ignore[arg-type]
        if part is None:
            part = self._extra_cache[extra] = f'{self._extra}="{escape_value(extra)}"'  # type: ignore[arg-type]
        self._lines.append(f"{self._head}{part}{self._tail}{format_value(value)}\n")

    @property  # type: ignore[override]
    def samples(self) -> list[Sample]:
        names = self._names + ((self._extra,) if self._extra else ())
        return [Sample(self.name, dict(zip(names, base + ((extra,) if self._extra else ()))), value, None, None)
                for base, extra, value in self._rows]

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

    __slots__ = ("names", "values", "_pairs", "_splits")

    def __init__(self, names: Sequence[str], values: Sequence[str]) -> None:
        self.names = tuple(names)
        self.values = tuple(values)
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


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition, byte for byte what ``generate_latest`` writes, several times faster.

    Text gauges are copied as written; other families are formatted here, with each sorted label-name tuple
    checked once per scrape instead of once per sample. Anything outside the plain legacy names falls back to
    ``generate_latest``.
    """
    metrics = list(registry.collect())
    out: list[str] = []
    append = out.append
    checked: dict[tuple[str, ...], bool] = {}
    for metric in metrics:
        name, mtype = metric.name, metric.type
        suffix, mtype = _TYPE_MUNGING.get(mtype, ("", mtype))
        mname = name + suffix
        if not _LEGACY_NAME.match(mname):
            return generate_latest(registry)
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        append(f"# HELP {mname} {doc}\n# TYPE {mname} {mtype}\n")
        if isinstance(metric, TextGauge):
            append(metric.text())
            continue
        om: dict[str, list[str]] = {}
        for sample in metric.samples:
            sname = sample.name
            if not _LEGACY_NAME.match(sname):
                return generate_latest(registry)
            labels = sample.labels
            if labels:
                keys = tuple(sorted(labels))
                ok = checked.get(keys)
                if ok is None:
                    ok = checked[keys] = all(_LEGACY_LABEL.match(k) for k in keys)
                if not ok:
                    return generate_latest(registry)
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

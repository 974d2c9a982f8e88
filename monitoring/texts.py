"""Every text the generated monitoring shows a person, looked up by key in the product's message catalogue.

One source, two languages: alert annotations, dashboard titles and panel texts, the runbook and the notification
templates take their words from ``models/catalogue/messages.yaml`` (keys ``mon.*``), where each key has both
``vi`` and ``en`` with the same placeholders. Placeholders are filled here with Prometheus or Alertmanager template
snippets (``{{ $value }}``, the unit's name) or with configured thresholds formatted in the language's style.

Prometheus' template functions cannot format "93,45 %" directly; ``humanizePercentage`` gives "93.45%", so the
Vietnamese snippets pipe it through ``reReplaceAll`` (decimal comma, a space before %). Thousands separators are
not written (counts in alerts are small).
"""

from __future__ import annotations

import re

from models.i18n import LANGS, format_number, t

__all__ = ["LANGS", "tr", "word", "name", "pct", "num", "duration", "unit_tmpl", "value_pct", "value_num", "value_count",
           "value_duration"]


def tr(key: str, lang: str, **fmt: object) -> str:
    """The text of ``mon.<key>`` in ``lang``; tests replace this function to prove every text comes from here."""
    return t(f"mon.{key}", lang, **fmt)


def word(key: str, lang: str) -> str:
    """A product-wide text (``band.*``, ``group.*``, ``state.*``) shared with the live view and reports."""
    return t(key, lang)


def name(row: object, lang: str) -> str:
    """The name of a 766 catalogue row (group, indicator) in ``lang``: the catalogue holds both."""
    return getattr(row, "name_en" if lang == "en" else "name_vi")


def pct(ratio: float, lang: str) -> str:
    """A configured ratio as a person reads it: ``0.95`` -> ``95 %`` (vi) or ``95%`` (en)."""
    n = format_number(ratio * 100, lang, 2, strip_zeros=True)
    return f"{n} %" if lang == "vi" else f"{n}%"


def num(x: float, lang: str) -> str:
    return format_number(x, lang, 2, strip_zeros=True)


def unit_tmpl(lang: str) -> str:
    """The unit's name (from the ``onestop_unit_info`` join) and code, or the code alone when no name is known."""
    name = "$labels.name_en" if lang == "en" else "$labels.name"
    return (f"{{{{ if {name} }}}}{{{{ {name} }}}} ({{{{ $labels.unit }}}})"
            + ("{{ else if $labels.name }}{{ $labels.name }} ({{ $labels.unit }})" if lang == "en" else "")
            + "{{ else }}{{ $labels.unit }}{{ end }}")


def province_tmpl(lang: str) -> str:
    """The province's name, which the unit registry gives as a unit of its own (``unit:onestop_unit_info:max`` with
    ``unit`` = the province code), looked up when the alert is rendered; its code when no name is known."""
    return _province_lookup(lang, otherwise=tr("province_code", lang, code="{{ $labels.province }}"))


def province_name_tmpl(lang: str) -> str:
    """The province's name alone, empty when the registry has none: an annotation that Alertmanager's notification
    titles read, since Alertmanager cannot query Prometheus itself."""
    return _province_lookup(lang)


def _province_lookup(lang: str, otherwise: str = "") -> str:
    label = "name_en" if lang == "en" else "name"
    found = (f'{{{{ with printf `unit:onestop_unit_info:max{{unit=%q,{label}!=""}}` $labels.province | query }}}}'
             f'{{{{ . | first | label "{label}" }}}}')
    return found + (f"{{{{ else }}}}{otherwise}" if otherwise else "") + "{{ end }}"


def value_pct(lang: str) -> str:
    if lang == "vi":
        return '{{ $value | humanizePercentage | reReplaceAll "[.]" "," | reReplaceAll "%" " %" }}'
    return "{{ $value | humanizePercentage }}"


def value_num(lang: str) -> str:
    """``$value`` with two decimals: ``4,00`` (vi) or ``4.00`` (en)."""
    if lang == "vi":
        return '{{ printf "%.2f" $value | reReplaceAll "[.]" "," }}'
    return '{{ printf "%.2f" $value }}'


def value_count(lang: str) -> str:
    return '{{ printf "%.0f" $value }}'


#: Units of a Prometheus duration, longest first, with their Vietnamese words ("3d" reads "3 ngày").
_DURATION_UNITS_VI = (("y", "năm"), ("w", "tuần"), ("d", "ngày"), ("h", "giờ"), ("ms", "mili giây"), ("m", "phút"),
                      ("s", "giây"))


def duration(spec: str, lang: str) -> str:
    """A configured Prometheus duration as a reader says it: "4 giờ 30 phút" for ``4h30m`` in Vietnamese; English
    keeps the compact ``4h30m``, which is how English-speaking operators write it."""
    if lang != "vi":
        return spec
    parts = re.findall(r"(\d+)(ms|[ywdhms])", spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise ValueError(f"{spec!r} is not a Prometheus duration such as 4h30m")
    words = dict(_DURATION_UNITS_VI)
    return " ".join(f"{n} {words[u]}" for n, u in parts)


def value_duration(lang: str) -> str:
    """``$value`` seconds as ``humanizeDuration`` says them, in Vietnamese words for Vietnamese ("15 phút 0 giây")."""
    if lang == "vi":
        # humanizeDuration writes "1d 2h 3m 4s" (or "250ms"): "ms" goes before "m" and "s" in the table's order.
        chain = "".join(f' | reReplaceAll "([0-9.]+){u}" "${{1}} {w}"' for u, w in _DURATION_UNITS_VI)
        return "{{ $value | humanizeDuration" + chain + ' | reReplaceAll "[.]" "," }}'
    return "{{ $value | humanizeDuration }}"

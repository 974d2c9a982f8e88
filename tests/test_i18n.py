"""The message catalogue and the Vietnamese number, date and CSV formats."""

from __future__ import annotations

import csv
import re
import io
from datetime import date, datetime, timedelta, timezone

import pytest

from models.i18n import (
    LANGS,
    MessagesError,
    csv_bytes,
    format_date,
    format_datetime,
    format_number,
    format_percent,
    load_messages,
    messages,
    placeholders,
    t,
)
from models.index766 import load_catalogue

MSG = messages()


def test_languages():
    assert LANGS == ("vi", "en")


@pytest.mark.parametrize("key", sorted(MSG))
def test_every_key_has_both_languages(key):
    texts = MSG[key]
    assert set(texts) == set(LANGS)
    assert all(v.strip() for v in texts.values())
    assert placeholders(texts["vi"]) == placeholders(texts["en"])


def test_texts_differ_between_languages_except_the_marked_ones():
    import yaml

    from models.i18n import MESSAGES_FILE

    raw = yaml.safe_load(MESSAGES_FILE.read_text(encoding="utf-8"))
    same = {k for k, v in raw.items() if v.get("same")}
    assert same == {k for k, v in MSG.items() if v["vi"] == v["en"]}
    assert same <= {"common.dash", "live.prometheus", "live.col.index766", "mon.where"}  # mon.where: no words left


def test_vietnamese_texts_are_vietnamese():
    """A key copied from English and never translated shows up as a Vietnamese text with no Vietnamese letter."""
    vietnamese = set("ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ")
    plain = [k for k, v in MSG.items() if v["vi"] != v["en"] and not (set(v["vi"].lower()) & vietnamese)]
    assert plain == []


@pytest.mark.parametrize("code, vi, en", [
    ("xuat_sac", "Xuất sắc", "Excellent"), ("tot", "Tốt", "Good"), ("kha", "Khá", "Fair"),
    ("trung_binh", "Trung bình", "Average"), ("yeu", "Yếu", "Poor"),
])
def test_band_names(code, vi, en):
    assert (t(f"band.{code}"), t(f"band.{code}", "en")) == (vi, en)


def test_band_and_group_names_match_the_766_catalogue():
    cat = load_catalogue()
    for b in cat.bands:
        assert t(f"band.{b.code}") == b.name_vi
    for g in cat.groups:
        assert (t(f"group.{g.code}"), t(f"group.{g.code}", "en")) == (g.name_vi, g.name_en)


@pytest.mark.parametrize("key, vi", [
    ("state.ended_early", "trước hạn"), ("state.ended_on_time", "đúng hạn"), ("state.ended_late", "trễ hạn"),
    ("state.open_within", "trong hạn"), ("state.open_due_soon", "sắp đến hạn"), ("state.open_overdue", "quá hạn"),
    ("state.open_awaiting_supplement", "chờ bổ sung"), ("state.open_awaiting_payment", "chờ nghĩa vụ tài chính"),
    ("status.processed", "Đã xử lý xong"), ("status.returned", "Đã trả kết quả"),
])
def test_statuses(key, vi):
    assert t(key) == vi


def test_every_judgement_bucket_and_canonical_status_has_a_text():
    buckets = ["ended_early", "ended_on_time", "ended_late", "open_within", "open_due_soon", "open_overdue",
               "open_awaiting_supplement", "open_awaiting_payment"]
    statuses = ["submitted", "received", "reception_refused", "in_progress", "awaiting_supplement",
                "awaiting_payment", "withdrawal_requested", "withdrawn", "stopped", "processed", "returned"]
    alerts = ["due_soon", "overdue", "apology_missing", "repeated_supplement", "second_reschedule"]
    missing = [k for k in [f"state.{b}" for b in buckets] + [f"status.{s}" for s in statuses]
               + [f"alert.{a}" for a in alerts] if k not in MSG]
    assert missing == []


def test_t_formats_and_refuses_unknowns():
    assert t("alert.summary.overdue", count=3, unit="Sở Tư pháp") == "3 hồ sơ quá hạn tại Sở Tư pháp"
    assert t("alert.summary.overdue", "en", count=3, unit="Sở Tư pháp") == "3 overdue dossier(s) in Sở Tư pháp"
    assert t("band.tot") == "Tốt"  # Vietnamese by default
    with pytest.raises(KeyError, match="no message 'band.nope'"):
        t("band.nope")
    with pytest.raises(ValueError, match="language 'fr'"):
        t("band.tot", "fr")


@pytest.mark.parametrize("entry, expected", [
    ("k: {vi: 'Tốt'}\n", "k: en text missing"),
    ("k: {vi: '', en: 'Good'}\n", "k: vi text missing or empty"),
    ("k: {vi: '{n} hồ sơ', en: '{count} dossiers'}\n", "placeholders differ"),
    ("k: {vi: 'Tốt', en: 'Tốt'}\n", "identical (mark it same: true"),
    ("k: {vi: 'Tốt', en: 'Good', same: true}\n", "different but marked same"),
    ("k: {vi: 'Tốt', en: 'Good', fr: 'Bon'}\n", "unknown field(s) fr"),
])
def test_catalogue_problems_are_refused(tmp_path, entry, expected):
    p = tmp_path / "messages.yaml"
    p.write_text(entry, encoding="utf-8")
    with pytest.raises(MessagesError, match=re.escape(expected)):
        load_messages(p)


# ----------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("x, lang, decimals, expected", [
    (93.45, "vi", 2, "93,45"),
    (93.45, "en", 2, "93.45"),
    (1234.5, "vi", 1, "1.234,5"),
    (1234.5, "en", 1, "1,234.5"),
    (1234567.891, "vi", 2, "1.234.567,89"),
    (2.675, "vi", 2, "2,68"),  # half up, as a person rounds
    (0, "vi", 2, "0,00"),
    (-0.001, "vi", 2, "0,00"),
    (-1234.5, "vi", 0, "-1.235"),
    (20, "en", 0, "20"),
    (None, "vi", 2, "–"),
])
def test_format_number(x, lang, decimals, expected):
    assert format_number(x, lang, decimals) == expected


@pytest.mark.parametrize("ratio, lang, expected", [
    (0.9345, "vi", "93,45 %"),
    (0.9345, "en", "93.45%"),
    (1.0, "vi", "100,00 %"),
    (0.0, "en", "0.00%"),
    (0.904761904, "vi", "90,48 %"),
    (None, "vi", "–"),
])
def test_format_percent(ratio, lang, expected):
    assert format_percent(ratio, lang) == expected


VN = timezone(timedelta(hours=7))


@pytest.mark.parametrize("dt, lang, expected", [
    (datetime(2026, 12, 7, 14, 5, tzinfo=VN), "vi", "07/12/2026 14:05"),
    (datetime(2026, 12, 7, 14, 5, tzinfo=VN), "en", "2026-12-07 14:05"),
    (datetime(2026, 12, 7, 7, 5, tzinfo=timezone.utc), "vi", "07/12/2026 14:05"),  # shown in Vietnam time
    ("2026-03-10T16:00:00+07:00", "vi", "10/03/2026 16:00"),
    (None, "vi", "–"),
])
def test_format_datetime(dt, lang, expected):
    assert format_datetime(dt, lang) == expected


@pytest.mark.parametrize("d, lang, expected", [
    (date(2026, 3, 1), "vi", "01/03/2026"),
    (date(2026, 3, 1), "en", "2026-03-01"),
    (datetime(2026, 2, 28, 18, 0, tzinfo=timezone.utc), "vi", "01/03/2026"),
])
def test_format_date(d, lang, expected):
    assert format_date(d, lang) == expected


# --------------------------------------------------------------------------------------------------- CSV


def _read(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_csv_has_a_bom_and_vietnamese_headers_by_default():
    data = csv_bytes(["csv.dossier_code", "csv.state", "csv.overdue_working_hours"],
                     [["T99.S01-20260223-00003", t("state.open_overdue"), 7.4]])
    assert data.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in data
    assert _read(data) == [["Mã hồ sơ", "Tình trạng", "Số giờ làm việc quá hạn"],
                           ["T99.S01-20260223-00003", "quá hạn", "7.4"]]


def test_csv_in_english_with_mapping_rows_and_empty_cells():
    data = csv_bytes(["csv.unit_code", "csv.unit_name", "csv.ratio"],
                     [{"csv.unit_code": "T99.X005", "csv.unit_name": "UBND xã Mường Hum, Tân Lập", "csv.ratio": None}],
                     "en")
    assert _read(data) == [["Unit code", "Unit name", "Ratio"], ["T99.X005", "UBND xã Mường Hum, Tân Lập", ""]]


def test_csv_row_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        csv_bytes(["csv.unit_code", "csv.unit_name", "csv.ratio"], [["a", "b"]])

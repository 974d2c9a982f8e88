"""Reference data on compacted topics reaches every worker; a newer calendar moves computed deadlines only."""

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from models.calendar import WorkCalendar, load_calendar_file
from models.dossier import Context
from models.figures import replay, score_document
from streams.runtime.reference import ReferenceFollower, build_calendar
from tests.builders import SAMPLE_AT, sample_lines
from tests.procs import wait_for
from tests.test_stream import Deployment

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_2026 = ROOT / "models/calendars/vn-public-sector-2026.yaml"
NOW = datetime.fromisoformat(SAMPLE_AT)


def extra_day_off(tmp_path, version=2, day="2026-03-05"):
    """The bundled 2026 document plus one more day off (as a real correction would add a sudden closure)."""
    doc = yaml.safe_load(BUNDLED_2026.read_text())
    doc["version"] = version
    doc["non_working_days"].append({"date": day, "kind": "holiday", "name_vi": "Nghỉ đột xuất"})
    path = tmp_path / f"cal-v{version}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def test_follower_keeps_the_newest_valid_document(tmp_path):
    f = ReferenceFollower("unused:0", "cal", "units")
    v2 = extra_day_off(tmp_path).read_bytes()
    f.apply_record("cal", b"vn-public-sector:2026", v2)
    f.apply_record("cal", b"vn-public-sector:2026", BUNDLED_2026.read_bytes())  # older version: ignored
    f.apply_record("cal", b"vn-public-sector:2026", b"year: 2026\nversion: 9\nnon_working_days: nope\n")  # invalid
    f.apply_record("cal", b"vn-public-sector:2025", v2)  # key does not match the document
    gen, docs, _ = f.snapshot()
    assert [d.version for d in docs] == [2] and f.rejected["calendar"] == 2
    cal = build_calendar(docs)
    assert not cal.is_working_day(datetime(2026, 3, 5).date()) and WorkCalendar.default().is_working_day(datetime(2026, 3, 5).date())
    f.apply_record("units", b"T99.S01", json.dumps({"unit_code": "T99.S01", "level": "agency", "province_code": "T98"}).encode())
    f.apply_record("units", b"T99.S02", b'{"unit_code": "other"}')
    assert f.snapshot()[2] == {"T99.S01": {"province": "T98", "level": "agency", "name": None, "parent": None}}
    f.apply_record("units", b"T99.S01", None)  # tombstone
    assert f.snapshot()[2] == {}


@pytest.mark.broker
def test_a_newer_calendar_on_the_topic_moves_computed_deadlines_in_every_worker(kafka_bootstrap, topic_prefix, tmp_path):
    d = Deployment(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        w = d.worker()
        d.publish(sample_lines())
        cal_v2 = extra_day_off(tmp_path)
        ctx = Context(now=NOW, calendar=WorkCalendar.default().with_document(load_calendar_file(cal_v2)))
        rep = replay(list(enumerate(sample_lines(), 1)), ctx)
        want = {p: score_document(rep, p, ctx) for p in ("month:2026-03", "quarter:2026-Q1")}
        base = Context(now=NOW, calendar=WorkCalendar.default())
        unchanged = score_document(replay(list(enumerate(sample_lines(), 1)), base), "month:2026-03", base)
        assert unchanged["units"] != want["month:2026-03"]["units"]  # the correction does change figures
        bad = tmp_path / "bad.yaml"
        bad.write_text(cal_v2.read_text().replace("version: 2", "version: 3").replace("2026-03-05", "2027-03-05"))
        out = subprocess.run([sys.executable, "-m", "streams.tools.cli", "reference", "calendar", str(bad), "--broker",
                              kafka_bootstrap, "--topic", d.settings.calendar], capture_output=True, text=True)
        assert out.returncode == 2 and "not in year 2026" in out.stderr  # refused before it is published
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        producer.send(d.settings.calendar, key=b"vn-public-sector:2026", value=b"version: [broken")  # bypassing the CLI
        producer.flush()
        out = subprocess.run([sys.executable, "-m", "streams.tools.cli", "reference", "calendar", str(cal_v2), "--broker",
                              kafka_bootstrap, "--topic", d.settings.calendar], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        wait_for(
            lambda: all(w.get_json(f"/figures?period={p}")["units"] == want[p]["units"] for p in want),
            timeout=60, interval=1.0, what="figures under the corrected calendar")
        assert w.get_json("/figures?period=month:2026-03")["calendar"] == ctx.calendar.version
        units = tmp_path / "units.yaml"
        units.write_text(yaml.safe_dump([{"unit_code": "T99.S01", "name": "Sở Tư pháp", "level": "agency",
                                          "province_code": "T42"}], allow_unicode=True))
        out = subprocess.run([sys.executable, "-m", "streams.tools.cli", "reference", "units", str(units), "--broker",
                              kafka_bootstrap, "--topic", d.settings.units], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr

        def province_label():
            for fam in text_string_to_metric_families(w.metrics_text()):
                for s in fam.samples:
                    if s.name == "onestop_dossiers_population" and s.labels.get("unit") == "T99.S01":
                        return s.labels.get("province")
        wait_for(lambda: province_label() == "T42", timeout=30, what="the registry's province on the unit's series")
        producer.close()
    finally:
        d.close()

"""The event contract: every rejection names the field and the rule; the committed JSON Schema never drifts."""

import json
import types
import typing

import jsonschema
import msgspec
import pytest

from models import events as ev
from models.schema import SCHEMA_PATH, build_schema, schema_json
from tests.builders import envelope, iso, raw, received, sample_lines

GOOD_RECEIVED = envelope("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"))


def mutate(env: dict, path: str, value) -> bytes:
    """Set (or with value=... delete) a dotted path of a copy of the envelope."""
    doc = json.loads(json.dumps(env))
    node = doc
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return json.dumps(doc).encode()


BAD = [
    # (what, record, reason, words the message must contain)
    ("not JSON", b"{not json", "bad_json", ["JSON"]),
    ("truncated", json.dumps(GOOD_RECEIVED).encode()[:-7], "bad_json", ["JSON"]),
    ("invalid UTF-8", b'{"specversion": "1.0", "id": "\xff\xfe"}', "bad_json", []),
    ("array, not object", b"[1, 2]", "schema", ["object"]),
    ("huge", b'{"x": "' + b"a" * 70000 + b'"}', "too_large", ["65536"]),
    ("wrong spec version", mutate(GOOD_RECEIVED, "specversion", "0.3"), "schema", ["$.specversion"]),
    ("missing id", mutate(GOOD_RECEIVED, "id", ...), "schema", ["id"]),
    ("missing subject", mutate(GOOD_RECEIVED, "subject", ...), "schema", ["subject"]),
    ("time without zone", mutate(GOOD_RECEIVED, "time", "2026-03-02T08:00:00"), "schema", ["$.time", "timezone"]),
    ("time far past", mutate(GOOD_RECEIVED, "time", "1970-01-01T00:00:00+07:00"), "impossible_timeline", ["$.time"]),
    ("unknown type", mutate(GOOD_RECEIVED, "type", "vn.gov.dvc.dossier.teleported"), "unknown_type", ["teleported"]),
    ("foreign type", mutate(GOOD_RECEIVED, "type", "com.example.order"), "unknown_type", ["$.type"]),
    ("wrong channel", mutate(GOOD_RECEIVED, "data.channel", "fax"), "schema", ["$.data.channel", "fax"]),
    ("wrong type of field", mutate(GOOD_RECEIVED, "data.has_fee", "yes"), "schema", ["$.data.has_fee", "bool"]),
    ("missing unit", mutate(GOOD_RECEIVED, "data.handling_unit_code", ...), "schema", ["handling_unit_code"]),
    ("no due and no limit", mutate(GOOD_RECEIVED, "data.due_at", ...), "schema", ["due_at", "time_limit"]),
    ("zero time limit", mutate(GOOD_RECEIVED, "data.time_limit", {"value": 0, "unit": "working_day"}), "schema",
     ["$.data.time_limit.value"]),
    ("negative time limit", mutate(GOOD_RECEIVED, "data.time_limit", {"value": -3, "unit": "day"}), "schema",
     ["$.data.time_limit.value"]),
    ("unknown limit unit", mutate(GOOD_RECEIVED, "data.time_limit", {"value": 3, "unit": "fortnight"}), "schema",
     ["$.data.time_limit.unit"]),
    ("due before reception", mutate(GOOD_RECEIVED, "data.due_at", iso("2026-03-01 08:00")), "impossible_timeline",
     ["due_at", "received_at"]),
    ("a time limit of 121 months", mutate(GOOD_RECEIVED, "data.time_limit", {"value": 121, "unit": "month"}),
     "schema", ["$.data.time_limit.value", "ten years"]),
    ("a time limit of 2,501 working days", mutate(GOOD_RECEIVED, "data.time_limit",
                                                  {"value": 2501, "unit": "working_day"}), "schema", ["2501"]),
    ("due decades after reception", mutate(GOOD_RECEIVED, "data.due_at", iso("2099-03-01 08:00")),
     "impossible_timeline", ["due_at", "ten years"]),
    ("injection in a code", mutate(GOOD_RECEIVED, "data.handling_unit_code", "U1\"} or 1=1 --"), "schema",
     ["$.data.handling_unit_code"]),
    ("markup in subject", mutate(GOOD_RECEIVED, "subject", "<script>"), "schema", ["$.subject"]),
    ("rating out of range", raw("rated", "2026-03-03 09:00", {"rating": {"satisfied": True, "score_1_5": 9}}),
     "schema", ["$.data.rating.score_1_5"]),
    ("apology moving the date back", raw("due_rescheduled", "2026-03-03 09:00", {"apology": {
        "issued_at": iso("2026-03-03 09:00"), "previous_due_at": iso("2026-03-09 08:00"),
        "new_due_at": iso("2026-03-05 08:00")}}), "impossible_timeline", ["new_due_at"]),
    ("apology moving the date decades on", raw("due_rescheduled", "2026-03-03 09:00", {"apology": {
        "issued_at": iso("2026-03-03 09:00"), "previous_due_at": iso("2026-03-09 08:00"),
        "new_due_at": iso("2040-03-05 08:00")}}), "impossible_timeline", ["new_due_at", "ten years"]),
]


@pytest.mark.parametrize("what,record,reason,words", BAD, ids=[b[0] for b in BAD])
def test_bad_records_are_refused_with_a_reason_naming_the_field(what, record, reason, words):
    with pytest.raises(ev.EventError) as info:
        ev.decode_event(record)
    assert info.value.reason == reason, info.value
    for w in words:
        assert w.lower() in info.value.message.lower(), info.value.message


def test_a_valid_event_decodes_with_its_idempotency_key():
    e = ev.decode_event(json.dumps(GOOD_RECEIVED).encode())
    assert e.kind == "received" and e.subject == "D-1"
    assert e.key == (GOOD_RECEIVED["source"], GOOD_RECEIVED["id"])
    assert e.data.channel == "direct"


def test_unknown_extension_attributes_and_data_fields_are_ignored_not_stored():
    doc = json.loads(json.dumps(GOOD_RECEIVED))
    doc["traceparent"] = "00-abc"
    doc["data"]["applicant_name"] = "Nguyễn Văn A"  # a publisher must not send it; we must not keep it
    e = ev.decode_event(json.dumps(doc).encode())
    assert not hasattr(e.data, "applicant_name")


def test_content_digest_tells_a_true_duplicate_from_a_reused_id():
    a = ev.decode_event(json.dumps(GOOD_RECEIVED).encode())
    b = ev.decode_event(json.dumps(GOOD_RECEIVED).encode())
    c = ev.decode_event(mutate(GOOD_RECEIVED, "data.channel", "online"))
    assert a.digest == b.digest != c.digest


def test_every_event_type_has_a_data_shape_in_the_schema():
    schema = build_schema()
    kinds = [b["if"]["properties"]["type"]["const"] for b in schema["allOf"]]
    assert kinds == [ev.TYPE_PREFIX + k for k in ev.EVENT_TYPES]
    assert len(ev.EVENT_TYPES) == 19
    for b in schema["allOf"]:
        assert b["then"]["properties"]["data"]["$ref"].removeprefix("#/$defs/") in schema["$defs"]


def test_committed_schema_matches_the_code():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_json(), (
        "models/schema/dossier-event.schema.json is stale: run `onestop schema --write` and commit it")


def test_schema_is_valid_2020_12_and_agrees_with_the_decoder_on_the_sample():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for line in sample_lines()[:400]:
        assert not list(validator.iter_errors(json.loads(line)))
        ev.decode_event(line)


@pytest.mark.parametrize("what,record,reason,words", [b for b in BAD if b[2] == "schema" and b[0] not in (
    "no due and no limit", "array, not object")], ids=lambda x: x if isinstance(x, str) else "")
def test_schema_rejects_what_the_decoder_rejects(what, record, reason, words):
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    assert list(validator.iter_errors(json.loads(record))), what


@pytest.mark.parametrize("record,reason,words", [
    (mutate(GOOD_RECEIVED, "data.received_at", "2150-01-01T00:00:00+07:00"), "impossible_timeline", ["$.data.received_at"]),
    (raw("processed", "2026-03-03 09:00", {"processing_ended_at": "9999-01-01T00:00:00+07:00"}), "impossible_timeline",
     ["$.data.processing_ended_at"]),
    (json.dumps(GOOD_RECEIVED).encode().replace(b'"data": {', b'"data": {"note": "' + bytes([0xFF]) + b'", ', 1),
     "bad_json", ["UTF-8"]),
])
def test_dates_inside_data_are_range_checked_and_ignored_members_must_be_utf8(record, reason, words):
    with pytest.raises(ev.EventError) as info:
        ev.decode_event(record)
    assert info.value.reason == reason and all(w in info.value.message for w in words), info.value


def _date_time_properties(schema: dict, defs: dict, path: str = "") -> set[str]:
    """Paths of every property the JSON Schema says is a date-time (the schema is generated apart from the walk)."""
    if "$ref" in schema:
        return _date_time_properties(defs[schema["$ref"].rsplit("/", 1)[1]], defs, path)
    found = {path} if schema.get("format") == "date-time" else set()
    for alt in schema.get("anyOf", []):
        found |= _date_time_properties(alt, defs, path)
    if "items" in schema:
        found |= _date_time_properties(schema["items"], defs, path + "[]")
    for name, sub in schema.get("properties", {}).items():
        found |= _date_time_properties(sub, defs, f"{path}.{name}")
    return found


@pytest.mark.parametrize("kind", sorted(ev.DATA_TYPES))
def test_the_date_range_check_visits_every_field_that_can_hold_a_date_time(kind):
    # The per-event walk only visits fields it worked out may hold a date-time; a field it missed would let a year
    # 1900 or 2300 inside data through. Compare with the schema's own list of date-time properties.
    cls = ev.DATA_TYPES[kind]
    (schema,), components = msgspec.json.schema_components([cls])
    from_schema = _date_time_properties(schema, components)

    def walked(c: type, path: str = "") -> set[str]:
        out: set[str] = set()
        hints = typing.get_type_hints(c, include_extras=True)
        for name in ev._time_fields(c):
            tp = hints[name]
            while typing.get_origin(tp) in (typing.Annotated, typing.Union, types.UnionType):
                tp = next(a for a in typing.get_args(tp) if a is not type(None))
            if typing.get_origin(tp) is list:
                out |= walked(typing.get_args(tp)[0], f"{path}.{name}[]")
            elif isinstance(tp, type) and issubclass(tp, msgspec.Struct):
                out |= walked(tp, f"{path}.{name}")
            else:
                out.add(f"{path}.{name}")
        return out

    assert walked(cls) == from_schema


# The range is of instants, not of the years written: near its ends the offset decides (the common path looks at
# the year alone only well inside the range).
@pytest.mark.parametrize("stamp,inside", [
    ("2000-01-01T05:00:00+07:00", False),  # 1999-12-31T22:00Z
    ("1999-12-31T20:00:00-05:00", True),  # 2000-01-01T01:00Z
    ("2000-01-01T00:00:00+00:00", True),
    ("2099-12-31T23:00:00-05:00", False),  # 2100-01-01T04:00Z
    ("2100-01-01T05:00:00+07:00", True),  # 2099-12-31T22:00Z
    ("2098-06-01T00:00:00+07:00", True),
])
def test_the_date_range_is_of_instants_near_both_ends(stamp, inside):
    at_envelope = mutate(GOOD_RECEIVED, "time", stamp)
    in_data = raw("processed", "2026-03-03 09:00", {"processing_ended_at": stamp})
    in_a_struct = raw("transferred", "2026-03-03 09:00", {"from_unit_code": "A", "to_unit_code": "B",
                                                        "step": {"started_at": stamp}})
    for record, field in ((at_envelope, "$.time"), (in_data, "$.data.processing_ended_at"),
                          (in_a_struct, "$.data.step.started_at")):
        if inside:
            ev.decode_event(record)
        else:
            with pytest.raises(ev.EventError) as info:
                ev.decode_event(record)
            assert info.value.reason == "impossible_timeline" and field in info.value.message, info.value

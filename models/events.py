"""The published event contract: CloudEvents 1.0 in structured JSON mode.

One-stop systems (iGate, OpenCPS, ...) publish one event per step of a dossier. The envelope is CloudEvents so
that publishers can use any CloudEvents SDK; ``type`` is ``vn.gov.dvc.dossier.<event>``, ``subject`` is the dossier
code (also the Kafka key), ``time`` is when the step happened (event time decides every figure), and
``source`` + ``id`` is the idempotency key. ``data`` holds the snake_case fields of the domain reference (§5.4).

Everything here is plain data and validation; nothing knows about Kafka. Decoding is done with msgspec because a
replay of years of history goes through this function millions of times: it validates while it parses.
"""

from __future__ import annotations

import hashlib
import typing
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

TYPE_PREFIX = "vn.gov.dvc.dossier."
MAX_EVENT_BYTES = 64 * 1024
"""Largest record accepted. A dossier step is a few hundred bytes; anything near this is an attachment or an attack."""

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
TIMELINE_TOLERANCE = timedelta(minutes=5)
"""Clock skew tolerated between the systems that stamp one dossier's steps before a timeline counts as impossible."""
MAX_DEADLINE_SPAN = timedelta(days=3653)
"""Longest span from reception (or a previous due date) to a due date. Real limits are days to months; a deadline
decades ahead is a publisher's error, costs seconds of calendar work, and past 2100 has no calendar at all."""
MAX_TIME_LIMIT = {"hour": 3650, "working_day": 2500, "day": 3650, "month": 120}
"""The same ten years as a published time limit, per unit (2,500 working days is a little over ten years; 3,650
days is also the bound every value has in the schema, so a day limit the rule admits is one the schema admits)."""
TIME_LIMIT_VALUE_MAX = max(MAX_TIME_LIMIT.values())
"""The schema's bound on a time limit's value, whatever its unit."""

# ---------------------------------------------------------------------------------------------------------------
# Field types. Codes are restricted to the characters real codes use, so that nothing a publisher sends can inject
# markup, PromQL or CSV formulas into dashboards and exports downstream.
AwareDatetime = Annotated[datetime, Meta(tz=True, description="RFC 3339 date-time with an offset, e.g. 2026-03-02T08:15:00+07:00")]
Code = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$",
                           description="An identifier: letters, digits, '.', '_' and '-'")]
EventId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
SourceRef = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$",
                                description="The publishing system, e.g. igate.example-province")]
Text = Annotated[str, Meta(max_length=500)]
Amount = Annotated[int, Meta(ge=0, le=10**13)]

Channel = Literal["direct", "online", "postal"]
UnitLevel = Literal["ministry", "province", "agency", "district_legacy", "commune"]
OnlineServiceLevel = Literal["full", "partial", "none"]


class TimeLimit(Struct, forbid_unknown_fields=True):
    """Thời hạn giải quyết: the procedure's time limit as published, with its unit."""

    value: Annotated[float, Meta(gt=0, le=TIME_LIMIT_VALUE_MAX)]
    unit: Literal["hour", "day", "working_day", "month"]


class Component(Struct):
    component_code: Code | None = None
    digitized: bool = False
    reused_digitized_data: bool = False
    from_personal_data_store: bool = False
    national_db_code: Code | None = None


class Result(Struct):
    result_code: Code | None = None
    electronic: bool = False
    file_link_present: bool | None = None
    digitally_signed: bool | None = None


class Fee(Struct):
    fee_code: Code | None = None
    amount_vnd: Amount = 0
    collection_stage: Annotated[int, Meta(ge=0, le=9)] | None = None


class Step(Struct):
    step_code: Code | None = None
    unit_code: Code | None = None
    started_at: AwareDatetime | None = None
    step_due_at: AwareDatetime | None = None


class SupplementRequest(Struct):
    request_id: Code
    requested_at: AwareDatetime
    reason: Text | None = None
    deadline_at: AwareDatetime | None = None


class SupplementCompletion(Struct):
    request_id: Code
    completed_at: AwareDatetime


class Apology(Struct):
    issued_at: AwareDatetime
    previous_due_at: AwareDatetime
    new_due_at: AwareDatetime
    reason: Text | None = None


class Rating(Struct):
    satisfied: bool
    score_1_5: Annotated[int, Meta(ge=1, le=5)] | None = None
    source: Literal["national_portal", "kiosk", "qr", "sms", "other"] | None = None


# ---------------------------------------------------------------------------------------------------------------
# `data` of each event type. Unknown fields are ignored (publishers evolve faster than consumers) and never stored,
# which is also how personal fields a publisher should not have sent (names, phone numbers) are dropped.


class Submitted(Struct):
    procedure_code: Code
    channel: Channel
    submitted_at: AwareDatetime
    receiving_unit_code: Code


class Received(Struct):
    """Tiếp nhận hồ sơ: the clock starts. Carries everything that attributes the dossier to a unit and a deadline."""

    procedure_code: Code
    handling_unit_code: Code
    receiving_unit_code: Code
    channel: Channel
    received_at: AwareDatetime
    due_at: AwareDatetime | None = None
    time_limit: TimeLimit | None = None
    province_code: Code | None = None
    unit_level: UnitLevel | None = None
    has_fee: bool = False
    result_is_paper_document: bool = False
    online_service_level: OnlineServiceLevel | None = None
    has_digitized_components: bool = False
    submitted_at: AwareDatetime | None = None
    submitted_via_national_portal: bool | None = None
    vneid_authenticated: bool = False
    pause_on_payment_request: bool | None = None
    components: list[Component] = []


class ReceptionRefused(Struct):
    reason: Text | None = None
    refused_at: AwareDatetime | None = None


class StepChanged(Struct):
    step: Step | None = None


class Transferred(Struct):
    from_unit_code: Code
    to_unit_code: Code
    step: Step | None = None


class SupplementRequested(Struct):
    supplement: SupplementRequest


class SupplementReceived(Struct):
    supplement: SupplementCompletion
    due_at: AwareDatetime | None = None


class PaymentRequested(Struct):
    fees: list[Fee] = []
    requested_at: AwareDatetime | None = None


class PaymentCompleted(Struct):
    paid_online: bool
    payment_channel: Literal["national_portal", "local_gateway", "cash", "bank_transfer", "none"] | None = None
    amount_vnd: Amount | None = None
    paid_at: AwareDatetime | None = None


class WithdrawalRequested(Struct):
    requested_at: AwareDatetime | None = None


class Withdrawn(Struct):
    withdrawn_at: AwareDatetime | None = None


class Stopped(Struct):
    reason: Text | None = None
    stopped_at: AwareDatetime | None = None


class Processed(Struct):
    processing_ended_at: AwareDatetime
    results: list[Result] = []
    from_step: Annotated[bool, Meta(description=(
        "true when the end of processing is read from a processing step of the one-stop system (its last such "
        "step counts) rather than stated as a date of its own (the earliest counts, and it wins over any step)"))] = False


class ResultReturned(Struct):
    returned_at: AwareDatetime
    return_method: Literal["direct", "postal", "online"] | None = None


class DueRescheduled(Struct):
    apology: Apology


class ComponentDigitized(Struct):
    components: Annotated[list[Component], Meta(min_length=1)]


class ResultIssued(Struct):
    results: Annotated[list[Result], Meta(min_length=1)]


class Rated(Struct):
    rating: Rating


class SupplementInfo(Struct):
    request_id: Code
    requested_at: AwareDatetime
    completed_at: AwareDatetime | None = None


class Snapshot(Received):
    """The full current state of a dossier, for bootstrapping from a system that cannot replay its history."""

    processing_ended_at: AwareDatetime | None = None
    returned_at: AwareDatetime | None = None
    stopped_at: AwareDatetime | None = None
    withdrawn_at: AwareDatetime | None = None
    refused_at: AwareDatetime | None = None
    supplements: list[SupplementInfo] = []
    paid_online: bool | None = None
    results: list[Result] = []
    rating: Rating | None = None


DATA_TYPES: dict[str, type[Struct]] = {
    "submitted": Submitted,
    "received": Received,
    "reception_refused": ReceptionRefused,
    "step_changed": StepChanged,
    "transferred": Transferred,
    "supplement_requested": SupplementRequested,
    "supplement_received": SupplementReceived,
    "payment_requested": PaymentRequested,
    "payment_completed": PaymentCompleted,
    "withdrawal_requested": WithdrawalRequested,
    "withdrawn": Withdrawn,
    "stopped": Stopped,
    "processed": Processed,
    "result_returned": ResultReturned,
    "due_rescheduled": DueRescheduled,
    "component_digitized": ComponentDigitized,
    "result_issued": ResultIssued,
    "rated": Rated,
    "snapshot": Snapshot,
}
EVENT_TYPES = tuple(DATA_TYPES)


class Envelope(Struct):
    """CloudEvents 1.0 context attributes. Extension attributes other than ``sequence`` are accepted and ignored."""

    specversion: Literal["1.0"]
    id: EventId
    source: SourceRef
    type: Annotated[str, Meta(max_length=80)]
    time: AwareDatetime
    subject: Code
    data: msgspec.Raw
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: Annotated[str, Meta(max_length=300)] | None = None
    sequence: Annotated[int, Meta(ge=0, le=2**53)] | None = None


class Event(Struct, frozen=True):
    """A validated event. ``kind`` is the short type name (``received``); ``digest`` identifies its content."""

    id: str
    source: str
    kind: str
    time: datetime
    subject: str
    data: Struct
    sequence: int | None
    digest: bytes

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.id)


class EventError(ValueError):
    """A rejected record. ``reason`` is a small fixed vocabulary (it becomes a metric label and a DLQ header)."""

    REASONS = ("too_large", "bad_json", "schema", "unknown_type", "impossible_timeline", "missing_key",
               "key_mismatch", "future_event", "conflicting_duplicate", "too_many_events")

    def __init__(self, reason: str, message: str):
        assert reason in self.REASONS, reason
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


_ENVELOPE = msgspec.json.Decoder(Envelope)
_DATA = {kind: msgspec.json.Decoder(cls) for kind, cls in DATA_TYPES.items()}
_ENCODER = msgspec.json.Encoder()


def _schema_message(exc: msgspec.ValidationError, prefix: str = "$") -> str:
    # msgspec says e.g. "Expected `str`, got `int` - at `$.subject`"; data is decoded on its own, so re-root its path.
    return str(exc).replace("`$", f"`{prefix}")


def decode_event(raw: bytes | str) -> Event:
    """Parse and validate one record; raise EventError naming the field and the rule on any problem."""
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError("too_large", f"record of {len(raw)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")
    if not raw.isascii():  # ASCII is UTF-8; only other records pay for the full check
        try:
            raw.decode("utf-8")  # msgspec skips ignored members unread; JSON must be UTF-8 throughout (RFC 8259)
        except UnicodeDecodeError as exc:
            raise EventError("bad_json", f"not valid UTF-8 JSON (byte {exc.start})") from None
    try:
        env = _ENVELOPE.decode(raw)
    except msgspec.ValidationError as exc:
        raise EventError("schema", _schema_message(exc)) from None
    except msgspec.DecodeError as exc:
        raise EventError("bad_json", f"not a JSON object: {exc}") from None
    except UnicodeDecodeError as exc:
        raise EventError("bad_json", f"not valid UTF-8 JSON (byte {exc.start})") from None
    except RecursionError:
        raise EventError("bad_json", "JSON nested too deeply") from None
    if not env.type.startswith(TYPE_PREFIX) or env.type[len(TYPE_PREFIX):] not in _DATA:
        raise EventError("unknown_type", f"`$.type` {env.type[:80]!r} is not one of {TYPE_PREFIX}<{'|'.join(EVENT_TYPES)}>")
    kind = env.type[len(TYPE_PREFIX):]
    try:
        data = _DATA[kind].decode(env.data)
    except msgspec.ValidationError as exc:
        raise EventError("schema", _schema_message(exc, "$.data")) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise EventError("bad_json", f"`$.data` is not valid JSON: {exc}") from None
    time = env.time
    if not 2000 < time.year < 2099:  # inside these years the offset cannot matter; compare instants only near the ends
        _check_times(time, "$.time")
    if not _times_in_range(data):
        _check_data_times(data, "$.data")
    _check_data(kind, data)
    digest = _blake2b(
        b"|".join((env.type.encode(), time.isoformat().encode(), env.subject.encode(), _ENCODER.encode(data))),
        digest_size=8,
    ).digest()
    return Event(env.id, env.source, kind, time, env.subject, data, env.sequence, digest)


_blake2b = hashlib.blake2b


def _check_times(t: datetime, field: str) -> None:
    if not EARLIEST <= t < LATEST:
        raise EventError("impossible_timeline", f"`{field}` {t.isoformat()} is outside 2000-01-01..2100-01-01")


def _check_data_times(node, path: str) -> None:
    """Every date-time a payload carries is held to the same 2000-2100 range as the envelope's."""
    bad = _first_bad_time(node)
    if bad is not None:  # the field's path is spelled out only for the message, never on the common path
        t, where = bad
        _check_times(t, path + "".join(reversed(where)))


def _can_hold_time(tp) -> bool:
    """Whether a value of this annotated type can contain a date-time (directly, in a struct, or in a list)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _can_hold_time(typing.get_args(tp)[0])
    if tp is datetime:
        return True
    if isinstance(tp, type) and issubclass(tp, Struct):
        return bool(_time_fields(tp))
    if origin is not None:  # list[...], X | None, Union[...]
        return any(_can_hold_time(a) for a in typing.get_args(tp))
    return False


_TIME_FIELDS: dict[type, tuple[str, ...]] = {}


def _time_fields(cls: type) -> tuple[str, ...]:
    """The fields of a struct class that can hold a date-time, in declaration order; worked out once per class so
    the per-event walk visits only those (a payload has a few among its dozens of fields)."""
    found = _TIME_FIELDS.get(cls)
    if found is None:
        _TIME_FIELDS[cls] = ()  # a struct that contains itself ends the recursion here
        hints = typing.get_type_hints(cls, include_extras=True)
        found = _TIME_FIELDS[cls] = tuple(n for n in cls.__struct_fields__ if _can_hold_time(hints[n]))
    return found


_TIME_SHAPES: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _time_shape(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A struct class's time-holding fields, split into those holding a date-time (or None) and those holding a
    struct or a list: the common path compares the first kind directly and walks only into the second."""
    shape = _TIME_SHAPES.get(cls)
    if shape is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        flat = tuple(n for n in _time_fields(cls) if _holds_only_time(hints[n]))
        shape = _TIME_SHAPES[cls] = (flat, tuple(n for n in _time_fields(cls) if n not in flat))
    return shape


def _holds_only_time(tp) -> bool:
    """Whether every value of this annotated type is a date-time or None."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _holds_only_time(typing.get_args(tp)[0])
    if origin is not None and all(a is type(None) or _holds_only_time(a) for a in typing.get_args(tp)):
        return origin is not list
    return tp is datetime


def _times_in_range(node) -> bool:
    """Whether every date-time under ``node`` is within 2000..2100: the cheap test every event takes; the walk
    that names the first bad field (``_first_bad_time``) runs only when this says no."""
    if isinstance(node, datetime):
        return 2000 < node.year < 2099 or EARLIEST <= node < LATEST
    if type(node) is list:
        for item in node:
            if not _times_in_range(item):
                return False
        return True
    flat, nested = _time_shape(type(node))
    for name in flat:
        t = getattr(node, name)
        # Comparing aware date-times converts both to UTC; a year well inside the range needs no comparison.
        if t is not None and not 2000 < t.year < 2099 and not EARLIEST <= t < LATEST:
            return False
    for name in nested:
        value = getattr(node, name)
        if value is not None and not _times_in_range(value):
            return False
    return True


def _first_bad_time(node) -> tuple[datetime, list[str]] | None:
    """The first out-of-range date-time in field order (as the rule is read), with its path reversed."""
    if isinstance(node, datetime):
        return None if EARLIEST <= node < LATEST else (node, [])
    if isinstance(node, Struct):
        for name in _time_fields(type(node)):
            value = getattr(node, name)
            if value is None:
                continue
            bad = _first_bad_time(value)
            if bad is not None:
                bad[1].append(f".{name}")
                return bad
    elif isinstance(node, list):
        for i, item in enumerate(node):
            bad = _first_bad_time(item)
            if bad is not None:
                bad[1].append(f"[{i}]")
                return bad
    return None


def _check_data(kind: str, data: Struct) -> None:
    """Rules that a schema cannot say: required alternatives and the order of times inside one event."""
    if isinstance(data, Received):
        if data.due_at is None and data.time_limit is None:
            raise EventError("schema", "`$.data`: a received event needs `due_at` or `time_limit` (or both)")
        _check_times(data.received_at, "$.data.received_at")
        if data.due_at is not None and data.due_at <= data.received_at:
            raise EventError("impossible_timeline", "`$.data.due_at` must be later than `$.data.received_at`")
        if data.submitted_at is not None and data.submitted_at > data.received_at + TIMELINE_TOLERANCE:
            raise EventError("impossible_timeline", "`$.data.submitted_at` is later than `$.data.received_at`")
        limit = data.time_limit
        if limit is not None and limit.unit in ("day", "month") and limit.value != int(limit.value):
            raise EventError("schema", "`$.data.time_limit.value` must be a whole number for unit day or month")
        if limit is not None and limit.value > MAX_TIME_LIMIT[limit.unit]:
            raise EventError("schema", f"`$.data.time_limit.value` {limit.value:g} is more than the "
                                       f"{MAX_TIME_LIMIT[limit.unit]} {limit.unit}s (ten years) accepted")
        if data.due_at is not None and data.due_at > data.received_at + MAX_DEADLINE_SPAN:
            raise EventError("impossible_timeline", "`$.data.due_at` is more than ten years after `$.data.received_at`")
    if isinstance(data, Snapshot):
        for name in ("processing_ended_at", "returned_at", "stopped_at", "withdrawn_at"):
            t = getattr(data, name)
            if t is not None and t + TIMELINE_TOLERANCE < data.received_at:
                raise EventError("impossible_timeline", f"`$.data.{name}` is earlier than `$.data.received_at`")
    elif isinstance(data, DueRescheduled):
        if data.apology.new_due_at <= data.apology.previous_due_at:
            raise EventError("impossible_timeline", "`$.data.apology.new_due_at` must be later than `previous_due_at`")
        if data.apology.new_due_at > data.apology.previous_due_at + MAX_DEADLINE_SPAN:
            raise EventError("impossible_timeline",
                             "`$.data.apology.new_due_at` is more than ten years after `previous_due_at`")


def event_to_json(envelope: dict) -> bytes:
    """Serialise an envelope dict for publishing (used by the simulator and the publisher client)."""
    return _ENCODER.encode(envelope)


def make_envelope(kind: str, *, event_id: str, source: str, subject: str, time: datetime, data: dict,
                  sequence: int | None = None) -> dict:
    """Build the dict of a CloudEvent of this contract; publishers validate it with ``decode_event`` before sending."""
    env = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": TYPE_PREFIX + kind,
        "time": time.isoformat(),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }
    if sequence is not None:
        env["sequence"] = sequence
    return env

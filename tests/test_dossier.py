"""Timeliness rules of the state machine, one table row per rule of the domain reference (§2.5, §2.7, §2.8)."""

from datetime import timedelta

import msgspec
import pytest

from models.calendar import WorkCalendar
from models.config import MonitorConfig
from models.dossier import Context, apply, decode_state, encode_state
from models.evaluation import alerts_of, evaluate, next_change_at
from models.events import EventError
from tests.builders import event, iso, received, t

CAL = WorkCalendar.default()
NOW = t("2026-03-31 16:00")

# 2026-03-02 is a Monday; March 2026 has no holiday.
REC = ("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"))


def sup_req(when, rid="BS1"):
    return ("supplement_requested", when, {"supplement": {"request_id": rid, "requested_at": iso(when)}})


def sup_done(when, rid="BS1"):
    return ("supplement_received", when, {"supplement": {"request_id": rid, "completed_at": iso(when)}})


def processed(when, electronic=False):
    return ("processed", when, {"processing_ended_at": iso(when), "results": [{"electronic": electronic}]})


def step_processed(when):
    """The end of processing as a one-stop system's processing step reports it (DVCQG progress step 9)."""
    return ("processed", when, {"processing_ended_at": iso(when), "results": [], "from_step": True})


def apology(issued, new_due, prev="2026-03-09 08:00"):
    return ("due_rescheduled", issued, {"apology": {"issued_at": iso(issued), "previous_due_at": iso(prev),
                                                    "new_due_at": iso(new_due)}})


def fold(steps, now=NOW, config=MonitorConfig()):
    ctx = Context(now=t(now) if isinstance(now, str) else now, calendar=CAL, config=config)
    state = None
    for kind, when, data in steps:
        state, _ = apply(state, event(kind, when, data), ctx)
    return state, ctx


def judged(steps, now=NOW, config=MonitorConfig()):
    state, ctx = fold(steps, now, config)
    view = evaluate(state, ctx)
    return view, view.judge(ctx.now)


TIMELINESS = [
    # (rule, steps, judged at, on_time, bucket)
    ("ended a day before the due date is early", [REC, processed("2026-03-06 10:00")], NOW, True, "ended_early"),
    ("ended on the due date, before the due time", [("received", "2026-03-02 15:00",
        received("2026-03-02 15:00", due="2026-03-09 15:00")), processed("2026-03-09 09:00")], NOW, True, "ended_on_time"),
    ("ended after the due time is late", [REC, processed("2026-03-09 08:01")], NOW, False, "ended_late"),
    ("supplement interval is removed", [REC, sup_req("2026-03-03 09:00"), sup_done("2026-03-06 09:00"),
                                        processed("2026-03-11 10:00")], NOW, True, "ended_early"),
    ("a second supplement request makes it late", [REC, sup_req("2026-03-03 09:00"), sup_done("2026-03-03 15:00"),
        sup_req("2026-03-04 09:00", "BS2"), sup_done("2026-03-04 15:00", "BS2"), processed("2026-03-05 10:00")],
     NOW, False, "ended_late"),
    ("waiting for the only supplement: judged at the request", [REC, sup_req("2026-03-05 09:00")], NOW, True,
     "open_awaiting_supplement"),
    ("supplement requested after the due date", [REC, sup_req("2026-03-10 09:00")], NOW, False,
     "open_awaiting_supplement"),
    ("withdrawn before the due date ends the clock on time", [REC, ("withdrawal_requested", "2026-03-04 09:00", {}),
        ("withdrawn", "2026-03-04 10:00", {})], NOW, True, "ended_early"),
    ("stopped after the due date is late", [REC, ("stopped", "2026-03-10 09:00", {"reason": "x"})], NOW, False,
     "ended_late"),
    ("returned without a processed step: the return ends it", [REC, ("result_returned", "2026-03-06 09:00",
        {"returned_at": iso("2026-03-06 09:00")})], NOW, True, "ended_early"),
    ("processed is preferred over an earlier-recorded return", [REC, processed("2026-03-10 09:00"),
        ("result_returned", "2026-03-10 10:00", {"returned_at": iso("2026-03-10 10:00")})], NOW, False, "ended_late"),
    ("an apology does not make a late dossier on time", [REC, apology("2026-03-05 09:00", "2026-03-12 08:00"),
        processed("2026-03-11 09:00")], NOW, False, "ended_late"),
    ("open within the deadline", [REC], "2026-03-03 09:00", True, "open_within"),
    ("open, less than one working day left: due soon", [REC], "2026-03-06 09:00", True, "open_due_soon"),
    ("open past the due: overdue", [REC], "2026-03-09 08:01", False, "open_overdue"),
    ("open exactly at the due time is not yet overdue", [REC], "2026-03-09 08:00", True, "open_due_soon"),
    ("a completed supplement moves the open dossier's due", [REC, sup_req("2026-03-03 08:00"),
        sup_done("2026-03-05 08:00")], "2026-03-10 09:00", True, "open_due_soon"),
]


END_OF_PROCESSING = [
    # (rule, steps, end of processing)
    ("a stated end: the earliest counts", [REC, processed("2026-03-10 09:00"), processed("2026-03-06 10:00")],
     "2026-03-06 10:00"),
    ("from processing steps only: the last counts", [REC, step_processed("2026-03-04 09:00"),
                                                     step_processed("2026-03-10 15:00")], "2026-03-10 15:00"),
    ("a step marked done at a supplement request, then the real end", [
        REC, step_processed("2026-03-03 09:00"), sup_req("2026-03-03 09:00"), sup_done("2026-03-05 09:00"),
        step_processed("2026-03-11 10:00")], "2026-03-11 10:00"),
    ("a stated end wins over a later step", [REC, step_processed("2026-03-12 09:00"), processed("2026-03-06 10:00")],
     "2026-03-06 10:00"),
    ("a stated end wins over an earlier step", [REC, processed("2026-03-06 10:00"), step_processed("2026-03-04 09:00")],
     "2026-03-06 10:00"),
    ("a stop before the end from steps ends it", [REC, step_processed("2026-03-12 09:00"),
                                                  ("stopped", "2026-03-05 09:00", {"reason": "x"})], "2026-03-05 09:00"),
]


@pytest.mark.parametrize("rule,steps,end", END_OF_PROCESSING, ids=[r[0] for r in END_OF_PROCESSING])
def test_end_of_processing(rule, steps, end):
    for order in (steps, [steps[0]] + steps[:0:-1]):  # as sent, and the steps in reverse
        state, ctx = fold(order)
        assert evaluate(state, ctx).end_at == t(end), order


def test_the_end_read_from_steps_decides_the_judgement():
    early, _ = judged([REC, step_processed("2026-03-03 09:00")])
    late, judgement = judged([REC, step_processed("2026-03-03 09:00"), step_processed("2026-03-10 09:00")])
    assert early.judge(NOW).on_time and (judgement.on_time, judgement.bucket) == (False, "ended_late")


@pytest.mark.parametrize("rule,steps,now,on_time,bucket", TIMELINESS, ids=[r[0] for r in TIMELINESS])
def test_timeliness(rule, steps, now, on_time, bucket):
    _, j = judged(steps, now)
    assert (j.on_time, j.bucket) == (on_time, bucket)


def test_judge_against_the_rescheduled_date_when_configured():
    steps = [REC, apology("2026-03-05 09:00", "2026-03-12 08:00"), processed("2026-03-11 09:00")]
    _, j = judged(steps, config=MonitorConfig(judge_against="rescheduled"))
    assert j.on_time


@pytest.mark.parametrize("issued,in_time", [("2026-03-05 09:00", True), ("2026-03-06 08:00", True),
                                            ("2026-03-06 08:30", False), ("2026-03-09 09:00", False)])
def test_apology_counts_only_if_issued_a_working_day_before_the_due(issued, in_time):
    view, _ = judged([REC, apology(issued, "2026-03-12 08:00"), processed("2026-03-11 09:00")])
    assert view.apology_in_time is in_time


def test_due_date_is_computed_from_the_time_limit_when_the_slip_has_none():
    view, _ = judged([("received", "2026-03-02 14:00", received("2026-03-02 14:00", limit=(5, "working_day")))])
    assert view.original_due_at == t("2026-03-09 14:00") and view.due_source == "computed"


def test_a_slip_date_differing_from_the_calendar_is_kept_and_flagged():
    view, _ = judged([("received", "2026-03-02 14:00",
                       received("2026-03-02 14:00", due="2026-03-10 14:00", limit=(5, "working_day")))])
    assert view.original_due_at == t("2026-03-10 14:00") and view.due_mismatch


def test_a_deadline_across_tet_2026_skips_the_holidays():
    view, _ = judged([("received", "2026-02-12 10:00", received("2026-02-12 10:00", limit=(5, "working_day")))],
                     now="2026-02-12 11:00")
    # Thu 12, Fri 13, (Tết 16-20 off, weekend 21-22), Mon 23, Tue 24, Wed 25, Thu 26
    assert view.original_due_at == t("2026-02-26 10:00")


def test_payment_pause_only_when_the_procedure_says_so():
    steps = [REC, ("payment_requested", "2026-03-03 09:00", {"fees": [{"amount_vnd": 50000}]}),
             ("payment_completed", "2026-03-06 09:00", {"paid_online": True, "paid_at": iso("2026-03-06 09:00")}),
             processed("2026-03-10 09:00")]
    assert not judged(steps)[1].on_time
    assert judged(steps, config=MonitorConfig(pause_on_payment_request=True))[1].on_time


def test_a_refused_dossier_is_never_counted():
    state, ctx = fold([("reception_refused", "2026-03-02 08:00", {"reason": "không thuộc thẩm quyền"})])
    assert evaluate(state, ctx) is None


def test_duplicates_change_nothing_and_a_reused_id_with_other_content_is_refused():
    ctx = Context(now=NOW, calendar=CAL)
    e = event(*REC, event_id="same")
    s1, eff1 = apply(None, e, ctx)
    s2, eff2 = apply(s1, e, ctx)
    assert not eff1.duplicate and eff2.duplicate and s2 == s1
    other = event("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-10 08:00"), event_id="same")
    with pytest.raises(EventError) as info:
        apply(s1, other, ctx)
    assert info.value.reason == "conflicting_duplicate"


def test_events_before_the_reception_arrive_first_and_still_count():
    steps = [("rated", "2026-03-07 09:00", {"rating": {"satisfied": False}}), processed("2026-03-06 10:00"), REC]
    view, j = judged(steps)
    assert j.bucket == "ended_early" and view.satisfied is False


@pytest.mark.parametrize("steps,words", [
    ([REC, processed("2026-02-20 10:00")], "before the dossier was received"),
    ([processed("2026-02-20 10:00"), REC], "already handled"),
    ([REC, sup_done("2026-03-03 09:00"), sup_req("2026-03-04 09:00")], "requested after it was completed"),
])
def test_impossible_timelines_are_refused(steps, words):
    with pytest.raises(EventError) as info:
        fold(steps)
    assert info.value.reason == "impossible_timeline" and words in info.value.message


def test_future_events_are_refused():
    with pytest.raises(EventError) as info:
        fold([REC], now="2026-02-01 08:00")
    assert info.value.reason == "future_event"


def test_state_round_trips_through_storage():
    state, _ = fold([REC, sup_req("2026-03-03 09:00"), apology("2026-03-05 09:00", "2026-03-12 08:00"),
                     ("rated", "2026-03-07 09:00", {"rating": {"satisfied": True}})])
    assert decode_state(encode_state(state)) == state


ALERTS = [
    ("overdue and no apology", [REC], "2026-03-09 09:00", {"overdue", "apology_missing"}),
    ("overdue with an apology in time", [REC, apology("2026-03-05 09:00", "2026-03-12 08:00")], "2026-03-09 09:00",
     {"overdue"}),
    ("due soon", [REC], "2026-03-06 10:00", {"due_soon"}),
    ("within", [REC], "2026-03-03 10:00", set()),
    ("repeated supplement", [REC, sup_req("2026-03-03 09:00"), sup_done("2026-03-03 15:00"),
                             sup_req("2026-03-04 09:00", "BS2")], "2026-03-04 10:00", {"repeated_supplement"}),
    ("second reschedule", [REC, apology("2026-03-05 09:00", "2026-03-12 08:00"),
                           apology("2026-03-11 09:00", "2026-03-16 08:00", prev="2026-03-12 08:00")],
     "2026-03-11 10:00", {"overdue", "second_reschedule"}),
    ("ended late without apology", [REC, processed("2026-03-10 09:00")], NOW, {"apology_missing"}),
    ("ended on time", [REC, processed("2026-03-05 09:00")], NOW, set()),
]


@pytest.mark.parametrize("what,steps,now,kinds", ALERTS, ids=[a[0] for a in ALERTS])
def test_alerts(what, steps, now, kinds):
    state, ctx = fold(steps, now)
    alerts = alerts_of(evaluate(state, ctx), ctx.now)
    assert {a.kind for a in alerts} == kinds
    assert all(a.alert_id.startswith("D-1:" + a.kind) for a in alerts)


def test_alert_ids_are_stable_over_time():
    state, ctx = fold([REC], "2026-03-09 09:00")
    view = evaluate(state, ctx)
    assert alerts_of(view, t("2026-03-09 09:00")) == alerts_of(view, t("2026-03-20 09:00"))


def test_the_deadline_clock_knows_when_the_dossier_changes_next():
    state, ctx = fold([REC], "2026-03-03 10:00")
    due_soon_at = next_change_at(state, ctx)
    # one working day (7.5 working hours) before Mon 08:00 is Fri 08:00, when the dossier is due soon
    assert due_soon_at == t("2026-03-06 08:00")
    assert evaluate(state, ctx).judge(due_soon_at).bucket == "open_due_soon"
    assert evaluate(state, ctx).judge(due_soon_at - timedelta(microseconds=1)).bucket == "open_within"
    after = next_change_at(state, ctx.at(due_soon_at))
    assert after == t("2026-03-09 08:00") + timedelta(microseconds=1)
    assert evaluate(state, ctx).judge(after).bucket == "open_overdue"
    assert next_change_at(state, ctx.at(after)) == t("2026-04-01 00:00")  # next: the month rolls over
    done, ctx2 = fold([REC, processed("2026-03-05 09:00")])
    assert next_change_at(done, ctx2) is None


PAYMENT_REQ = ("payment_requested", "2026-03-03 09:00", {"fees": [{"amount_vnd": 50000}]})
US = timedelta(microseconds=1)


@pytest.mark.parametrize("name, steps, now, config, next_change", [
    ("a reception stamped ahead of our clock is counted from then on",
     [REC], "2026-03-02 07:00", MonitorConfig(), t("2026-03-02 08:00")),
    ("a supplement request stamped ahead of our clock: the dossier is due soon before it",
     [REC, sup_req("2026-03-06 10:00")], "2026-03-06 07:00", MonitorConfig(), t("2026-03-06 08:00")),
    ("... and awaits the supplement from the request on",
     [REC, sup_req("2026-03-06 10:00")], "2026-03-06 09:00", MonitorConfig(), t("2026-03-06 10:00")),
    ("awaiting a payment that pauses it, it is late from its due on",
     [REC, PAYMENT_REQ], "2026-03-06 12:00", MonitorConfig(pause_on_payment_request=True), t("2026-03-09 08:00") + US),
    ("a supplement pause that ends ahead of our clock moves the due date then",
     [REC, sup_req("2026-03-05 08:00"), sup_done("2026-03-07 08:00")], "2026-03-06 12:00", MonitorConfig(),
     t("2026-03-07 08:00")),
])
def test_the_deadline_clock_looks_when_the_figures_change_and_not_later(name, steps, now, config, next_change):
    """What the clock (and a rebuild reading stored rows) relies on: the figures and alerts hold until the next
    change, and they do change at that instant. Clocks of the sources and of this service disagree a little, so
    facts stamped ahead of our clock are among the changes."""
    from models.tally import contribution

    state, ctx = fold(steps, now, config)
    view = evaluate(state, ctx)
    assert next_change_at(state, ctx, view) == next_change
    shown = [(contribution(view, at), alerts_of(view, at)) for at in (ctx.now, next_change - US, next_change)]
    assert shown[0] == shown[1] != shown[2]


def test_facts_merge_is_plain_data():
    state, _ = fold([REC])
    assert msgspec.structs.asdict(state)["code"] == "D-1"


def test_a_step_dated_in_the_future_is_refused_even_if_the_envelope_time_is_not():
    with pytest.raises(EventError) as info:
        fold([REC, ("processed", "2026-03-05 09:00", {"processing_ended_at": iso("2030-01-01 09:00")})])
    assert info.value.reason == "future_event"

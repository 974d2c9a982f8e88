"""Properties of the state machine: any order and any duplication of a dossier's events give the same dossier."""

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import WorkCalendar
from models.dossier import Context, apply
from models.evaluation import evaluate
from models.tally import contribution
from tests.builders import event, iso, received, t

CAL = WorkCalendar.default()
NOW = t("2026-06-30 16:00")
BASE = t("2026-03-02 08:00")


@st.composite
def lifecycles(draw):
    """A consistent event log of one dossier: reception, then steps at increasing times."""
    start = BASE + timedelta(hours=draw(st.integers(0, 24 * 40)))
    limit = draw(st.sampled_from([(1, "working_day"), (5, "working_day"), (8, "hour"), (10, "day"), (1, "month")]))
    rec = received(start.strftime("%Y-%m-%d %H:%M"), limit=limit, channel=draw(st.sampled_from(["direct", "online", "postal"])),
                   has_fee=draw(st.booleans()), result_is_paper_document=draw(st.booleans()))
    steps = [("received", start, rec)]
    clock = start
    gaps = st.integers(1, 60 * 24 * 4)

    def later():
        nonlocal clock
        clock = clock + timedelta(minutes=draw(gaps))
        return clock

    for i in range(draw(st.integers(0, 2))):
        r = later()
        steps.append(("supplement_requested", r, {"supplement": {"request_id": f"BS{i}", "requested_at": r.isoformat()}}))
        if draw(st.booleans()):
            c = later()
            steps.append(("supplement_received", c, {"supplement": {"request_id": f"BS{i}", "completed_at": c.isoformat()}}))
    if draw(st.booleans()):
        steps.append(("transferred", later(), {"from_unit_code": "T01.S01", "to_unit_code": "T01.S02"}))
    if draw(st.booleans()):
        steps.append(("payment_requested", later(), {"fees": [{"amount_vnd": 10000}]}))
        p = later()
        steps.append(("payment_completed", p, {"paid_online": draw(st.booleans()), "paid_at": p.isoformat()}))
    if draw(st.booleans()):
        a = later()
        steps.append(("due_rescheduled", a, {"apology": {"issued_at": a.isoformat(), "previous_due_at": iso("2026-12-01 08:00"),
                                                          "new_due_at": iso("2026-12-05 08:00")}}))
    end = draw(st.sampled_from(["open", "processed", "stopped", "withdrawn"]))
    if end == "processed":
        # a stated end (the earliest counts), ends read from processing steps (the last counts), or both
        stated, from_steps = draw(st.sampled_from([(True, 0), (True, 1), (True, 2), (False, 1), (False, 2)]))
        for _ in range(from_steps):
            e = later()
            steps.append(("processed", e, {"processing_ended_at": e.isoformat(), "results": [], "from_step": True}))
        if stated:
            e = later()
            steps.append(("processed", e, {"processing_ended_at": e.isoformat(),
                                           "results": [{"electronic": draw(st.booleans())}]}))
        if draw(st.booleans()):
            r = later()
            steps.append(("result_returned", r, {"returned_at": r.isoformat()}))
    elif end == "stopped":
        steps.append(("stopped", later(), {"reason": "x"}))
    elif end == "withdrawn":
        steps.append(("withdrawn", later(), {}))
    for _ in range(draw(st.integers(0, 2))):
        steps.append(("rated", later(), {"rating": {"satisfied": draw(st.booleans())}}))
    if draw(st.booleans()):
        steps.append(("component_digitized", later(), {"components": [{"digitized": True, "reused_digitized_data": draw(st.booleans())}]}))
    return [event(kind, when, data) for kind, when, data in steps if when <= NOW]


def fold(events):
    ctx = Context(now=NOW, calendar=CAL)
    state = None
    for e in events:
        state, _ = apply(state, e, ctx)
    return state, ctx


@settings(max_examples=150, deadline=None)
@given(data=st.data(), log=lifecycles())
def test_any_order_and_any_duplicates_give_the_same_dossier(data, log):
    reference, ctx = fold(log)
    shuffled = data.draw(st.permutations(log))
    dupes = data.draw(st.lists(st.sampled_from(log), max_size=6))
    mixed = list(shuffled)
    for d in dupes:
        mixed.insert(data.draw(st.integers(0, len(mixed))), d)
    state, _ = fold(mixed)
    assert state == reference
    assert contribution(evaluate(state, ctx), NOW) == contribution(evaluate(reference, ctx), NOW)


@settings(max_examples=100, deadline=None)
@given(log=lifecycles(), later_hours=st.integers(1, 24 * 60))
def test_judgement_never_improves_as_time_passes_for_an_open_dossier(log, later_hours):
    state, ctx = fold(log)
    view = evaluate(state, ctx)
    if view is None or not view.is_open:
        return
    early = view.judge(NOW - timedelta(hours=later_hours))
    late = view.judge(NOW)
    assert early.on_time or not late.on_time

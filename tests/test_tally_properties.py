"""The fast paths behind the per-event work equal the plain computations they replace, on random dossiers.

``contribution_delta`` must equal ``after - before`` of whole contributions, ``contribution`` must equal the plain
period-by-period walk, and the memoised calendar answers (due-soon instant, apology deadline, original due and
limit, working seconds, judgements) must equal uncached ones, offsets included, whatever was asked before.
"""

from collections import Counter
from datetime import timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from models import dossier, evaluation
from models.calendar import TZ, WorkCalendar
from models.config import MonitorConfig
from models.dossier import Alert, Context, apply, decode_state, encode_state
from models.evaluation import evaluate, subtract_working_seconds, _standard_day_seconds
from models.tally import (GRANULARITIES, LIVE, ContributionSum, contribution, contribution_delta, difference,
                          parse_period, period_key, periods_between, settled_of, settled_stamp)
from tests.builders import event, received, t
from tests.test_dossier_properties import BASE, lifecycles

CAL = WorkCalendar.default()
NOW = BASE + timedelta(days=120)
instants = st.integers(0, 24 * 150).map(lambda h: BASE + timedelta(hours=h, minutes=17))


def reference_contribution(view, now) -> Counter:
    """The contribution as first written (before the parts, plans and memos): the specification of the figures."""
    out: Counter = Counter()
    if view is None or view.received_at > now:
        return out
    unit = view.unit_code
    j_rec = evaluation.View._judge  # uncached judgement
    for g in GRANULARITIES:
        pk = period_key(g, view.received_at)
        for metric, n in _reception(view):
            out[(unit, pk, metric)] += n
    last = min(view.end_at, now) if view.end_at is not None else now
    for g in GRANULARITIES:
        keys = periods_between(g, view.received_at, max(last, view.received_at))
        for pk in keys:
            j = j_rec(view, min(parse_period(pk)[1], now))
            out[(unit, pk, "population")] += 1
            if j.on_time:
                out[(unit, pk, "on_time")] += 1
            out[(unit, pk, j.bucket)] += 1
            if j.bucket == "ended_late":
                out[(unit, pk, "late_with_apology" if view.apology_in_time else "late_without_apology")] += 1
            if not j.on_time or view.satisfied is False:
                out[(unit, pk, "late_or_dissatisfied")] += 1
    if view.is_open:
        out[(unit, LIVE, j_rec(view, now).bucket)] += 1
    return +out


def _reception(v):
    counts = [("received", 1), ("received_" + v.channel, 1)]
    if v.channel == "online" and (not v.paper_result or v.e_result):
        counts.append(("online_qualified", 1))
    if v.has_fee:
        counts.append(("fee_bearing", 1))
        if v.paid_online:
            counts.append(("paid_online", 1))
    if v.paper_result:
        counts.append(("paper_result", 1))
        if v.e_result:
            counts.append(("paper_result_e_result", 1))
    if v.digitized and (not v.paper_result or v.e_result):
        counts.append(("digitized", 1))
    if v.reused_data:
        counts.append(("reused_data", 1))
    if v.personal_store:
        counts.append(("personal_store", 1))
    if v.population_db or v.personal_store:
        counts.append(("population_db", 1))
    if v.rated:
        counts.append(("rated", 1))
        if v.satisfied:
            counts.append(("rated_satisfied", 1))
    if v.end_at is not None:
        counts.append(("processing_count", 1))
        counts.append(("processing_seconds_sum",
                       round(v.calendar.working_seconds_between(v.received_at, max(v.received_at, v.end_at)))))
    return counts


def reference_alerts(view, now) -> frozenset:
    out = []
    due_id = view.judged_due_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    j = evaluation.View._judge(view, now)
    if j.bucket == "open_due_soon":
        out.append(Alert(f"{view.code}:due_soon:{due_id}", "due_soon"))
    if j.bucket == "open_overdue":
        out.append(Alert(f"{view.code}:overdue:{due_id}", "overdue"))
    if j.bucket in ("open_overdue", "ended_late") and not view.apology_in_time and view.end_kind not in ("stopped", "withdrawn"):
        out.append(Alert(f"{view.code}:apology_missing:{due_id}", "apology_missing"))
    if view.supplement_requests > 1:
        out.append(Alert(f"{view.code}:repeated_supplement", "repeated_supplement"))
    if view.reschedules > 1:
        out.append(Alert(f"{view.code}:second_reschedule", "second_reschedule"))
    return frozenset(out)


def states_along(log, roundtrip):
    """The dossier's state after each event (stored and read back, as the stream does, when ``roundtrip``)."""
    ctx = Context(now=NOW, calendar=CAL)
    state, out = None, []
    for e in log:
        state, _ = apply(state, e, ctx)
        if roundtrip:
            state = decode_state(encode_state(state))
        out.append(state)
    return out


@settings(max_examples=150, deadline=None)
@given(log=lifecycles(), roundtrip=st.booleans(), data=st.data())
def test_delta_and_contribution_equal_the_plain_computation(log, roundtrip, data):
    ctx = Context(now=NOW, calendar=CAL)
    views = [None] + [evaluate(s, ctx) for s in states_along(log, roundtrip)]
    for before, after in zip(views, views[1:]):
        now = data.draw(instants)
        assert contribution(after, now) == reference_contribution(after, now)
        assert contribution_delta(after, before, now) == difference(reference_contribution(after, now),
                                                                    reference_contribution(before, now))
        later = now + timedelta(hours=data.draw(st.integers(0, 24 * 60)))  # the clock moving the same dossier
        assert contribution_delta(after, after, later, now) == difference(reference_contribution(after, later),
                                                                          reference_contribution(after, now))
        if after is not None:
            assert alerts_of_equal(after, now) and alerts_of_equal(after, later)


@settings(max_examples=60, deadline=None)
@given(logs=st.lists(lifecycles(), min_size=1, max_size=6), roundtrip=st.booleans(), now=instants)
def test_a_contribution_sum_equals_the_plain_sum_of_contributions(logs, roundtrip, now):
    """What a rebuild and a batch score add up: every dossier at every stage of its life, several per unit."""
    ctx = Context(now=NOW, calendar=CAL)
    views = [evaluate(s, ctx) for log in logs for s in states_along(log, roundtrip)] + [None]
    total = ContributionSum()
    for v in views:
        total.add(v, now)
    plain: Counter = Counter()
    for v in views:
        plain.update(reference_contribution(v, now))
    assert total.totals() == +plain


@settings(max_examples=100, deadline=None)
@given(logs=st.lists(lifecycles(), min_size=1, max_size=4), carry_over=st.booleans(), data=st.data())
def test_settled_rows_count_exactly_what_the_view_counts_from_the_end_on(logs, carry_over, data):
    """What a rebuild reads from a stored ``Settled`` instead of evaluating the dossier: the same totals at any
    later instant, through a msgpack round trip; nothing settles before its end."""
    cfg = MonitorConfig(carry_over_open_dossiers=carry_over)
    ctx = Context(now=NOW, calendar=CAL, config=cfg)
    stamp = settled_stamp(CAL.version, cfg)
    evaluated, settled = ContributionSum(), ContributionSum()
    now = data.draw(instants)
    for log in logs:
        state = states_along(log, roundtrip=True)[-1]
        view = evaluate(state, ctx)
        at = data.draw(instants)
        rows = settled_of(view, at, stamp)
        if view is None or view.end_at is None or view.end_at > at or view.received_at > view.end_at:
            assert rows is None
            continue
        assert rows is not None and rows.stamp == stamp
        later = max(at, now)
        state.settled = dossier.pack_settled(rows)
        rows = dossier.read_settled(decode_state(encode_state(state)).settled)
        settled.add_settled(rows)
        evaluated.add(view, later)
    assert settled.totals() == evaluated.totals()


@settings(max_examples=150, deadline=None)
@given(log=lifecycles(), carry_over=st.booleans(), roundtrip=st.booleans(), data=st.data())
def test_an_open_dossiers_rows_hold_until_its_next_change(log, carry_over, roundtrip, data):
    """The deadline clock's promise: nothing an open dossier's figures or alerts show moves from any instant
    until its ``next_change_at``, which stays the same all that time (so the clock need not look before). What a
    rebuild reads from the rows stored with it instead of evaluating it relies on that: the same contribution, the
    same alerts and the same next change at any instant in that window, through a msgpack round trip."""
    cfg = MonitorConfig(carry_over_open_dossiers=carry_over)
    stamp = settled_stamp(CAL.version, cfg)
    states = states_along(log, roundtrip)
    if not states:
        return
    state = states[data.draw(st.integers(0, len(states) - 1))]
    at = data.draw(instants)
    ctx = Context(now=at, calendar=CAL, config=cfg)
    view = evaluate(state, ctx)
    until = evaluation.next_change_at(state, ctx, view)
    rows = settled_of(view, at, stamp, until)
    if view is None or view.end_at is not None:
        return  # ended dossiers: the test above
    assert until is not None and until > at
    if view.received_at > at:
        assert rows is None  # nothing counted yet: evaluated when the clock reaches the reception
    else:
        assert rows is not None and rows.ended_at is None and (rows.counted_at, rows.valid_until) == (at, until)
        state.settled = dossier.pack_settled(rows)
        rows = dossier.read_settled(decode_state(encode_state(state)).settled)
    alerts, first = evaluation.alerts_of(view, at), ContributionSum()
    first.add(view, at)
    step = data.draw(st.sampled_from([timedelta(microseconds=1), timedelta(seconds=1), timedelta(hours=1)]))
    for later in {at, until - step, until - timedelta(microseconds=1), at + (until - at) * data.draw(st.floats(0, 1))}:
        later = max(at, min(later, until - timedelta(microseconds=1)))
        evaluated = ContributionSum()
        evaluated.add(evaluate(state, ctx.at(later)), later)
        assert evaluated.totals() == first.totals()
        if carry_over:  # the reference counts as the default rules do
            assert evaluated.totals() == +reference_contribution(view, later)
        assert evaluation.alerts_of(view, later) == alerts
        assert evaluation.next_change_at(state, ctx.at(later)) == until
        if rows is not None:
            stored = ContributionSum()
            stored.add_settled(rows)
            assert stored.totals() == evaluated.totals()
            assert evaluation.alerts_from_suffixes(view.code, rows.alerts) == alerts


def test_a_settled_stamp_names_the_calendar_and_the_rules():
    cfg = MonitorConfig()
    stamp = settled_stamp(CAL.version, cfg)
    assert stamp == settled_stamp(CAL.version, MonitorConfig())
    assert stamp != settled_stamp(CAL.version + ",2027v2", cfg)
    assert stamp != settled_stamp(CAL.version, MonitorConfig(judge_against="rescheduled"))


def alerts_of_equal(view, now) -> bool:
    return evaluation.alerts_of(view, now) == reference_alerts(view, now)


@settings(max_examples=100, deadline=None)
@given(log=lifecycles(), roundtrip=st.booleans(), times=st.lists(instants, min_size=1, max_size=8))
def test_memoised_judgements_and_calendar_answers_equal_uncached_ones(log, roundtrip, times):
    state = states_along(log, roundtrip)[-1] if log else None
    if state is None or state.reception is None:
        return
    cfg = MonitorConfig()
    view = evaluate(state, Context(now=NOW, calendar=CAL, config=cfg))
    rec = state.reception
    cal = CAL.for_unit(rec.handling_unit_code)
    due = cal.due_from_limit(rec.received_at, rec.limit_value, rec.limit_unit) \
        if rec.due_source == "computed" and rec.limit_value is not None else rec.due_at
    assert (view.original_due_at, view.original_due_at.tzinfo) == (due, due.tzinfo)
    assert view.limit_working_seconds == max(0.0, cal.working_seconds_between(rec.received_at, due))
    for at in times + times[::-1]:  # asked twice: the second answer comes from the memo
        assert view.judge(at) == evaluation.View._judge(view, at)
        eff = view.effective_due_at(at)
        for d in (eff, eff.astimezone(timezone.utc), eff.astimezone(TZ)):
            threshold = max(cfg.due_soon_min_working_days * _standard_day_seconds(cal, d),
                            cfg.due_soon_fraction * view.limit_working_seconds)
            expected = subtract_working_seconds(cal, d, threshold)
            got = view.due_soon_at(d)
            assert (got, got.tzinfo, got.utcoffset()) == (expected, expected.tzinfo, expected.utcoffset())
            expected = subtract_working_seconds(cal, d, cfg.apology_notice_working_days * _standard_day_seconds(cal, d))
            got = evaluation.apology_deadline(cal, d, cfg)
            assert (got, got.tzinfo) == (expected, expected.tzinfo)
        assert evaluation.working_seconds_between(cal, rec.received_at, at) == cal.working_seconds_between(rec.received_at, at)
        assert evaluation.next_month_start(at) == evaluation._next_month_start.__wrapped__(at)


def test_a_corrected_calendar_is_never_answered_from_the_old_calendar_memo():
    """Memo keys hold the calendar object: a corrected calendar (a new object) recomputes every answer."""
    rec = event("received", "2026-04-01 09:00", received("2026-04-01 09:00", limit=(5, "working_day")))
    state, _ = apply(None, rec, Context(now=NOW, calendar=CAL))
    old = evaluate(state, Context(now=NOW, calendar=CAL))
    old.due_soon_at(old.judged_due_at)  # fill the memos with the old calendar's answers
    corrected = CAL.with_document({"calendar_id": "vn-public-sector", "year": 2026, "version": 99,
                                   "timezone": "Asia/Ho_Chi_Minh",
                                   "non_working_days": [{"date": "2026-04-03", "kind": "unit_closure"}]})
    new = evaluate(state, Context(now=NOW, calendar=corrected))
    cal = corrected.for_unit("T01.S01")
    assert new.original_due_at == cal.due_from_limit(t("2026-04-01 09:00"), 5, "working_day") > old.original_due_at
    assert new.limit_working_seconds == cal.working_seconds_between(t("2026-04-01 09:00"), new.original_due_at)
    threshold = max(MonitorConfig().due_soon_min_working_days * _standard_day_seconds(cal, new.judged_due_at),
                    MonitorConfig().due_soon_fraction * new.limit_working_seconds)
    assert new.due_soon_at(new.judged_due_at) == subtract_working_seconds(cal, new.judged_due_at, threshold)

"""The per-record decision of the worker, without a broker: running tallies equal the batch oracle."""

import random
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import TZ, WorkCalendar
from models.dossier import Context
from models.figures import replay, score_document
from models.index766 import combine
from models.tally import add_into
from streams.runtime.processor import Processor
from tests.builders import SAMPLE_AT, raw, received, sample_lines

NOW = datetime.fromisoformat(SAMPLE_AT)


def subject(line: bytes) -> str:
    return line.split(b'"subject":"')[1].split(b'"')[0].decode()


def run(lines, now=NOW):
    p = Processor()
    store, tallies, alerts, rejected, dup = {}, {}, [], [], 0
    for line in lines:
        code = subject(line) if b'"subject":"' in line else None
        o = p.handle(line, store.get(code), now, key=code)
        if o.dead_letter:
            rejected.append(o.dead_letter[0])
            continue
        dup += o.duplicate
        if o.state is not None:
            store[o.dossier_code] = o.state
        add_into(tallies, o.tally_delta)
        alerts += o.alerts
    return p, store, tallies, alerts, rejected, dup


def oracle(lines, period, now=NOW):
    ctx = Context(now=now, calendar=WorkCalendar.default())
    return score_document(replay(list(enumerate(lines, 1)), ctx), period, ctx)


def test_running_tallies_equal_the_oracle_even_with_duplicates_and_reordering():
    lines = sample_lines()
    rng = random.Random(7)
    noisy = lines + rng.sample(lines, len(lines) // 10)  # 10 % duplicated
    rng.shuffle(noisy)  # and every dossier's events out of order
    for variant in (lines, noisy):
        p, store, tallies, _, rejected, dup = run(variant)
        assert rejected == []
        for period in ("month:2026-01", "month:2026-03", "quarter:2026-Q1", "year:2026"):
            expected = oracle(lines, period)
            got = p.figures(tallies, period, NOW)
            assert got["units"] == expected["units"] and got["provinces"] == expected["provinces"]
    assert dup == len(lines) // 10


def test_in_order_duplicates_never_change_the_figures():
    lines = sample_lines()
    rng = random.Random(3)
    noisy = []
    for line in lines:
        noisy.append(line)
        if rng.random() < 0.1:
            noisy.append(line)
    p, _, tallies, _, rejected, dup = run(noisy)
    assert rejected == [] and dup > 100
    assert p.figures(tallies, "month:2026-02", NOW)["units"] == oracle(lines, "month:2026-02")["units"]


def test_rebuild_from_stored_states_equals_running_tallies():
    p, store, tallies, *_ = run(sample_lines())
    rebuilt, fresh = {}, Processor()
    for stored in store.values():
        add_into(rebuilt, fresh.restore(stored, NOW).tallies)
    assert rebuilt == tallies and fresh.unit_meta == p.unit_meta


def test_ended_dossiers_are_rebuilt_from_their_settled_rows_only_under_the_same_stamp():
    """The rebuild reads an ended dossier's stored rows instead of evaluating it, and gets the same figures; a
    worker with other rules (or another calendar, or other counting code) evaluates it as before, and so does one
    whose catch-up window still holds the end (its alerts may be owed), and so do rows it cannot read."""
    import msgspec

    from models.config import MonitorConfig
    from models.dossier import decode_state, encode_state, read_settled

    p, store, tallies, *_ = run(sample_lines())
    ended = {c: v for c, v in store.items() if decode_state(v).settled is not None
             and read_settled(decode_state(v).settled).ended_at is not None}
    assert 0 < len(ended) < len(store)
    assert all(decode_state(v).processed_at or decode_state(v).stopped_at or decode_state(v).withdrawn_at
               or decode_state(v).returned_at for v in ended.values())

    def rebuilt(processor, states, now=NOW):
        rebuild, total = processor.rebuilder(now), {}
        for stored in states:
            rebuild.add(stored)
        add_into(total, rebuild.tallies())
        return rebuild.settled, total, processor.unit_meta

    def unsettled(stored):
        state = decode_state(stored)
        state.settled = None
        return encode_state(state)

    def other_layout(stored):  # rows written by a version whose Settled had another shape
        state = decode_state(stored)
        state.settled = msgspec.msgpack.encode(["rows", 1, 2]) if state.settled else None
        return encode_state(state)

    settled, total, meta = rebuilt(Processor(), store.values())
    assert 0 < settled <= len(ended) and total == tallies and meta == p.unit_meta
    assert rebuilt(Processor(), map(unsettled, store.values()))[:2] == (0, tallies)
    assert rebuilt(Processor(), map(other_layout, store.values()))[:2] == (0, tallies)
    other_rules = MonitorConfig(due_soon_fraction=0.25)
    assert rebuilt(Processor(config=other_rules), store.values())[0] == 0
    last_end = max(read_settled(decode_state(v).settled).ended_at for v in ended.values())
    assert rebuilt(Processor(), [v for v in ended.values() if read_settled(decode_state(v).settled).ended_at == last_end],
                   last_end + timedelta(minutes=30))[0] == 0


def test_open_dossiers_are_rebuilt_from_their_standing_rows_while_the_rows_hold():
    """An open dossier's rows hold from the instant they were counted until its next change: a rebuild in that
    window reads them instead of evaluating the dossier, and gets the same figures, the same next checks and the
    same alerts to announce (all of them after a restart, none once announced); one outside the window (before,
    or after the clock moved the dossier) evaluates it, as does one under another stamp."""
    from models.config import MonitorConfig
    from models.dossier import decode_state, encode_state, read_settled
    from models.evaluation import alerts_of, evaluate

    p, store, _tallies, *_ = run(sample_lines())
    ctx = Context(now=NOW, calendar=WorkCalendar.default())
    standing = {c: read_settled(decode_state(v).settled) for c, v in store.items()
                if decode_state(v).settled is not None and read_settled(decode_state(v).settled).ended_at is None}
    open_views = {c: view for c, v in store.items()
                  if (view := evaluate(decode_state(v), ctx)) is not None and view.is_open}
    alerting = {c for c, view in open_views.items() if alerts_of(view, NOW)}
    assert alerting and set(standing) == set(open_views)
    assert {c for c, rows in standing.items() if rows.alerts} == alerting
    assert all(rows.counted_at == NOW and rows.valid_until > NOW for rows in standing.values())

    def unsettled(stored):
        state = decode_state(stored)
        state.settled = None
        return encode_state(state)

    def rebuilt(processor, states, now):
        rebuild, total = processor.rebuilder(now), {}
        checks = {c: rebuild.add(stored)[1:] for c, stored in states.items()}
        add_into(total, rebuild.tallies())
        return rebuild.standing, total, checks

    first_change = min(rows.valid_until for rows in standing.values())
    for now in (NOW, first_change - timedelta(seconds=1), first_change, NOW - timedelta(hours=1)):
        expected = rebuilt(Processor(), {c: unsettled(v) for c, v in store.items()}, now)
        assert expected[0] == 0
        got = rebuilt(Processor(), store, now)
        assert got[1:] == expected[1:]
        holding = sum(rows.counted_at <= now < rows.valid_until for rows in standing.values())
        assert got[0] == holding
        assert (holding == len(standing)) == (NOW <= now < first_change)
        assert {c for c, (_check, unannounced) in got[2].items() if unannounced} >= (alerting if now == NOW else set())
    assert rebuilt(Processor(config=MonitorConfig(due_soon_fraction=0.25)), store, NOW)[0] == 0
    for stored in store.values():  # once this worker has announced them, neither way finds any left to announce
        p.announce(stored, NOW)
    for states in (store, {c: unsettled(v) for c, v in store.items()}):
        assert not any(unannounced for _check, unannounced in rebuilt(p, states, NOW)[2].values())


def test_the_clock_moves_dossiers_without_events_and_announces_alerts_once():
    code = "T01.S01-20260302-00001"
    rec = raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"), code=code)
    p = Processor()
    start = datetime(2026, 3, 2, 8, 5, tzinfo=TZ)
    o = p.handle(rec, None, start, key=code)
    assert o.alerts == [] and o.tally_delta[("T01.S01", "live", "open_within")] == 1
    tallies = dict(o.tally_delta)
    now, stored, seen = start, o.state, []
    check = o.next_check_at
    while check is not None and check < datetime(2026, 3, 12, tzinfo=TZ):
        r = p.reevaluate(stored, now, check)
        add_into(tallies, r.tally_delta)
        seen += [a["kind"] for a in r.alerts]
        now, check = check, r.next_check_at
    assert seen == ["due_soon", "apology_missing", "overdue"]
    assert tallies[("T01.S01", "live", "open_overdue")] == 1 and ("T01.S01", "live", "open_within") not in tallies
    assert tallies == p.restore(stored, now).tallies
    assert p.reevaluate(stored, now, now + timedelta(hours=1)).alerts == []


def test_replayed_history_raises_no_alert_until_it_settles():
    code = "T01.S01-20260302-00002"
    rec = raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"), code=code)
    p = Processor()
    o = p.handle(rec, None, NOW, key=code)  # a week late: replayed history
    assert o.alerts == [] and o.next_check_at == NOW + timedelta(seconds=10)
    r = p.reevaluate(o.state, NOW, o.next_check_at)
    assert sorted(a["kind"] for a in r.alerts) == ["apology_missing", "overdue"]
    assert all(set(a) >= {"alert_id", "unit_code", "dossier_code", "due_at"} for a in r.alerts)


def test_records_are_dead_lettered_with_a_reason():
    p = Processor()
    assert p.handle(b"{", None, NOW).dead_letter[0] == "bad_json"
    line = sample_lines()[0]
    assert p.handle(line, None, NOW, key="another-code").dead_letter[0] == "key_mismatch"


def test_after_a_rebuild_pending_alerts_are_announced():
    code = "T01.S01-20260302-00003"
    rec = raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"), code=code)
    first = Processor()
    stored = first.handle(rec, None, datetime(2026, 3, 2, 8, 5, tzinfo=TZ), key=code).state
    restarted = Processor()  # a new worker owning the partition; the deadline passed while none did
    later = datetime(2026, 3, 9, 9, 0, tzinfo=TZ)
    assert restarted.restore(stored, later).unannounced
    assert restarted.restore(stored, later).next_check_at > later  # the dossier's own schedule either way
    assert sorted(a["kind"] for a in restarted.announce(stored, later)) == ["apology_missing", "overdue"]
    assert restarted.announce(stored, later) == []  # once
    assert not restarted.restore(stored, later).unannounced
    assert restarted.reevaluate(stored, later, later + timedelta(minutes=5)).alerts == []


def test_a_rebuild_announces_open_and_recently_ended_dossiers_alerts_not_old_ones():
    """A late dossier keeps its apology_missing alert active for good; re-announcing every one of them at each
    restart held the first clock tick for seconds. Only an end within alert_catch_up_seconds (1 h) is rechecked:
    its alert may have died with a crashed worker."""
    from tests.builders import processed_data

    code = "T01.S01-20260302-00009"
    rec = raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"), code=code)
    done = raw("processed", "2026-03-10 09:00", processed_data("2026-03-10 09:00"), code=code)
    p = Processor()
    stored = p.handle(rec, None, datetime(2026, 3, 2, 8, 5, tzinfo=TZ), key=code).state
    stored = p.handle(done, stored, datetime(2026, 3, 10, 9, 1, tzinfo=TZ), key=code).state
    soon, days_later = datetime(2026, 3, 10, 9, 30, tzinfo=TZ), datetime(2026, 3, 12, 9, 0, tzinfo=TZ)
    assert Processor().restore(stored, soon).unannounced  # ended 30 min ago, alert not announced by this worker
    assert not Processor().restore(stored, days_later).unannounced  # ended days ago: left alone
    counted = Processor().restore(stored, days_later).tallies
    assert counted[("T01.S01", "month:2026-03", "ended_late")] == 1  # still counted, of course


def test_the_view_memo_changes_no_outcome():
    """A processor that keeps the last view of each dossier decides every record and clock tick exactly like one
    that evaluates every state afresh, with duplicates, reordering, evictions, a moving clock, and states written
    meanwhile by another worker (after a rebalance) that its memo has never seen."""
    lines = sample_lines()
    rng = random.Random(11)
    noisy = lines + rng.sample(lines, len(lines) // 10)
    rng.shuffle(noisy)
    processors = (Processor(view_memo_size=0), Processor(), Processor(view_memo_size=16))
    other = Processor()
    store = {}
    for i, line in enumerate(noisy):
        code = subject(line)
        now = NOW + timedelta(minutes=i // 50)  # the clock moves every 50 records, as between batches
        if i % 5 == 0:
            outcomes = [other.handle(line, store.get(code), now, key=code)]
        else:
            outcomes = [p.handle(line, store.get(code), now, key=code) for p in processors]
            assert outcomes[0] == outcomes[1] == outcomes[2]
        if outcomes[0].state is not None:
            store[code] = outcomes[0].state
        if i % 7 == 0 and code in store:
            later = now + timedelta(days=rng.randint(0, 20))
            ticks = [p.reevaluate(store[code], now, later) for p in processors]
            assert ticks[0] == ticks[1] == ticks[2]


def test_a_dossier_with_events_but_no_reception_is_counted_as_held_until_its_reception_arrives():
    """Out-of-order steps are kept, not refused; the held count is how operators see them (onestop_dossiers_held)."""
    from tests.builders import processed_data

    p, code = Processor(), "D-HELD"
    step = raw("processed", "2026-03-03 09:00", processed_data("2026-03-03 09:00"), code=code)
    reception = raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"), code=code)
    first = p.handle(step, None, NOW, key=code)
    assert first.dead_letter is None and first.held_delta == 1 and not first.tally_delta  # held, in no figure
    assert p.restore(first.state, NOW) == ({}, True, None, False)
    again = p.handle(step, first.state, NOW, key=code)  # a duplicate changes nothing
    assert again.duplicate and again.held_delta == 0
    then = p.handle(reception, first.state, NOW, key=code)
    assert then.held_delta == -1 and then.tally_delta and not p.restore(then.state, NOW).held
    direct = p.handle(reception, None, NOW, key=code)  # received first: never held
    assert direct.held_delta == 0


_TALLY_KEYS = sorted({k for i in Processor().catalogue.indicators if i.computable_from_events and i.numerator
                      for coeffs in (i.numerator, i.denominator) for k in coeffs}) + ["unrelated"]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(_TALLY_KEYS), st.integers(-5, 10**9)))
def test_indicator_terms_are_the_catalogue_coefficients_combined(tallies) -> None:
    p = Processor()
    want = {i.id: (combine(i.numerator, tallies), combine(i.denominator, tallies)) for i in p.catalogue.indicators
            if i.computable_from_events and i.numerator is not None}
    assert want and p.indicator_terms(tallies) == want


def _in_state() -> Processor:
    p = Processor()
    p.announced_in_state = True  # exactly-once outputs: what was announced is stored with the dossier
    return p


def test_under_exactly_once_what_was_announced_is_stored_and_a_new_worker_announces_nothing_again():
    """The clock's announcement returns the dossier to store with the alert (one transaction); a worker that
    starts from the stored dossier (a restart, a rebalance) finds it announced; a worker keeping memory only
    would announce it again."""
    code = "T01.S01-20260302-00004"
    rec = raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"), code=code)
    first = _in_state()
    o = first.handle(rec, None, NOW, key=code)  # a week late: replayed history, announced once it settles
    assert o.alerts == []
    r = first.reevaluate(o.state, NOW, o.next_check_at)
    assert sorted(a["kind"] for a in r.alerts) == ["apology_missing", "overdue"]
    assert r.state is not None  # stored in the same transaction as the alerts
    assert first.reevaluate(r.state, o.next_check_at, o.next_check_at + timedelta(minutes=5)).alerts == []
    later = o.next_check_at + timedelta(hours=1)
    for restarted in (_in_state(), _in_state()):
        assert not restarted.restore(r.state, later).unannounced
        assert restarted.announce_stored(r.state, later) == ([], None)
        assert restarted.reevaluate(r.state, later, later + timedelta(minutes=5)).alerts == []
    assert Processor().restore(r.state, later).unannounced  # memory only: announced again (at least once)
    # The rows stored with the announcement still count the dossier exactly as its evaluation does.
    assert _in_state().restore(r.state, later).tallies == Processor().restore(r.state, later).tallies


def test_under_exactly_once_an_announced_alert_is_not_announced_again_when_its_events_are_read_again():
    code = "T01.S01-20260302-00005"
    rec = raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"), code=code)
    p = _in_state()
    overdue_at = datetime(2026, 3, 9, 9, 0, tzinfo=TZ)
    stored = p.handle(rec, None, datetime(2026, 3, 2, 8, 5, tzinfo=TZ), key=code).state
    announced, stored = p.announce_stored(stored, overdue_at)
    assert sorted(a["kind"] for a in announced) == ["apology_missing", "overdue"]
    memory_only = Processor()
    assert memory_only.announce(stored, overdue_at)  # the same alerts for a worker that remembers nothing
    # A new processor (restart) on the stored state, fed the same dossier's events again (a rebalance re-read):
    again = _in_state()
    assert again.handle(rec, stored, overdue_at + timedelta(hours=1), key=code).alerts == []
    assert again.announce_stored(stored, overdue_at + timedelta(hours=2))[0] == []

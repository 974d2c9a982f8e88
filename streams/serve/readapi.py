"""HTTP views on the Faust web server: /metrics, health, per-unit dossier lists, unit figures.

Per-dossier detail (which dossier is late, by how much) has no place in metric labels; operators get it here,
from the same table the tallies are derived from. Each worker answers for the partitions it owns.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp.web import Response
from faust import web

from models.evaluation import OPEN_STATES
from models.i18n import DEFAULT_LANG

from streams.runtime.clock import parse_instant
from streams.serve.metrics import CONTENT_TYPE_LATEST, render
from streams.runtime.tallies import current_periods
from streams.runtime.security import UNAUTHORIZED, SecurityConfigError, api_token, bearer_ok
from streams.serve.units import listing_csv, name_figures, parse_lang, unit_name, unit_registry

__all__ = ["register", "ITEM_FIELDS", "OPEN_STATES"]

log = logging.getLogger(__name__)

#: The only fields a listed dossier exposes: what an officer needs to act, nothing about the applicant (each item
#: also carries ``unit_name``, the unit's name in the registry or null).
ITEM_FIELDS = ("dossier_code", "procedure_code", "due_at", "overdue_working_hours", "state")
DEFAULT_STATES = ("overdue", "due_soon")
MAX_PAGE_SIZE = 1000


class BadRequest(ValueError):
    pass


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_bytes(value: Any) -> bytes:
    def default(v: Any) -> Any:
        if isinstance(v, (datetime, date)):
            return v.isoformat()
        if isinstance(v, (set, frozenset, tuple)):
            return list(v)
        return str(v)

    return json.dumps(value, default=default, ensure_ascii=False).encode()


def _raw(body: bytes, content_type: str, status: int = 200) -> Response:
    """aiohttp refuses a charset inside content_type=, so the full header goes in as a header."""
    return Response(body=body, status=status, headers={"Content-Type": content_type})


def _json_response(value: Any, status: int = 200) -> Response:
    return _raw(_json_bytes(value), "application/json; charset=utf-8", status)


def _sort_key(item: dict) -> tuple[float, str]:
    due = item.get("due_at")
    ts = math.inf
    if isinstance(due, datetime):
        ts = due.timestamp()
    elif isinstance(due, str) and due:
        try:
            ts = parse_instant(due).timestamp()
        except ValueError:
            pass
    return ts, str(item.get("dossier_code") or "")


def parse_states(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return DEFAULT_STATES
    states = tuple(s.strip() for s in raw.replace("|", ",").split(",") if s.strip())
    unknown = [s for s in states if s not in OPEN_STATES]
    if unknown or not states:
        raise BadRequest(f"state phải thuộc {', '.join(OPEN_STATES)} (cách nhau bằng dấu phẩy), nhận {raw!r} / "
                         f"state must be among {', '.join(OPEN_STATES)} (comma-separated); got {raw!r}")
    return states


def parse_int(raw: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} phải là số nguyên / {name} must be an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} phải từ {lo} đến {hi} / {name} must be between {lo} and {hi}")
    return value


def parse_flag(raw: str | None, name: str, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"{name} phải là 0 hoặc 1 / {name} must be 0 or 1")


async def unit_dossiers(runtime: Any, unit: str, states: tuple[str, ...], lang: str = "vi") -> list[dict]:
    wanted = set(states)
    views = await runtime.views(lambda v: v.get("unit_code") == unit and v.get("state") in wanted)
    name = unit_name(unit_registry(runtime), unit, runtime.now(), lang)
    items = [{**{f: _plain(v.get(f)) for f in ITEM_FIELDS}, "unit_name": name} for v in views]
    items.sort(key=_sort_key)
    return items


def _unauthorized() -> Response:
    return Response(body=_json_bytes({"error": UNAUTHORIZED}),
                    status=401, headers={"Content-Type": "application/json; charset=utf-8",
                                         "WWW-Authenticate": 'Bearer realm="onestop"'})


def register(app: Any, runtime: Any, registry: Any, figures_extensions: Any = ()) -> None:
    """Attach every view to the app's web server (bound to loopback by the app's settings).

    Each of ``figures_extensions`` is awaited as ``extend(doc, tallies, period, now)`` to add a block to the
    ``/figures`` document from the tallies it was scored from (``streams.serve.risk``: the forecast).

    With a token configured, the per-unit and per-dossier views (and /metrics if asked) refuse requests without
    it; /healthz and /ready stay open because orchestrators probe them without credentials and they carry no
    figures. The token is read here, at start-up, so an unreadable secret file stops the worker instead of
    leaving the API open.
    """
    settings = runtime.settings
    token = api_token(settings)
    guard_metrics = bool(getattr(settings, "metrics_require_token", False))
    default_lang = getattr(settings, "lang", DEFAULT_LANG)
    if guard_metrics and not token:
        raise SecurityConfigError("metrics_require_token needs api_token or api_token_file")

    def refused(request: web.Request) -> Response | None:
        return None if bearer_ok(request.headers.get("Authorization"), token) else _unauthorized()

    def error(view: web.View, status: int, message: str) -> Response:
        return _json_response({"error": message}, status)

    @app.page("/metrics")
    async def metrics(self: web.View, request: web.Request) -> Response:
        if guard_metrics and (denied := refused(request)) is not None:
            return denied
        # ``name[]=...`` (as Prometheus clients take it): only those samples, and none of the unit families built
        # unless one is named, so a probe of the event counter costs the worker next to nothing.
        names = request.query.getall("name[]", None)
        return _raw(render(registry, frozenset(names) if names else None), CONTENT_TYPE_LATEST)

    @app.page("/healthz")
    async def healthz(self: web.View, request: web.Request) -> Response:
        return _json_response({"status": "ok"})

    @app.page("/ready")
    async def ready(self: web.View, request: web.Request) -> Response:
        body = {"ready": runtime.ready, "partitions": sorted(runtime.partitions)}
        return _json_response(body, 200 if runtime.ready else 503)

    @app.page("/api/units/{unit}/dossiers")
    async def dossiers(self: web.View, request: web.Request, unit: str) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        q = request.query
        try:
            states = parse_states(q.get("state"))
            page = parse_int(q.get("page"), "page", 1, 1, 10**6)
            size = parse_int(q.get("page_size"), "page_size", 100, 1, MAX_PAGE_SIZE)
            lang = parse_lang(q.get("lang"), default_lang)
        except ValueError as exc:
            return error(self, 400, str(exc))
        items = await unit_dossiers(runtime, unit, states, lang)
        start = (page - 1) * size
        body = {"unit": unit, "states": list(states), "items": items[start:start + size],
                "page": page, "page_size": size, "total": len(items)}
        return _json_response(body)

    @app.page("/api/units/{unit}/dossiers.csv")
    async def dossiers_csv(self: web.View, request: web.Request, unit: str) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        try:
            states = parse_states(request.query.get("state"))
            lang = parse_lang(request.query.get("lang"), default_lang)
        except ValueError as exc:
            return error(self, 400, str(exc))
        items = await unit_dossiers(runtime, unit, states, lang)
        # Headers and states in the reader's language (Vietnamese by default); a BOM lets spreadsheets read it right.
        return _raw(listing_csv(unit, items, lang), "text/csv; charset=utf-8")

    @app.page("/figures")
    async def figures(self: web.View, request: web.Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        now = runtime.now()
        period = request.query.get("period") or current_periods(now)["month"]
        tallies = runtime.all_tallies()
        try:
            doc = runtime.processor.figures(tallies, period, now)
            lang = parse_lang(request.query.get("lang"), default_lang)
            # The forecast reads every dossier held (about a minute at a million): ?forecast=0 when only the
            # figures are wanted.
            extended = parse_flag(request.query.get("forecast"), "forecast", True)
        except ValueError as exc:
            return error(self, 400, str(exc))
        for extend in figures_extensions if extended else ():
            await extend(doc, tallies, period, now)
        return _json_response(name_figures(doc, unit_registry(runtime), now, lang))

    if settings.test_mode:
        _register_test_clock(app, runtime, error, refused)
        _register_test_stall(app, settings, refused)
        _register_test_hold_changelog(app, runtime, refused)


def _register_test_clock(app: Any, runtime: Any, error: Any, refused: Any) -> None:
    """POST /test/clock {"now": ISO} or {"advance_seconds": n}: move a fake clock, then apply the deadlines.

    Answers only after every owned partition has been re-evaluated at the new time, so a test can assert right
    after the call. Refused with a system clock: production time is not for tests to move.
    """

    @app.page("/test/clock")
    class TestClock(web.View):
        async def get(self, request: web.Request) -> Response:
            if (denied := refused(request)) is not None:
                return denied
            return _json_response({"now": runtime.now()})

        async def post(self, request: web.Request) -> Response:
            if (denied := refused(request)) is not None:
                return denied
            clock = runtime.clock
            if not hasattr(clock, "set"):
                return error(self, 409, "the worker runs on the system clock")
            try:
                body = json.loads(await request.read() or b"{}")
                if "now" in body:
                    target = parse_instant(str(body["now"]))
                elif "advance_seconds" in body:
                    target = clock.now() + timedelta(seconds=float(body["advance_seconds"]))
                else:
                    raise ValueError('give "now" or "advance_seconds"')
                clock.set(target)
            except (ValueError, TypeError) as exc:
                return error(self, 400, str(exc))
            await runtime.tick()
            return _json_response({"now": runtime.now()})


def _register_test_stall(app: Any, settings: Any, refused: Any) -> None:
    """POST /test/stall-source: take the owned source partitions out of the consumer's active set, the state a
    worker was found stuck in after a restart under load, so a test can show the stall watchdog getting it out.
    POST /test/jump-source: put the consumer past records it has not read, for the gap guard's test."""

    def owned() -> set:
        return {tp for tp in app.consumer.assignment() if tp.topic == settings.events}

    async def in_client(method: str, tps: set) -> None:
        """Pause or resume the partitions in the Kafka client itself, on the consumer thread's loop."""
        from aiokafka.structs import TopicPartition

        thread = app.consumer._thread
        client_tps = [TopicPartition(tp.topic, tp.partition) for tp in tps]

        async def call() -> None:
            getattr(thread._ensure_consumer(), method)(*client_tps)

        await thread.call_thread(call)

    @app.page("/test/stall-source")
    class TestStall(web.View):
        """With ``{"client": true}`` the client is paused as well: Faust's own pause only leaves the partitions out
        of its next fetch request, so records produced right after it could still be returned by the request in
        flight, and a test that needs them unread (the jump test) would race with it."""

        async def post(self, request: web.Request) -> Response:
            if (denied := refused(request)) is not None:
                return denied
            try:
                client = bool(json.loads(await request.read() or b"{}").get("client"))
            except (ValueError, TypeError, AttributeError) as exc:
                return _json_response({"error": f"body: {exc}"}, 400)
            tps = owned()
            app.consumer.pause_partitions(tps)
            if client:
                await in_client("pause", tps)
            return _json_response({"paused": sorted(tp.partition for tp in tps)})

    @app.page("/test/jump-source")
    class TestJump(web.View):
        """Seek the owned source partitions to their end and resume them: the wrong position a worker was found
        in after an assignment under load, which skipped every record in between. With ``{"skip": N}``: commit,
        seek to the committed offsets as a restart or rebalance does, then put the consumer N records further on
        (where that many unread records exist), the smallest skip, right where Faust's own offsets are ambiguous.
        """

        async def post(self, request: web.Request) -> Response:
            if (denied := refused(request)) is not None:
                return denied
            try:
                skip = json.loads(await request.read() or b"{}").get("skip")
                skip = None if skip is None else int(skip)
            except (ValueError, TypeError, AttributeError) as exc:
                return _json_response({"error": f"body: {exc}"}, 400)
            consumer, tps = app.consumer, owned()
            ends = await consumer._thread.highwaters(*tps)
            targets = dict(ends)
            if skip is not None:
                await consumer.commit()
                await consumer.perform_seek()
                committed = {tp: consumer._read_offset.get(tp) or 0 for tp in tps}
                targets = {tp: committed[tp] + skip for tp in tps if committed[tp] + skip <= ends[tp]}
            for tp, offset in targets.items():
                consumer._thread.seek(tp, offset)
            await in_client("resume", tps)  # a no-op unless the stall paused the client too
            consumer.resume_partitions(tps)
            return _json_response({"sought": {str(tp.partition): off for tp, off in sorted(targets.items())}})


def _register_test_hold_changelog(app: Any, runtime: Any, refused: Any) -> None:
    """POST /test/hold-changelog {"hold": true}: from now on dossiers are written to the local table only, their
    changelog records kept back and the write journal not released, which is what a crash leaves when the producer
    had not sent them yet; a test then kills the worker and checks the restart puts them on the changelog."""

    @app.page("/test/hold-changelog")
    class TestHoldChangelog(web.View):
        async def post(self, request: web.Request) -> Response:
            if (denied := refused(request)) is not None:
                return denied
            try:
                hold = bool(json.loads(await request.read() or b"{}").get("hold", True))
            except (ValueError, TypeError, AttributeError) as exc:
                return _json_response({"error": f"body: {exc}"}, 400)
            runtime.hold_changelog = hold
            return _json_response({"hold": hold, "journal": runtime.journal is not None})

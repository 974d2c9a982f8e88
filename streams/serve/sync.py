"""``POST /api/dvcqg/{service}``: the national portal's sync services, answered by the worker's web server.

A one-stop system or an LGSP posts the same body it posts to DVCQG (``DongBoHoSoMC``, ``CapNhatTienDoHoSoMC``) to
this URL as well; the body goes through the same converter and the same produce / dead-letter helper as the
``dvcqg-sync`` topic (``streams.runtime.sync_agent``). It lives in the worker rather than in a companion service
because the worker already has the web server (bound to loopback by default), the token, the producer and the
sender profile; a companion would repeat all four.

Answers use the envelope of those services, ``{"error_code": "0", "message": "..."}``: a sender's existing
response handling then needs no change. Only ``"0"`` means "recorded"; any other code is worth a retry only with
``"-5"`` (the broker did not take the events).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp.web import HTTPRequestEntityTooLarge, Response
from faust import web

from models.dvcqg import SERVICES
from streams.runtime.security import api_token, bearer_ok

__all__ = ["ERROR_CODES", "register"]

log = logging.getLogger(__name__)

ERROR_CODES = {
    "0": "recorded (records refused one by one are listed in `rejected`)",
    "-1": "bad body: nothing in it could be converted, or every record was refused",
    "-2": "unknown service in the path",
    "-4": "missing or wrong bearer token",
    "-5": "not recorded: the broker did not acknowledge; send the body again",
    "-6": "body too large",
}
"""Every ``error_code`` this endpoint answers with (docs/dvcqg.md)."""


def _answer(status: int, error_code: str, message: str, **extra: Any) -> Response:
    body = {"error_code": error_code, "message": message, **extra}
    return Response(body=json.dumps(body, ensure_ascii=False).encode(), status=status,
                    headers={"Content-Type": "application/json; charset=utf-8"})


def _summary(outcome: Any) -> str:
    refused = len(outcome.rejected)
    vi = f"Đã nhận {outcome.accepted}/{outcome.records} hồ sơ, {outcome.events} sự kiện"
    en = f"accepted {outcome.accepted} of {outcome.records} records, {outcome.events} events"
    if refused:
        vi += f"; từ chối {refused} hồ sơ"
        en += f"; {refused} refused"
    return f"{vi} / {en}"


def register(app: Any, runtime: Any) -> None:
    """Attach the sync endpoint; it needs ``runtime.sync`` (``streams.runtime.sync_agent.attach_sync``).

    The token is the read API's (``ONESTOP_API_TOKEN_FILE``), read at start-up like there, so an unreadable
    secret stops the worker instead of leaving the endpoint open."""
    token = api_token(runtime.settings)
    ingest = runtime.sync
    if not token:
        log.info("POST /api/dvcqg/... accepts bodies without a token (no ONESTOP_API_TOKEN_FILE): keep the web "
                    "server on loopback")

    @app.page("/api/dvcqg/{service}")
    class DvcqgSync(web.View):
        async def post(self, request: web.Request, service: str) -> Response:
            if not bearer_ok(request.headers.get("Authorization"), token):
                response = _answer(401, "-4", "Thiếu hoặc sai mã truy cập (Authorization: Bearer <token>) / "
                                              "missing or wrong bearer token")
                response.headers["WWW-Authenticate"] = 'Bearer realm="onestop"'
                return response
            if service not in SERVICES:
                return _answer(404, "-2", f"Dịch vụ không được hỗ trợ; dùng {' hoặc '.join(SERVICES)} / "
                                          f"unknown service; use {' or '.join(SERVICES)}")
            try:
                body = await request.read()
            except HTTPRequestEntityTooLarge:
                return _answer(413, "-6", "Thân yêu cầu quá lớn; chia nhỏ danh sách hồ sơ / "
                                          "body too large; send fewer records per request")
            try:
                outcome = await ingest.ingest(body, service=service, query=request.query_string or None,
                                              origin={"x-source-http": f"POST /api/dvcqg/{service}"})
            except Exception as exc:  # the broker did not take it: the sender keeps the body and retries
                log.warning("dvcqg %s not recorded: %r", service, exc)
                return _answer(503, "-5", "Chưa ghi nhận được, vui lòng gửi lại / not recorded, send it again")
            if outcome.body_error is not None:
                reason, message = outcome.body_error
                return _answer(400, "-1", f"Dữ liệu không hợp lệ / bad body: {message}", reason=reason)
            rejected = [{"index": i, "reason": r, "message": m} for i, r, m in outcome.rejected]
            extra = {"service": outcome.service, "records": outcome.records, "accepted": outcome.accepted,
                     "events": outcome.events, "rejected": rejected, "unknown_codes": outcome.unknown_codes,
                     "warnings": outcome.warnings}
            if outcome.recorded_nothing:  # every record refused (a body error was answered above)
                return _answer(400, "-1", "Mọi hồ sơ đều bị từ chối / every record was refused", **extra)
            return _answer(200, "0", _summary(outcome), **extra)

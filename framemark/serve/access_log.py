"""The access log: one JSON line per request, and the last line of defence against a traceback reaching a client.

A pure ASGI middleware (not a FastAPI one) so it sees every request, including those the app refuses before a
route runs, and counts the bytes of bodies it never buffers. A route tells it the verdict and an error handler the
error code through ``request.state`` (``verdict``, ``code``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from .errors import internal_error

log = logging.getLogger("framemark.serve")
access_log = logging.getLogger("framemark.serve.access")


class AccessLog:
    """One JSON line per request (method, path, status, bytes in/out, elapsed, verdict, error code, request id),
    never a query string, header, token or file content. It also turns any exception that escapes a route into
    the 500 JSON answer, so the traceback goes to the log only."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        info = {"status": None, "bytes_in": 0, "bytes_out": 0}

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                info["bytes_in"] += len(message.get("body", b""))
            return message

        async def tagging_send(message):
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
                message = {**message, "headers": list(message.get("headers", [])) + [
                    (b"x-request-id", request_id.encode())]}
            elif message["type"] == "http.response.body":
                info["bytes_out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, tagging_send)
        except Exception:  # noqa: BLE001 - our bug: logged with its traceback, answered without it
            log.exception("unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"),
                          request_id)
            state["code"] = "internal_error"
            if info["status"] is None:
                await internal_error(request_id)(scope, receive, tagging_send)
            else:
                info["status"] = info["status"] or 500
        finally:
            line = {"event": "request", "request_id": request_id, "method": scope.get("method"),
                    "path": scope.get("path"), "status": info["status"], "bytes_in": info["bytes_in"],
                    "bytes_out": info["bytes_out"], "elapsed_s": round(time.perf_counter() - started, 4),
                    "verdict": state.get("verdict"), "code": state.get("code")}
            access_log.info(json.dumps(line))

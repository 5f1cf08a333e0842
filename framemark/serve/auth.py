"""Bearer-token access to the API: a FastAPI dependency per scope (``Depends(require("verify"))``).

The tokens file and whether auth is on come from the app's :class:`~.service.Service`; a token is checked in a
thread (the store may re-read its file). Refusals are 401 ``missing_token`` / ``invalid_token`` and 403
``insufficient_scope``, with the ``WWW-Authenticate`` header RFC 6750 asks for.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from .errors import ApiError

bearer = HTTPBearer(auto_error=False, description="a token from `framemark token add`")


def require(scope: str):
    """A dependency that lets the request through with a token holding ``scope`` (or with auth off)."""

    async def check(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)):
        service = request.app.state.service
        if not service.settings.auth:
            return None
        if cred is None or cred.scheme.lower() != "bearer":
            raise ApiError("missing_token", "this endpoint needs a bearer token (Authorization: Bearer fmk_...)",
                           headers={"WWW-Authenticate": "Bearer"})
        record = await run_in_threadpool(service.tokens.authenticate, cred.credentials)
        if record is None:
            raise ApiError("invalid_token", "the token is not valid (unknown or revoked)",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if scope not in record.scopes:
            raise ApiError("insufficient_scope", f"the token lacks the {scope!r} scope",
                           headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'})
        request.state.token_id = record.id
        return record

    return check


VERIFY = Depends(require("verify"))
GENERATE = Depends(require("generate"))

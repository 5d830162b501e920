"""Every error leaves as Neutron's `{"NeutronError": {type, message, detail}}`.

`fault_response` is the single mapping from any exception to that shape; it is
registered for the exceptions FastAPI routes to handlers, and `CatchAll` wraps
the app so anything else still answers JSON 500 and never a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vifwire.api.responses import JSONResponse
from vifwire.server.faults import ServerFault

log = logging.getLogger(__name__)

_HTTP_TYPES = {400: "HTTPBadRequest", 404: "HTTPNotFound", 405: "HTTPMethodNotAllowed",
               409: "HTTPConflict", 413: "HTTPRequestEntityTooLarge",
               415: "HTTPUnsupportedMediaType"}
_HTTP_MESSAGES = {404: "The resource could not be found.",
                  405: "The server could not comply with the request since it is either "
                       "malformed or otherwise incorrect."}


def _body(status: int, type_: str, message: str, detail: str = "") -> JSONResponse:
    return JSONResponse({"NeutronError": {"type": type_, "message": message, "detail": detail}},
                        status_code=status)


def fault_response(exc: Exception) -> JSONResponse:
    if isinstance(exc, ServerFault):
        return _body(exc.status, exc.type, exc.message, exc.detail)
    if isinstance(exc, HTTPException):
        return _body(exc.status_code, _HTTP_TYPES.get(exc.status_code, "HTTPError"),
                     _HTTP_MESSAGES.get(exc.status_code, str(exc.detail)))
    if isinstance(exc, RequestValidationError):
        return _body(400, "HTTPBadRequest", "Invalid request parameters")
    if isinstance(exc, OperationalError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated):
        log.error("database unavailable: %s", exc.orig)
        return _body(503, "ServiceUnavailable", "The database is unavailable; retry later.")
    log.error("unhandled error", exc_info=exc)
    return _body(500, "HTTPInternalServerError",
                 "Request Failed: internal server error while processing your request.")


async def _handler(_request: Request, exc: Exception) -> JSONResponse:
    return fault_response(exc)


class CatchAll:
    """Outermost-but-one ASGI layer: turns any escaped exception into a JSON 500/503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            await fault_response(exc)(scope, receive, send)


def install(app: FastAPI) -> None:
    for exc_class in (ServerFault, HTTPException, RequestValidationError, DBAPIError):
        app.add_exception_handler(exc_class, _handler)
    app.add_middleware(CatchAll)

"""Who is calling: the gate every HTTP request passes before any route.

`Gate.admit` runs first in `DispatchingFastAPI.__call__`, for the fast collection
routes and FastAPI's alike:

1. DNS rebinding: when the API listens on loopback, a `Host` header naming
   anything but localhost, a loopback address, the listen address, this host's
   name or `Settings.api_allowed_hosts` is refused (400): a page of another origin
   whose name resolves to 127.0.0.1 cannot reach the API.
2. The request context (`vifwire.server.policy.RequestContext`), put on the scope
   under CONTEXT_KEY:
   - noauth (Neutron's): every caller is admin; `X-Project-Id` (or `X-Tenant-Id`)
     names the project new resources belong to. The API listens on loopback only
     (`vifwire.stack.check_auth_settings`).
   - keystone: `X-Auth-Token` is validated against Keystone
     (`vifwire.keystone.TokenValidator`, cached); none or an invalid one is a 401
     NeutronError with `WWW-Authenticate`, as keystonemiddleware answers.
     Version discovery (`GET /`, `GET /v2.0`) needs no token, as on Neutron.

Cross-origin pages get nothing either way: no route answers CORS headers, an
OPTIONS preflight is a 405, and a body that is not `application/json` (what a
page may POST without a preflight) is a 415 (`vifwire.api.resources.json_body`).
"""

from __future__ import annotations

import ipaddress
import logging

from starlette.types import Scope

from vifwire.api.responses import JSONResponse
from vifwire.keystone import KeystoneUnavailable, TokenValidator
from vifwire.server.caller import caller_is_admin
from vifwire.server.policy import RequestContext, context_for
from vifwire.settings import Settings

log = logging.getLogger(__name__)

CONTEXT_KEY = "vifwire.context"
# The project of a request that names none under noauth.
DEFAULT_PROJECT_ID = "0f5d8ae5c1d44b6b9e0a3c0de2f1a001"
OPEN_PATHS = frozenset({"/", "/v2.0", "/v2.0/"})
_ADMIN = frozenset({"admin"})


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _host_name(value: str) -> str:
    """A Host header's name without its port: "[::1]:9696" -> "::1"."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def _neutron_error(status: int, type_: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"NeutronError": {"type": type_, "message": message, "detail": ""}},
                        status_code=status, headers=headers)


class Gate:
    def __init__(self, settings: Settings) -> None:
        self.allowed_hosts: frozenset[str] | None = None
        if _loopback(settings.api_host):
            self.allowed_hosts = frozenset({
                "localhost", "127.0.0.1", "::1", settings.api_host.lower(),
                settings.host.lower(), *settings.api_allowed_hosts})
        self.validator: TokenValidator | None = None
        self.www_authenticate = ""
        if settings.auth_strategy == "keystone":
            credentials = settings.keystone_authtoken
            if credentials is None:
                raise ValueError("auth_strategy keystone needs [keystone_authtoken]")
            self.validator = TokenValidator(credentials, settings.token_cache_time_s)
            self.www_authenticate = f'Keystone uri="{credentials.auth_url}"'

    async def admit(self, scope: Scope) -> JSONResponse | None:
        """None: the request goes on, with its context on the scope; else the refusal."""
        headers = dict(scope["headers"])  # the last of a repeated header wins; fine here
        if self.allowed_hosts is not None:
            host = headers.get(b"host", b"").decode("latin-1")
            if _host_name(host) not in self.allowed_hosts:
                return _neutron_error(400, "HTTPBadRequest",
                                      f"Host {host!r} is not a name of this server.")
        if self.validator is None:
            project = (headers.get(b"x-project-id") or headers.get(b"x-tenant-id")
                       or DEFAULT_PROJECT_ID.encode())
            user = headers.get(b"x-user-id", b"").decode("latin-1")
            scope[CONTEXT_KEY] = RequestContext(project.decode("latin-1"), user, _ADMIN, True)
            return None  # caller_is_admin stays at its default: an admin
        token = headers.get(b"x-auth-token", b"").decode("latin-1").strip()
        if not token:
            if scope["method"] == "GET" and scope["path"] in OPEN_PATHS:
                scope[CONTEXT_KEY] = RequestContext("", "", frozenset(), False)
                caller_is_admin.set(False)
                return None
            return self._unauthorized()
        try:
            info = await self.validator.validate(token)
        except KeystoneUnavailable as exc:
            log.error("cannot validate a token: %s", exc)
            return _neutron_error(503, "ServiceUnavailable",
                                  "The authentication service is unavailable; retry later.")
        if info is None or not info.project_id:  # Neutron's resources need a project
            return self._unauthorized()
        scope[CONTEXT_KEY] = context = context_for(info.project_id, info.user_id, info.roles)
        caller_is_admin.set(context.is_admin)  # for the rules a service applies itself
        return None

    def _unauthorized(self) -> JSONResponse:
        return _neutron_error(401, "HTTPUnauthorized",
                              "The request you have made requires authentication.",
                              {"WWW-Authenticate": self.www_authenticate})

    async def close(self) -> None:
        if self.validator is not None:
            await self.validator.close()


def context_of(scope: Scope) -> RequestContext:
    ctx: RequestContext = scope[CONTEXT_KEY]
    return ctx

"""Keystone v3, as a service uses it: its own token (a service user) and checking others'.

`ServiceAuth` holds a service user's keystoneauth1 session (the password plugin,
as Neutron's [keystone_authtoken] and [nova] sections configure it); the plugin
keeps the token until shortly before it expires. `TokenValidator` checks a
caller's token the way keystonemiddleware's auth_token does, with the same
Keystone call: GET /v3/auth/tokens, the service token in X-Auth-Token and the
caller's in X-Subject-Token. Answers (valid or not) are cached for
`cache_time_s` (keystonemiddleware's token_cache_time, 300 s) and never past the
token's expiry, so a request with a known token costs one dict lookup; concurrent
requests with one new token share one Keystone call.

keystonemiddleware itself is a WSGI (webob) filter and brings oslo.config,
oslo.cache and pycadf; vifwire's API is ASGI and its fast path
(`vifwire.api.dispatch`) is per-request CPU, so it makes the same call itself:
with a cached token auth_token's filter costs ~0.18 ms CPU per request, this check
~0.003 ms (bench/auth_middleware_ab.py, against the tests' real Keystone).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

import httpx

from vifwire.settings import KeystoneCredentials

# Cached answers at most; past it the expired ones go, then the oldest.
MAX_CACHED_TOKENS = 10_000


class KeystoneUnavailable(Exception):
    """Keystone did not answer, or refused the service user's own credentials."""


@dataclass(frozen=True)
class TokenInfo:
    user_id: str
    project_id: str  # "" for a token not scoped to a project
    roles: frozenset[str]
    expires_at: float  # epoch seconds


class ServiceAuth:
    """A service user's token, from keystoneauth1 (fetched in a thread: it is blocking)."""

    def __init__(self, credentials: KeystoneCredentials, timeout_s: float = 10.0) -> None:
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        self.credentials = credentials
        self._plugin = v3.Password(
            auth_url=credentials.auth_url, username=credentials.username,
            password=credentials.password, project_name=credentials.project_name,
            user_domain_name=credentials.user_domain_name,
            project_domain_name=credentials.project_domain_name)
        self._session = session.Session(auth=self._plugin, timeout=timeout_s)

    async def token(self) -> str:
        """The held token while it has a minute left (no thread, no I/O), else a new one."""
        from keystoneauth1 import exceptions

        held = self._plugin.auth_ref
        if held is not None and not held.will_expire_soon(60):
            return str(held.auth_token)
        try:
            token = await asyncio.to_thread(self._session.get_token)
        except exceptions.ClientException as exc:
            raise KeystoneUnavailable(f"service user {self.credentials.username!r} at "
                                      f"{self.credentials.auth_url}: {exc}") from None
        if not token:
            raise KeystoneUnavailable(f"no token for {self.credentials.username!r}")
        return str(token)

    def invalidate(self) -> None:
        """Drop the held token (Keystone said it is no longer valid)."""
        self._plugin.invalidate()


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class TokenValidator:
    def __init__(self, credentials: KeystoneCredentials, cache_time_s: float = 300.0,
                 timeout_s: float = 10.0) -> None:
        self.service = ServiceAuth(credentials, timeout_s)
        self.url = credentials.auth_url.rstrip("/")
        if not self.url.endswith("/v3"):
            self.url += "/v3"
        self.cache_time_s = cache_time_s
        self.timeout_s = timeout_s
        # token -> (trusted until, info or None for a token Keystone refused)
        self._cache: dict[str, tuple[float, TokenInfo | None]] = {}
        self._pending: dict[str, asyncio.Future[TokenInfo | None]] = {}
        self._http: httpx.AsyncClient | None = None
        self.keystone_calls = 0

    async def validate(self, token: str) -> TokenInfo | None:
        """The token's owner and scope, or None when Keystone does not know it (or it
        expired). Raises KeystoneUnavailable when it cannot tell."""
        cached = self._cache.get(token)
        now = time.time()
        if cached is not None and cached[0] > now:
            return cached[1]
        pending = self._pending.get(token)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[TokenInfo | None] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            info = await self._ask(token)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._pending.pop(token, None)
        future.set_result(info)
        until = now + self.cache_time_s
        if info is not None:
            until = min(until, info.expires_at)
        self._remember(token, until, info)
        return info

    def _remember(self, token: str, until: float, info: TokenInfo | None) -> None:
        if len(self._cache) >= MAX_CACHED_TOKENS:
            now = time.time()
            for key in [k for k, (t, _) in self._cache.items() if t <= now]:
                del self._cache[key]
            while len(self._cache) >= MAX_CACHED_TOKENS:
                del self._cache[next(iter(self._cache))]
        self._cache[token] = (until, info)

    async def _ask(self, token: str) -> TokenInfo | None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout_s)
        for attempt in (1, 2):
            service_token = await self.service.token()
            self.keystone_calls += 1
            try:
                answer = await self._http.get(
                    f"{self.url}/auth/tokens",
                    headers={"X-Auth-Token": service_token, "X-Subject-Token": token,
                             "Accept": "application/json"})
            except httpx.HTTPError as exc:
                raise KeystoneUnavailable(f"Keystone at {self.url}: {exc}") from None
            if answer.status_code == 401 and attempt == 1:
                self.service.invalidate()  # our own token went stale: a new one, once
                continue
            if answer.status_code == 404:
                return None
            if answer.status_code != 200:
                raise KeystoneUnavailable(f"Keystone at {self.url} answered "
                                          f"{answer.status_code} validating a token")
            return _info(answer.json()["token"])
        raise KeystoneUnavailable(f"Keystone at {self.url} refused the service token")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _info(body: dict[str, object]) -> TokenInfo | None:
    user = body.get("user")
    project = body.get("project")
    roles = body.get("roles")
    expires = body.get("expires_at")
    if not isinstance(user, dict) or not isinstance(expires, str):
        return None
    expires_at = _epoch(expires)
    if expires_at <= time.time():
        return None
    return TokenInfo(
        user_id=str(user.get("id", "")),
        project_id=str(project.get("id", "")) if isinstance(project, dict) else "",
        roles=frozenset(str(r.get("name", "")).lower()
                        for r in (roles if isinstance(roles, list) else [])
                        if isinstance(r, dict)),
        expires_at=expires_at)

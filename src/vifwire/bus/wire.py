"""What travels on the wire: requests and replies as orjson bytes, URLs for logs."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from vifwire.bus.base import BusError


def request_body(method: str, kwargs: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps({"method": method, "args": kwargs})
    except TypeError as exc:  # a caller bug: say which message, not where orjson failed
        raise BusError(f"{method}: arguments are not JSON-able: {exc}") from None


def reply_body(result: Any, error: str | None) -> bytes:
    if error is not None:
        return orjson.dumps({"error": error})
    try:
        return orjson.dumps({"result": result})
    except TypeError as exc:
        return orjson.dumps({"error": f"the reply is not JSON-able: {exc}"})


def unpack_request(body: bytes) -> tuple[str, dict[str, Any]]:
    request = orjson.loads(body)
    return request["method"], request["args"]


def unpack_reply(body: bytes, what: str) -> Any:
    reply = orjson.loads(body)
    if "error" in reply:
        raise BusError(f"{what} failed: {reply['error']}")
    return reply["result"]


def redact(url: str) -> str:
    """`url` with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def split_prefix(url: str) -> tuple[str, str | None]:
    """`url` without its `prefix=` query parameter (ours, not aio-pika's), and its value."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [v for k, v in query if k == "prefix"]
    if not prefixes:
        return url, None
    if not prefixes[-1]:
        raise BusError(f"empty prefix= in bus URL {redact(url)!r}")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefixes[-1]


def reason(exc: BaseException) -> str:
    """The first line of what `exc` says, for a one-line error."""
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]

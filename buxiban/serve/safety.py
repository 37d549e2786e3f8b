"""What stands between the network and the model: the API key, the request-size caps, the bind
address rule, and OpenAI-shaped error bodies for all of them.

Written as plain ASGI middleware rather than FastAPI dependencies so that no route, present or
future, can forget the key check, and so that an oversized body is refused while it streams in,
before it is buffered anywhere."""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass

from ..errors import ServeError

OPEN_PATHS = ("/health", "/", "/ui")  # load balancers and `curl` probes need no key
# The dashboard's pages hold no data: they load without a key, then ask the user for it and send it
# with every /api and /v1 call they make.
OPEN_PREFIXES = ("/ui/",)
UPLOAD_PATHS = ("/v1/files", "/api/data/check")  # training data: the upload cap, not the JSON body cap


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class Unauthorized(ServeError):
    status = 401
    code = "invalid_api_key"


class TooLarge(ServeError):
    status = 413
    code = "request_too_large"


class Forbidden(ServeError):
    status = 403
    code = "forbidden"


class WrongContentType(ServeError):
    status = 415
    code = "unsupported_media_type"


class Busy(ServeError):
    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: int):
        self.retry_after = retry_after
        super().__init__(message)


def error_body(message: str, code: str, param: str | None = None, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Anyone who can reach a public port could read the uploaded data and run jobs: not without a key."""
    if not is_loopback(host) and not api_key:
        raise ServeError(
            f"refusing to listen on {host} without an API key: anyone who can reach it could read "
            "your uploaded files and start training; pass --api-key (or set BUXIBAN_API_KEY), "
            "or bind to 127.0.0.1",
            "host",
        )


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def allowed_hosts(bound: str, extra: tuple[str, ...] = ()) -> frozenset[str] | None:
    """The Host header values this server answers: loopback names and the bound address, plus
    --allowed-host. None (any host) for a wildcard bind without --allowed-host: the key, which such
    a bind requires, is then the guard. A keyless loopback server is what DNS rebinding attacks."""
    if bound in WILDCARD_BINDS and not extra:
        return None
    names = {*LOOPBACK_NAMES, bound.strip("[]").lower(), *(h.strip("[]").lower() for h in extra)}
    return frozenset(n for n in names if n not in WILDCARD_BINDS)


def host_name(value: str) -> str:
    """`example.org:8000` -> `example.org`; `[::1]:8000` -> `::1`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 8 << 20  # chat and job requests: JSON, a few KB in practice
    max_upload_bytes: int = 1 << 30  # /v1/files: training data


class Guard:
    """ASGI middleware, in order: the Host allow-list (DNS rebinding), cross-site refusal on every
    state-changing request (a web page the user opens must not post to a local server, key or not),
    JSON bodies declared as JSON (no "simple" text/plain or form posts), the bearer key on every path
    but the open ones, then a byte cap on the request body."""

    def __init__(self, app, api_key: str | None, limits: Limits, hosts: frozenset[str] | None = None):
        self.app = app
        self.api_key = api_key
        self.limits = limits
        self.hosts = hosts

    def _refusal(self, scope) -> ServeError | None:
        host = host_name(_header(scope, b"host") or "")
        if self.hosts is not None and host not in self.hosts:
            return Forbidden(
                f"this server does not answer for the host '{host}'; start it with --allowed-host {host} "
                "if that name is yours"
            )
        if scope["method"] not in STATE_CHANGING:
            return None
        origin = _header(scope, b"origin")
        if origin is not None and origin != "null":
            origin_host = host_name(origin.split("://", 1)[-1].split("/", 1)[0])
            if (self.hosts is not None and origin_host not in self.hosts) or (
                self.hosts is None and origin_host != host
            ):
                return Forbidden(f"cross-site request from {origin} refused")
        elif origin == "null" or (_header(scope, b"sec-fetch-site") or "") == "cross-site":
            return Forbidden("cross-site request refused")
        path = scope["path"].rstrip("/")
        length = _header(scope, b"content-length")
        has_body = (length is not None and length.strip() not in ("", "0")) or _header(
            scope, b"transfer-encoding"
        ) is not None
        kind = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
        if has_body and path not in UPLOAD_PATHS and kind != "application/json":
            return WrongContentType(
                f"send the request body as JSON with 'Content-Type: application/json', not '{kind}'"
            )
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        refusal = self._refusal(scope)
        if refusal is not None:
            return await _reject(send, refusal)
        if self.api_key and not is_open(path) and not self._authorized(scope):
            return await _reject(
                send,
                Unauthorized(
                    "missing or wrong API key: send the header "
                    "'Authorization: Bearer <key>' with the key the server was started with"
                ),
            )
        cap = self.limits.max_upload_bytes if path.rstrip("/") in UPLOAD_PATHS else self.limits.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            return await _reject(
                send,
                TooLarge(
                    f"the request body is {int(declared):,} bytes; this server accepts at most {cap:,} bytes on {path}"
                ),
            )
        received = 0
        rejected = started = False

        async def counted_receive():
            """A chunked body that lied by omission: answer 413 the moment it passes the cap, then
            tell the app the client left, so it stops reading and whatever it answers is dropped."""
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    rejected = True
                    if not started:
                        await _reject(
                            send,
                            TooLarge(f"the request body exceeds {cap:,} bytes, the most this server accepts on {path}"),
                        )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if rejected:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:  # the app's reaction to the disconnect we told it about
            if not rejected:
                raise

    def _authorized(self, scope) -> bool:
        given = _header(scope, b"authorization") or ""
        scheme, _, token = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _reject(send, error: ServeError) -> None:
    body = json.dumps(error_body(str(error), error.code, error.param)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if error.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

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


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 8 << 20  # chat and job requests: JSON, a few KB in practice
    max_upload_bytes: int = 1 << 30  # /v1/files: training data


class Guard:
    """ASGI middleware: bearer key on every path but /health, then a byte cap on the request body."""

    def __init__(self, app, api_key: str | None, limits: Limits):
        self.app = app
        self.api_key = api_key
        self.limits = limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
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

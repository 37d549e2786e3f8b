"""A small client for an OpenAI-compatible API (the hosted service, or a `buxiban serve`), from the
standard library so migrating needs no SDK.

Everything the other side sends is treated as hostile until checked: JSON answers are capped and
parsed without NaN or infinities, downloads are capped while they stream, redirects to another site
are refused (urllib would otherwise carry the Authorization header there), and text that reaches a
message is stripped of control characters (a terminal escape in an error body must not reach the
user's terminal) and of the key."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import MigrateError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_JSON_BYTES = 16 << 20  # a page of 100 jobs is a few hundred KB
RETRIES = 2  # after a 429 or 503
LONGEST_WAIT = 10  # seconds; a source that asks for longer is reported, not waited on
CHUNK = 1 << 20


class SourceError(MigrateError):
    """An HTTP answer other than success, with its status for callers that tell cases apart (404)."""

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


def printable(text: Any, limit: int = 300) -> str:
    """Text from the other side, safe to print: no control characters, bounded."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return cleaned[:limit] + ("…" if len(cleaned) > limit else "")


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


class _SameSiteRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if _origin(newurl) != _origin(req.full_url):
            raise SourceError(
                f"{printable(req.full_url)} redirected to another site ({printable(_origin(newurl)[1])}); "
                "refusing to follow it with the API key",
                code,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Client:
    """`name` says which side it is in messages ("the source", "the local server"); `key_hint` says
    where its key comes from, for the message a 401 gets."""

    def __init__(
        self,
        base_url: str,
        key: str | None,
        name: str = "the source",
        key_hint: str = "",
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise MigrateError(f"--base-url {printable(base_url, 80)} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.key, self.name, self.key_hint = key, name, key_hint
        self.timeout, self.sleep = timeout, sleep
        self.opener = urllib.request.build_opener(_SameSiteRedirects())

    # --- what callers use ---------------------------------------------------------------------

    def get_json(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self._json(self._request("GET", path + (f"?{query}" if query else "")))

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        data = json.dumps(body).encode("utf-8")
        return self._json(self._request("POST", path, data, {"Content-Type": "application/json"}))

    def post_file(self, path: str, fields: dict[str, str], file_path: Path, filename: str) -> Any:
        """multipart/form-data, streamed from disk: a training file may be hundreds of MB. The file
        name came from the source: only safe characters reach the header."""
        boundary = uuid.uuid4().hex
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[:128] or "upload.jsonl"
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = len(head.encode()) + file_path.stat().st_size + len(tail)

        def body() -> Iterator[bytes]:
            yield head.encode()
            with file_path.open("rb") as handle:
                yield from iter(lambda: handle.read(CHUNK), b"")
            yield tail

        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(size)}
        return self._json(self._request("POST", path, body, headers))

    def download(self, path: str, dest: Path, max_bytes: int) -> int:
        """Stream `path` into `dest`; more than max_bytes stops it (declared or not). Returns the size."""
        with self._request("GET", path) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise MigrateError(
                    f"{self._url(path)} is {int(declared):,} bytes, over the {max_bytes:,}-byte limit "
                    "(--max-file-mb raises it)"
                )
            written = 0
            with dest.open("wb") as out:
                for block in iter(lambda: self._read(response, CHUNK, self._url(path)), b""):
                    written += len(block)
                    if written > max_bytes:
                        raise MigrateError(
                            f"{self._url(path)} sent more than {max_bytes:,} bytes (--max-file-mb raises the limit)"
                        )
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        # http.client ends a short read quietly when the connection closes early: a file cut at a
        # line boundary would still parse, so the size it announced is the check
        if declared and declared.isdigit() and written != int(declared):
            raise SourceError(
                f"the connection to {self.name} broke while reading {printable(self._url(path))}: "
                f"{written:,} of {int(declared):,} bytes arrived"
            )
        return written

    # --- plumbing ---------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _request(self, method: str, path: str, data=None, headers: dict[str, str] | None = None):
        headers = {"Accept": "application/json", "User-Agent": "buxiban-migrate", **(headers or {})}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        url = self._url(path)
        for attempt in range(RETRIES + 1):
            payload = data() if callable(data) else data  # a streamed body is made anew for each attempt
            request = urllib.request.Request(url, data=payload, headers=headers, method=method)
            try:
                return self.opener.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                wait = _retry_after(exc)
                if exc.code in (429, 503) and attempt < RETRIES and wait <= LONGEST_WAIT:
                    exc.close()
                    self.sleep(wait)
                    continue
                raise self._refusal(method, url, exc, wait) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise SourceError(f"cannot reach {self.name} at {printable(url)}: {self._clean(reason)}") from None
        raise AssertionError("unreachable")

    def _refusal(self, method: str, url: str, exc: urllib.error.HTTPError, wait: float) -> SourceError:
        detail = self._clean(_error_detail(exc))
        where = f"{method} {printable(url)}"
        if exc.code in (401, 403):
            hint = self.key_hint if self.key else f"no key was sent: {self.key_hint}"
            return SourceError(f"{self.name} refused the key (HTTP {exc.code}) at {where}: {detail}; {hint}", exc.code)
        if exc.code == 429:
            return SourceError(
                f"{self.name} is limiting requests (HTTP 429) at {where}: {detail}; it asks to wait "
                f"{wait:g} s: try again later",
                429,
            )
        if exc.code == 404:
            return SourceError(f"{self.name} has no {where.split(' ', 1)[1]} (HTTP 404): {detail}", 404)
        return SourceError(f"{self.name} answered HTTP {exc.code} at {where}: {detail}", exc.code)

    def _read(self, response, size: int, url: str) -> bytes:
        """A read that a dropped connection turns into a message, not a traceback."""
        try:
            return response.read(size)
        except (OSError, http.client.HTTPException) as exc:
            raise SourceError(
                f"the connection to {self.name} broke while reading {printable(url)}: "
                f"{self._clean(exc) or type(exc).__name__}"
            ) from None

    def _json(self, response) -> Any:
        with response:
            url = printable(response.geturl())
            raw = self._read(response, MAX_JSON_BYTES + 1, url)
        if len(raw) > MAX_JSON_BYTES:
            raise SourceError(f"{self.name}'s answer at {url} is over {MAX_JSON_BYTES >> 20} MB; refusing to read it")
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise SourceError(f"{self.name}'s answer at {url} is not JSON ({printable(exc, 120)})") from None

    def _clean(self, text: Any) -> str:
        cleaned = printable(text)
        return cleaned.replace(self.key, "[key]") if self.key else cleaned


def _retry_after(exc: urllib.error.HTTPError) -> float:
    value = exc.headers.get("Retry-After", "") if exc.headers is not None else ""
    try:
        seconds = float(value)
    except ValueError:  # absent, or an HTTP date: wait a moment
        return 1.0
    return max(0.0, seconds) if math.isfinite(seconds) else float(LONGEST_WAIT + 1)


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """OpenAI's {"error": {"message": ...}}, or the start of whatever else was sent."""
    try:
        body = exc.read(4096).decode("utf-8", "replace")
    except OSError:
        return exc.reason or ""
    try:
        message = json.loads(body).get("error", {}).get("message")
        if isinstance(message, str):
            return message
    except (ValueError, AttributeError):
        pass
    return body.strip() or str(exc.reason)

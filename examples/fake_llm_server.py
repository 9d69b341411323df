"""A scripted fake LLM API on 127.0.0.1: OpenAI chat completions and Anthropic messages.

Standard library only: ``http.server.ThreadingHTTPServer`` on a free port,
served by daemon threads. It answers the two endpoints the official SDKs call:

- ``POST /v1/chat/completions`` (``openai.OpenAI(base_url=server.openai_url)``)
- ``POST /v1/messages`` (``anthropic.Anthropic(base_url=server.anthropic_url)``)

with a well-formed answer of that API (the reply echoes the last user message),
unless the path's script says otherwise: each request takes the next ``Reply``
of its path's script, and once the script is played the path answers
normally. A ``Reply`` can be an error status with the provider's error body
and any headers (``retry-after-ms``, ``Retry-After``, ``x-should-retry``), a
connection reset without an answer, an answer delayed before its head, or a
body dripped a few bytes at a time. Every other path answers a small JSON
document (also scriptable), for plain HTTP tests.

The server records every request it received (``requests``: method, path,
headers, body) and what it did with it (``Seen.reply``), so a test can count
what reached it and a demo can print what happened.

Example::

    with FakeLLMServer() as server:
        server.script("/v1/chat/completions", Reply(429, headers={"retry-after-ms": "200"}))
        client = openai.OpenAI(base_url=server.openai_url, api_key="test", max_retries=0)
        client.chat.completions.create(model="m", messages=[...])   # RateLimitError
        client.chat.completions.create(model="m", messages=[...])   # a completion

Run it alone to try it with curl: ``python examples/fake_llm_server.py``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

__all__ = ["ANTHROPIC_PATH", "OPENAI_PATH", "FakeLLMServer", "Reply", "Seen"]

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"

# The error bodies and types the providers send for each status.
_OPENAI_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "service_unavailable",
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Reply:
    """What the server does with one request.

    Attributes:
        status: the status to answer with; 200 is the endpoint's normal answer,
            any other status the provider's error body for it.
        headers: extra response headers (``{"retry-after-ms": "250"}``).
        reset: close the connection abruptly (RST) instead of answering.
        delay: seconds to wait before sending the head of the answer.
        drip: seconds between two chunks of ``drip_bytes`` of the body (0: at once).
        drip_bytes: bytes sent per chunk when dripping.
        body: the exact body to send instead of the usual one.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    reset: bool = False
    delay: float = 0.0
    drip: float = 0.0
    drip_bytes: int = 1
    body: bytes | None = None

    def describe(self) -> str:
        """What this reply does, in a few words: ``"429 (retry-after-ms: 200)"``."""
        if self.reset:
            return "connection reset"
        words = str(self.status)
        if self.headers:
            words += " (" + ", ".join(f"{k}: {v}" for k, v in self.headers.items()) + ")"
        if self.delay:
            words += f" after {self.delay:g} s"
        if self.drip:
            words += f", body dripped every {self.drip:g} s"
        return words


@dataclass(frozen=True)
class Seen:
    """One request the server received (header names in lower case), and the reply it got."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    reply: Reply
    at: float


class FakeLLMServer:
    """A scripted, thread-safe fake of the OpenAI and Anthropic HTTP APIs; a context manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._scripts: dict[str, list[Reply]] = {}
        self.requests: list[Seen] = []
        """Every request received, in order (a reset connection included)."""
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed and dripping answers end at once."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        if self._httpd is None:
            raise RuntimeError("the server is not running: use `with FakeLLMServer() as server:`")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_url(self) -> str:
        """The ``base_url`` of an ``openai.OpenAI`` client (``.../v1``)."""
        return self.url + "/v1"

    @property
    def anthropic_url(self) -> str:
        """The ``base_url`` of an ``anthropic.Anthropic`` client."""
        return self.url

    # -- scripting -------------------------------------------------------------

    def script(self, path: str, *replies: Reply | int) -> None:
        """Make the next requests to *path* get *replies*, in order (an int: that status).

        Replaces what was left of the path's script; once it is played, the
        path answers normally again.
        """
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        with self._lock:
            self._scripts[path] = [r if isinstance(r, Reply) else Reply(r) for r in replies]

    def seen(self, path: str) -> list[Seen]:
        """The requests *path* received, in order."""
        with self._lock:
            return [s for s in self.requests if s.path == path]

    def count(self, path: str) -> int:
        """How many requests *path* received."""
        return len(self.seen(path))

    def clear(self) -> None:
        """Forget every script and every request seen."""
        with self._lock:
            self._scripts = {}
            self.requests = []

    # -- what the handler asks -------------------------------------------------

    def _next(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        with self._lock:
            script = self._scripts.get(path)
            reply = script.pop(0) if script else Reply()
            self.requests.append(Seen(method, path, headers, body, reply, time.monotonic()))
            return reply


class _HTTPServer(ThreadingHTTPServer):
    """Strictly private. The socket server, and the FakeLLMServer its handlers ask."""

    fake: FakeLLMServer


class _Handler(BaseHTTPRequestHandler):
    """Strictly private. Plays the reply the server hands out for each request."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "FakeLLM/1.0"

    @property
    def fake(self) -> FakeLLMServer:
        return cast(_HTTPServer, self.server).fake

    def do_POST(self) -> None:
        self._serve()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_POST

    def _serve(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.fake._next(self.command, path, headers, body)  # pyright: ignore[reportPrivateUsage]
        stopping = self.fake._stopping  # pyright: ignore[reportPrivateUsage]
        try:
            if reply.reset:
                self._reset()
                return
            if reply.delay and stopping.wait(reply.delay):
                self.close_connection = True
                return
            data = reply.body if reply.body is not None else _body(path, reply.status, body)
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{len(self.fake.requests)}")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.drip:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            if not reply.drip:
                self.wfile.write(data)
                return
            self.wfile.flush()
            step = max(reply.drip_bytes, 1)
            for start in range(0, len(data), step):
                if start and stopping.wait(reply.drip):
                    break
                self.wfile.write(data[start : start + step])
                self.wfile.flush()
            self.close_connection = True
        except OSError:  # the client gave up first: nothing to answer
            self.close_connection = True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout: close() sends RST, not FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: ``FakeLLMServer.requests`` says what happened."""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:
            self.close_connection = True


def _body(path: str, status: int, request: bytes) -> bytes:
    """The answer of the endpoint at *path*: its normal one for a 2xx, else its error."""
    sent = _parse(request)
    model = sent.get("model")
    model = model if isinstance(model, str) else "fake-model"
    said = _last_user_message(sent)
    if path == ANTHROPIC_PATH:
        if status >= 400:
            kind = _ANTHROPIC_ERRORS.get(status, "api_error")
            return _json({"type": "error", "error": {"type": kind, "message": f"fake {status}"}})
        return _json(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": f"echo: {said}"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 2},
            }
        )
    if path == OPENAI_PATH:
        if status >= 400:
            kind = _OPENAI_ERRORS.get(status, "server_error")
            return _json({"error": {"message": f"fake {status}", "type": kind, "code": None}})
        return _json(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"echo: {said}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
        )
    return _json({"path": path, "status": status})


def _parse(request: bytes) -> dict[str, Any]:
    try:
        sent: Any = json.loads(request) if request else {}
    except ValueError:
        return {}
    return cast("dict[str, Any]", sent) if isinstance(sent, dict) else {}


def _last_user_message(sent: dict[str, Any]) -> str:
    """The text of the last user message of a chat or messages request."""
    messages: Any = sent.get("messages")
    if not isinstance(messages, list):
        return ""
    listed: list[Any] = messages  # pyright: ignore[reportUnknownVariableType]
    for message in reversed(listed):
        if not isinstance(message, dict):
            continue
        fields = cast("dict[str, Any]", message)
        if fields.get("role") != "user":
            continue
        content: Any = fields.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            items: list[Any] = content  # pyright: ignore[reportUnknownVariableType]
            texts: list[str] = []
            for item in items:
                if isinstance(item, dict):
                    part: dict[str, Any] = item  # pyright: ignore[reportUnknownVariableType]
                    texts.append(str(part.get("text", "")))
            return " ".join(texts)
    return ""


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def _main() -> None:  # pragma: no cover - manual use
    with FakeLLMServer() as server:
        print(f"serving on {server.url} (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    _main()

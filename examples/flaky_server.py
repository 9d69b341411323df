"""A scripted flaky HTTP server on 127.0.0.1, for the tests and the demos.

Standard library only: ``http.server.ThreadingHTTPServer`` on a free port,
served by a daemon thread. Every path plays a script of steps, one step per
request it receives, then repeats its final step forever:

============== ============================================ =================
path           default script                               then
============== ============================================ =================
/ok            (none)                                       200 JSON
/rate-limited  429 with ``Retry-After: 1``, twice            200 JSON
/flaky         503 once                                     200 JSON
/missing       (none)                                       404
/private       (none)                                       401
/reset         connection reset without a response, once    200 JSON
/drip          (none)                                       200, body dripped
/slow          (none)                                       200 after a delay
/dead          (none)                                       503
/echo          (none)                                       200 echoing the request
anything else  (none)                                       404
============== ============================================ =================

A step is an ``int`` (that status, with a small JSON body; 429 and 503 carry
``Retry-After``), one of the strings ``"ok"``, ``"reset"``, ``"drip"``,
``"slow"``, ``"echo"``, or a ``Step`` for full control. ``script(path, steps,
then=...)`` replaces a path's script; the server counts requests per path
(``requests(path)``, ``total``), TCP connections (``connections``), and keeps
a log of what it did (``events``), so a test can assert that a request never
reached it and a demo can print what happened.

Example::

    with FlakyServer() as server:
        server.script("/flaky", [503, 503], then=200)
        requests.get(server.url + "/flaky")   # 503
        server.requests("/flaky")             # 1

Run it alone to try it with curl: ``python examples/flaky_server.py``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TypeAlias, cast

__all__ = ["Event", "FlakyServer", "Step"]


@dataclass(frozen=True)
class Step:
    """What the server does for one request.

    Attributes:
        status: the status code to answer with.
        action: ``"respond"`` (answer at once), ``"reset"`` (close the
            connection abruptly, no response), ``"drip"`` (send the headers,
            then the body one byte per ``drip_interval``), ``"slow"`` (wait
            ``delay`` seconds, then answer), ``"echo"`` (answer with the
            method, path and body received).
        delay: seconds to wait before answering, for ``"slow"``.
        retry_after: the ``Retry-After`` header value, or ``None`` for none.
        headers: extra response headers.
        body_size: bytes in the dripped body, for ``"drip"``.
    """

    status: int = 200
    action: str = "respond"
    delay: float = 0.0
    retry_after: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    body_size: int = 100


StepSpec: TypeAlias = int | str | Step
"""What ``script`` accepts for one step: a status, an action name, or a ``Step``."""


@dataclass(frozen=True)
class Event:
    """One request the server handled: which, the how-manieth on its path, and what it did."""

    method: str
    path: str
    attempt: int
    action: str
    status: int | None


_ACTIONS = ("respond", "reset", "drip", "slow", "echo")


class FlakyServer:
    """A scripted, thread-safe HTTP/1.1 server on 127.0.0.1; use it as a context manager.

    Args:
        retry_after: the ``Retry-After`` header sent with 429 and 503 steps
            given as plain ints (seconds, as a string); ``None`` for none.
        slow_delay: seconds a ``"slow"`` step waits before answering.
        drip_interval: seconds between two bytes of a ``"drip"`` body.
        drip_size: bytes in a ``"drip"`` body (``drip_size * drip_interval``
            seconds to send it all).
    """

    def __init__(
        self,
        *,
        retry_after: str | None = "1",
        slow_delay: float = 2.0,
        drip_interval: float = 0.05,
        drip_size: int = 100,
    ) -> None:
        self.retry_after = retry_after
        self.slow_delay = slow_delay
        self.drip_interval = drip_interval
        self.drip_size = drip_size
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._scripts: dict[str, tuple[list[Step], Step]] = {}
        self._counts: dict[str, int] = {}
        self._connections = 0
        self.events: list[Event] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FlakyServer:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.flaky = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket; slow and dripping answers end."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FlakyServer:
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
            raise RuntimeError("the server is not running: use `with FlakyServer() as server:`")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- scripting ---------------------------------------------------------

    def script(self, path: str, steps: Iterable[StepSpec], then: StepSpec | None = None) -> None:
        """Make *path* play *steps*, one per request, then *then* forever.

        *then* defaults to the path's usual final behaviour (``200`` for the
        paths that recover). The path's request count restarts at zero.
        """
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        final = self._default_script(path)[1] if then is None else self._step(then)
        with self._lock:
            self._scripts[path] = ([self._step(s) for s in steps], final)
            self._counts[path] = 0

    def reset(self) -> None:
        """Restore every default script and zero every counter and the event log."""
        with self._lock:
            self._scripts = {}
            self._counts = {}
            self._connections = 0
            self.events = []

    def requests(self, path: str) -> int:
        """How many requests *path* received (a reset connection counts)."""
        with self._lock:
            return self._counts.get(path, 0)

    @property
    def total(self) -> int:
        """How many requests the server received on all paths."""
        with self._lock:
            return sum(self._counts.values())

    @property
    def connections(self) -> int:
        """How many TCP connections the server accepted (keep-alive reuses one)."""
        with self._lock:
            return self._connections

    # -- what the handler asks ---------------------------------------------

    def _next_step(self, method: str, path: str) -> tuple[int, Step]:
        with self._lock:
            if path not in self._scripts:
                self._scripts[path] = self._default_script(path)
            steps, final = self._scripts[path]
            attempt = self._counts.get(path, 0) + 1
            self._counts[path] = attempt
            step = steps[attempt - 1] if attempt <= len(steps) else final
            status = None if step.action == "reset" else step.status
            self.events.append(Event(method, path, attempt, step.action, status))
            return attempt, step

    def _connected(self) -> None:
        with self._lock:
            self._connections += 1

    def _default_script(self, path: str) -> tuple[list[Step], Step]:
        defaults: dict[str, tuple[list[StepSpec], StepSpec]] = {
            "/ok": ([], 200),
            "/rate-limited": ([429, 429], 200),
            "/flaky": ([503], 200),
            "/missing": ([], 404),
            "/private": ([], 401),
            "/reset": (["reset"], 200),
            "/drip": ([], "drip"),
            "/slow": ([], "slow"),
            "/dead": ([], 503),
            "/echo": ([], "echo"),
        }
        steps, final = defaults.get(path, ([], 404))
        return [self._step(s) for s in steps], self._step(final)

    def _step(self, spec: StepSpec) -> Step:
        if isinstance(spec, Step):
            if spec.action not in _ACTIONS:
                raise ValueError(f"action must be one of {_ACTIONS}, got {spec.action!r}")
            return spec
        if isinstance(spec, bool) or not isinstance(spec, (int, str)):
            raise TypeError(f"a step must be an int, an action name or a Step, got {spec!r}")
        if isinstance(spec, int):
            retry_after = self.retry_after if spec in (429, 503) else None
            return Step(status=spec, retry_after=retry_after)
        if spec == "ok":
            return Step()
        if spec == "slow":
            return Step(action="slow", delay=self.slow_delay)
        if spec == "drip":
            return Step(action="drip", body_size=self.drip_size)
        if spec in _ACTIONS:
            return Step(action=spec)
        raise ValueError(f"a step name must be 'ok' or one of {_ACTIONS}, got {spec!r}")


class _HTTPServer(ThreadingHTTPServer):
    """Strictly private. The socket server, and the FlakyServer its handlers ask."""

    flaky: FlakyServer


class _Handler(BaseHTTPRequestHandler):
    """Strictly private. Plays the step the server hands out for each request."""

    protocol_version = "HTTP/1.1"  # keep-alive: pooled connections are real
    disable_nagle_algorithm = True  # headers and body in separate writes: no 40 ms stalls
    server_version = "FlakyServer/1.0"

    @property
    def flaky(self) -> FlakyServer:
        return cast(_HTTPServer, self.server).flaky

    def setup(self) -> None:
        super().setup()
        self.flaky._connected()  # pyright: ignore[reportPrivateUsage]

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        attempt, step = self.flaky._next_step(self.command, path)  # pyright: ignore[reportPrivateUsage]
        try:
            if step.action == "reset":
                self._reset()
            elif step.action == "drip":
                self._drip(step)
            else:
                if step.action == "slow" and self.flaky._stopping.wait(step.delay):  # pyright: ignore[reportPrivateUsage]
                    self.close_connection = True
                    return
                payload: dict[str, object] = {"path": path, "attempt": attempt}
                if step.action == "echo":
                    payload.update(method=self.command, body=body.decode("utf-8", "replace"))
                self._send(step, json.dumps(payload).encode())
        except (ConnectionError, OSError):  # the client gave up first: nothing to answer
            self.close_connection = True

    def _send(self, step: Step, data: bytes) -> None:
        self.send_response(step.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if step.retry_after is not None:
            self.send_header("Retry-After", step.retry_after)
        for name, value in step.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _drip(self, step: Step) -> None:
        self.send_response(step.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(step.body_size))
        # Said up front: a keep-alive client must not race the close below.
        self.send_header("Connection", "close")
        for name, value in step.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        for _ in range(step.body_size):
            if self.flaky._stopping.wait(self.flaky.drip_interval):  # pyright: ignore[reportPrivateUsage]
                break
            self.wfile.write(b".")
        self.close_connection = True

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout: close() sends RST, not FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the makefile() reference would keep the socket open
        self.connection.close()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the server's ``events`` say what happened."""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:  # a reset or abandoned connection: nothing to report
            self.close_connection = True


def _main() -> None:  # pragma: no cover - manual use
    with FlakyServer() as server:
        print(f"serving on {server.url} (Ctrl-C to stop)")
        print("paths: /ok /rate-limited /flaky /missing /private /reset /drip /slow /dead /echo")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    _main()

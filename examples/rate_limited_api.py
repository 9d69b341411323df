"""The fake LLM API with a provider's limits: a rate and a concurrency capacity.

``RateLimitedAPI`` is ``fake_llm_server.FakeLLMServer`` (the OpenAI
chat-completions and Anthropic messages endpoints the real SDKs call, on
127.0.0.1) that limits its callers as a provider does:

- a **rate**: at most ``rate`` requests per second (a token bucket of one
  second's worth by default, refilling continuously, as GCRA computes it);
- a **capacity**: at most ``capacity`` requests in flight at once, each
  taking ``service_time`` seconds to answer.

A request beyond either limit gets ``429 Too Many Requests`` at once, with
``Retry-After: 1`` and the provider's error body (``rate_limit_exceeded``);
it takes nothing from the rate (a refused request is not counted against it,
as the providers do). The server counts what it did (``stats()``), so a demo
can print how many requests a fleet sent, how many were refused, and how
much got done.

A request holds its place in the capacity for its ``service_time`` from the
moment it is admitted: the API's own work, not the time the client takes to
read the answer (so a busy client machine does not make the API look full).

Example::

    with RateLimitedAPI(rate=40.0, capacity=8) as api:
        client = openai.OpenAI(base_url=api.openai_url, api_key="unused", max_retries=0)
        client.chat.completions.create(model="fake", messages=[...])
        api.stats()   # Stats(requests=1, completed=1, rate_limited=0, ...)

Run it alone to try it with curl: ``python examples/rate_limited_api.py``.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from fake_llm_server import ANTHROPIC_PATH, OPENAI_PATH, FakeLLMServer, Reply, Seen

__all__ = ["RateLimitedAPI", "Stats"]


@dataclass(frozen=True)
class Stats:
    """What the API did since it started.

    Attributes:
        requests: requests received on the LLM endpoints.
        completed: requests admitted and answered.
        rate_limited: 429s sent because the rate was exceeded.
        over_capacity: 429s sent because ``capacity`` requests were in flight.
        max_in_flight: the most requests it served at once.
    """

    requests: int
    completed: int
    rate_limited: int
    over_capacity: int
    max_in_flight: int

    @property
    def refused(self) -> int:
        """Every 429 sent, for either reason."""
        return self.rate_limited + self.over_capacity


class RateLimitedAPI(FakeLLMServer):
    """A fake LLM API that admits *rate* requests per second and *capacity* in flight.

    Args:
        rate: requests per second it admits, over time.
        capacity: requests it serves at once; one more gets a 429.
        burst: requests it admits at once after a quiet spell (the token
            bucket's size; default: one second's worth, *rate*): a
            provider's limiter tolerates some unevenness in arrivals, and so
            does this one.
        service_time: seconds each admitted request takes to answer.
        retry_after: the ``Retry-After`` of its 429s, in whole seconds.
    """

    def __init__(
        self,
        rate: float = 40.0,
        capacity: int = 8,
        *,
        burst: int | None = None,
        service_time: float = 0.1,
        retry_after: int = 1,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got rate={rate!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got capacity={capacity!r}")
        if burst is None:
            burst = max(1, round(rate))
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got burst={burst!r}")
        if service_time < 0:
            raise ValueError(f"service_time must be >= 0, got service_time={service_time!r}")
        super().__init__()
        self.rate = float(rate)
        self.capacity = capacity
        self.burst = burst
        self.service_time = float(service_time)
        self.retry_after = retry_after
        self._interval = 1.0 / self.rate
        self._tat = 0.0  # GCRA: when the bucket would be full again
        self._busy_until: collections.deque[float] = collections.deque()
        self._counts = dict.fromkeys(
            ("requests", "completed", "rate_limited", "over_capacity", "max_in_flight"), 0
        )
        self._limits = threading.Lock()

    def __enter__(self) -> RateLimitedAPI:
        self.start()
        return self

    def stats(self) -> Stats:
        """What the API did since it started."""
        with self._limits:
            return Stats(**self._counts)

    def admit(self, now: float) -> str | None:
        """Take a place for one request arriving at *now*; ``None`` if admitted, else why not."""
        with self._limits:
            counts = self._counts
            counts["requests"] += 1
            busy = self._busy_until
            while busy and busy[0] <= now:
                busy.popleft()
            if len(busy) >= self.capacity:
                counts["over_capacity"] += 1
                return f"{self.capacity} requests are in flight, the most this API serves"
            tat = max(self._tat, now) + self._interval
            if tat - self.burst * self._interval > now:
                counts["rate_limited"] += 1
                return f"more than {self.rate:g} requests per second"
            self._tat = tat
            busy.append(now + self.service_time)
            counts["completed"] += 1
            counts["max_in_flight"] = max(counts["max_in_flight"], len(busy))
            return None

    def _next(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if path not in (OPENAI_PATH, ANTHROPIC_PATH):
            return super()._next(method, path, headers, body)
        now = time.monotonic()
        refused = self.admit(now)
        if refused is None:
            reply = Reply(delay=self.service_time)
        else:
            reply = Reply(429, headers={"Retry-After": str(self.retry_after)})
        with self._lock:
            self.requests.append(Seen(method, path, headers, body, reply, now))
        return reply


if __name__ == "__main__":
    with RateLimitedAPI() as served:
        print(f"serving {served.openai_url}/chat/completions (40 req/s, 8 in flight); Ctrl-C")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()

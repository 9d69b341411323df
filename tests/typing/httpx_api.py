"""The types users see from ``resilient.httpx``: both clients, both SDKs.

Checked by ``mypy --strict`` and ``pyright --strict``, imported by
``tests/test_typing_files.py``, never run (conventions: ``retry_api.py``).
"""

from __future__ import annotations

from datetime import timedelta

import anthropic
import httpx
import httpx2
import openai

from resilient import CircuitBreaker, RetryBudget
from resilient.backoff import FullJitter
from resilient.httpx import AsyncResilientTransport, ResilientTransport
from resilient.testing import ManualClock


def clients() -> None:
    transport = ResilientTransport(
        httpx2.HTTPTransport(retries=0),
        max_retries=5,
        base_delay=0.25,
        max_delay=timedelta(seconds=20),
        max_retry_after=60.0,
        jitter=FullJitter(),
        total_timeout=120.0,
        idempotent=True,
        breaker=CircuitBreaker(name="llm"),
        budget=RetryBudget(name="llm"),
        clock=ManualClock(),
    )
    httpx2.Client(transport=transport)
    httpx.Client(transport=ResilientTransport(httpx.HTTPTransport()))
    httpx.Client(transport=ResilientTransport())
    httpx2.AsyncClient(transport=AsyncResilientTransport(httpx2.AsyncHTTPTransport()))
    httpx.AsyncClient(transport=AsyncResilientTransport())


def sdks() -> None:
    openai.OpenAI(http_client=httpx2.Client(transport=ResilientTransport()), max_retries=0)
    anthropic.Anthropic(
        http_client=httpx2.Client(transport=ResilientTransport(idempotent=True)), max_retries=0
    )
    openai.AsyncOpenAI(
        http_client=httpx2.AsyncClient(transport=AsyncResilientTransport()), max_retries=0
    )

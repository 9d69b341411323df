"""An agent loop on the real openai SDK (and one anthropic call), against a fake LLM API.

Run: python examples/llm_agent.py   (needs: pip install -e '.[httpx]' openai anthropic)

With ``--skip-waits`` the retries' waits are computed, printed and counted as
usual, and not slept (``skipped_waits.SkippedWaits``, made the process's
default clock with ``resilient.testing.use_clock``); the read timeout is real.

No network and no key: the example starts ``FakeLLMServer`` (127.0.0.1, a
free port; ``examples/fake_llm_server.py``), which speaks OpenAI's chat
completions and Anthropic's messages, and scripts what goes wrong on each
turn: a 429 with ``retry-after-ms``, a 529 "overloaded", a 500, a reset
connection, a body so slow the read times out, a 400 the SDK must not retry.

The transport retries everything up to the head of an answer. A body that
stalls after the head is read by the client once the transport has handed
the response over, so the agent wraps each turn in ``@retry`` for TIMEOUT
only: the SDK's ``APITimeoutError`` is classified TIMEOUT, and that turn is
asked again once.

The SDK clients have their own retries off (``max_retries=0``); their HTTP
client's transport is ``resilient.httpx.ResilientTransport``, with
``idempotent=True`` (a completion has no side effect, so a 500 or a cut
connection may be retried), one shared ``CircuitBreaker`` and one
``RetryBudget``. Each turn prints, in plain words, what the server did with
each request, what the library did about it, and what the agent got. It
exits with 0 when every turn ended as planned, 1 otherwise; it takes about
two seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx2
import openai

from resilient import CircuitBreaker, ErrorClass, RetryBudget, retry
from resilient.httpx import ResilientTransport
from resilient.testing import use_clock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_llm_server import ANTHROPIC_PATH, OPENAI_PATH, FakeLLMServer, Reply
from skipped_waits import SkippedWaits

# Short, real waits: the whole run takes a couple of seconds. The turn whose body stalls
# has a short read timeout of its own (READ_TIMEOUT); every other wait is TIMEOUT, so a
# busy machine that answers late (a loopback answer took over 0.6 s at worst, load ~20)
# never makes a turn that answers at once time out and be asked twice.
BASE_DELAY, MAX_DELAY, READ_TIMEOUT, TIMEOUT, TOTAL_TIMEOUT = 0.05, 0.5, 0.6, 5.0, 10.0


@dataclass(frozen=True)
class Turn:
    """One step of the agent: what it asks, what the server will do first, how it must end."""

    prompt: str
    server_does: str
    replies: tuple[Reply, ...]
    succeeds: bool = True
    note: str = ""
    read_timeout: float | None = None  # this turn's own read timeout, else TIMEOUT


TURNS = (
    Turn(
        "plan a trip to Lisbon",
        "rate-limits the first request, asking for 300 ms (retry-after-ms)",
        (Reply(429, headers={"retry-after-ms": "300"}),),
    ),
    Turn("find three hotels", "is overloaded once (529)", (Reply(529),)),
    Turn("compare their prices", "fails once with a 500", (Reply(500),)),
    Turn("book the cheapest", "resets the connection once", (Reply(reset=True),)),
    Turn(
        "summarise the booking",
        "sends the head, then a body too slow to read in time, once",
        (Reply(body=b'{"choices": []}' * 4, drip=2.0, drip_bytes=4),),
        note=(
            f"the transport hands a 200 over once its head arrives; a body that stalls after "
            f"that (read timeout {READ_TIMEOUT} s) is retried by the agent's own @retry, for "
            f"timeouts only"
        ),
        read_timeout=READ_TIMEOUT,
    ),
    Turn(
        "translate it to Klingon",
        "refuses the request (400): asking again cannot help",
        (Reply(400),),
        succeeds=False,
    ),
    Turn("say goodbye", "answers at once", ()),
)


class Lines(logging.Handler):
    """Keeps the library's log messages of the current turn, to print them under it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An agent loop on the real SDKs, offline.")
    parser.add_argument(
        "--skip-waits",
        action="store_true",
        help="compute, print and count the retries' waits, but do not sleep them",
    )
    options = parser.parse_args(argv)
    if options.skip_waits:
        print("--skip-waits: the retries' waits are computed and printed, not slept")
    with use_clock(SkippedWaits()) if options.skip_waits else contextlib.nullcontext():
        return run()


def run() -> int:
    started = time.monotonic()
    lines = Lines()
    retry_log = logging.getLogger("resilient.retry")
    retry_log.addHandler(lines)
    retry_log.propagate = False  # printed under each turn instead
    breaker = CircuitBreaker(failure_threshold=5, recovery_timeout=30.0, name="llm-api")
    budget = RetryBudget(max_tokens=10, token_ratio=0.2, name="llm-api")
    transport = ResilientTransport(
        base_delay=BASE_DELAY,
        max_delay=MAX_DELAY,
        total_timeout=TOTAL_TIMEOUT,
        idempotent=True,
        breaker=breaker,
        budget=budget,
    )
    problems: list[str] = []
    http_client = httpx2.Client(transport=transport, timeout=httpx2.Timeout(TIMEOUT))
    with FakeLLMServer() as server, http_client:
        chat = openai.OpenAI(
            api_key="sk-fake", base_url=server.openai_url, max_retries=0, http_client=http_client
        )
        print(f"fake LLM API on {server.url} (no network, no key)")
        print(
            "the SDKs' own retries are off (max_retries=0): resilient's transport retries "
            "instead, with idempotent=True (a completion changes nothing on the server, so "
            "even a 500 or a cut connection may be asked again)"
        )
        for number, turn in enumerate(TURNS, 1):
            print(
                f'\n[{number}/{len(TURNS)}] agent asks "{turn.prompt}" (server: {turn.server_does})'
            )
            if turn.note:
                print(f"    ({turn.note})")
            server.script(OPENAI_PATH, *turn.replies)
            before = len(server.requests)
            began = time.monotonic()
            try:
                answer = f"answer: {ask_the_model(chat, turn.prompt, turn.read_timeout)}"
                ok = True
            except openai.APIError as exc:
                answer, ok = f"the SDK raised {type(exc).__name__}: {exc.message}", False
            report(server, before, lines, answer, time.monotonic() - began)
            if ok != turn.succeeds:
                problems.append(f"turn {number} ({turn.prompt!r}) ended otherwise than planned")

        print('\n[anthropic] agent asks "check the weather" (server: is overloaded once (529))')
        server.script(ANTHROPIC_PATH, Reply(529))
        claude = anthropic.Anthropic(
            api_key="sk-fake", base_url=server.anthropic_url, max_retries=0, http_client=http_client
        )
        before, began = len(server.requests), time.monotonic()
        message = claude.messages.create(
            model="claude-fake",
            max_tokens=64,
            messages=[{"role": "user", "content": "check the weather"}],
        )
        block = message.content[0]
        text = block.text if isinstance(block, anthropic.types.TextBlock) else "?"
        report(server, before, lines, f"answer: {text}", time.monotonic() - began)

    print(
        f"\nbreaker {breaker.name!r} is {breaker.state.value} (it opens after "
        f"{breaker.failure_threshold} failures in a row)"
    )
    print(
        f"retry budget {budget.name!r}: {budget.tokens:.1f} of {budget.max_tokens:g} tokens left "
        f"(each failure that could be retried spends 1, each success gives "
        f"{budget.token_ratio:g} back; no retry once half are gone)"
    )
    for problem in problems:
        print(f"UNEXPECTED: {problem}")
    if not problems:
        print("Every turn ended as planned: the failures above are the ones the server scripted.")
    print(f"run took {time.monotonic() - started:.1f} s")
    return 1 if problems else 0


@retry(max_retries=1, base_delay=0.05, retryable_classes=(ErrorClass.TIMEOUT,))
def ask_the_model(chat: openai.OpenAI, prompt: str, read_timeout: float | None = None) -> str:
    """One turn: the assistant's answer to *prompt*; asked again once if the body stalled."""
    completion = chat.chat.completions.create(
        model="gpt-fake",
        messages=[{"role": "user", "content": prompt}],
        timeout=openai.NOT_GIVEN
        if read_timeout is None
        else httpx2.Timeout(TIMEOUT, read=read_timeout),
    )
    return str(completion.choices[0].message.content)


def report(server: FakeLLMServer, before: int, lines: Lines, answer: str, took: float) -> None:
    """Print what the server did with each request of one call, what the library did, the end."""
    seen = server.requests[before:]
    print("    server: " + " -> ".join(_what_server_did(s.reply) for s in seen))
    for message in lines.messages:
        print(f"    resilient: {message}")
    lines.messages.clear()
    count = len(seen)
    print(f"    {answer}  ({count} request{'s' if count != 1 else ''}, {took:.2f} s)")


def _what_server_did(reply: Reply) -> str:
    if reply.reset:
        return "reset the connection"
    if reply.drip:
        return "dripped the body too slowly"
    return reply.describe()


if __name__ == "__main__":
    sys.exit(main())

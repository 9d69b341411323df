"""Clocks for pacing tests: threads and tasks that really wait, in time the test moves."""

from __future__ import annotations

import asyncio
import heapq
import threading

from resilient import RateLimiter

__all__ = ["SteppedClock", "VirtualClock", "run_queue_through_a_pause"]


class SteppedClock:
    """A clock whose ``sleep`` blocks the calling thread until the test moves time past it.

    ``settle()`` returns once every thread is done or asleep until a time still ahead:
    what happens at one instant has happened, deterministically, before the next step.
    """

    def __init__(self, threads: int) -> None:
        self._now = 0.0
        self._cond = threading.Condition()
        self._asleep: list[float] = []  # the wake-up times of the threads sleeping
        self._threads = threads
        self.done = 0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            self.sleeps.append(seconds)
            target = self._now + seconds
            self._asleep.append(target)
            self._cond.notify_all()
            while self._now < target:
                self._cond.wait()
            self._asleep.remove(target)
            self._cond.notify_all()

    async def asleep(self, seconds: float) -> None:  # pragma: no cover - threads only
        raise NotImplementedError

    def finished(self) -> None:
        with self._cond:
            self.done += 1
            self._cond.notify_all()

    def settle(self) -> None:
        with self._cond:
            settled = self._cond.wait_for(
                lambda: self.done + sum(t > self._now for t in self._asleep) == self._threads,
                timeout=10,
            )
        assert settled, "the threads did not settle"

    def advance_to(self, when: float) -> None:
        with self._cond:
            self._now = when
            self._cond.notify_all()
        self.settle()


def run_queue_through_a_pause(
    limiter: RateLimiter, clock: SteppedClock, pauser: RateLimiter
) -> list[float]:
    """Six callers queue at 20/s; *pauser* pauses 1 s once five of them wait: when each went."""
    went: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        try:
            limiter.acquire()
            with lock:
                went.append(clock.monotonic())
        finally:
            clock.finished()

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for thread in threads:
        thread.start()
    clock.settle()  # one went at once, five sleep towards their turns
    pauser.pause(1.0)
    step = 0
    while clock.done < 6 and step < 400:
        step += 1
        clock.advance_to(step * 0.01)
    for thread in threads:
        thread.join(timeout=10)
    return sorted(went)


class VirtualClock:
    """A clock for asyncio tasks in virtual time: ``asleep`` waits until ``run_until`` passes it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._serial = 0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:  # pragma: no cover - tasks only
        raise NotImplementedError

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._serial += 1
        heapq.heappush(self._timers, (self.now + seconds, self._serial, future))
        await future

    @staticmethod
    async def settle() -> None:
        for _ in range(30):  # every task that can run runs, to its next wait
            await asyncio.sleep(0)

    async def run_until(self, when: float) -> None:
        await self.settle()
        while self._timers and self._timers[0][0] <= when:
            at, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, at)
            if not future.done():
                future.set_result(None)
            await self.settle()
        self.now = max(self.now, when)
        await self.settle()

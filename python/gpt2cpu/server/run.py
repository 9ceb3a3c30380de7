"""One HTTP request's link to the engine: submits its choices, carries their events from the
engine thread to the request's event loop, and cancels them when the request ends early (a
client that disconnects, a stream dropped part-way, a choice that failed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .engine import Engine, QueueFull, ShuttingDown, TooLarge, TooManyChoices
from .errors import ApiError
from .job import Delta, Event, Failed, Finished, Job, PromptScored
from .responses import Choice

if TYPE_CHECKING:
    from starlette.requests import Request

# How often a request checks whether its client is still there: a cancel lands within this
# and a step, however fast the tokens arrive.
_DISCONNECT_POLL_SECONDS = 0.1


class Run:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.loop = asyncio.get_running_loop()
        # None: the client has gone (put by the watcher).
        self.queue: asyncio.Queue[tuple[int, Event] | None] = asyncio.Queue()
        self.jobs: list[Job] = []

    def emit(self, index: int, event: Event) -> None:
        """Called on the engine thread."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, event))
        except RuntimeError:  # the event loop is gone (shutdown): nobody is listening
            for job in self.jobs:
                job.cancelled.set()

    def submit(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        try:
            self.engine.submit(jobs)
        except QueueFull as exc:
            raise ApiError(429, str(exc), code="queue_full") from None
        except TooLarge as exc:
            raise ApiError(400, str(exc), code="kv_budget_exceeded") from None
        except TooManyChoices as exc:
            raise ApiError(400, str(exc), "n", "invalid_value") from None
        except ShuttingDown as exc:
            raise ApiError(503, str(exc)) from None

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancelled.set()

    async def events(self, request: Request | None = None) -> AsyncIterator[tuple[int, Event]]:
        """The choices' events until each has finished; ApiError when one fails (the others
        are cancelled). With `request`, a disconnected client cancels the run."""
        # The watcher polls on its own clock: checked only when no event came for a while,
        # a request whose tokens keep coming would never notice its client leave.
        watcher = None if request is None else asyncio.ensure_future(self._watch(request))
        try:
            open_choices = len(self.jobs)
            while open_choices:
                item = await self.queue.get()
                if item is None:
                    return
                index, event = item
                if isinstance(event, Failed):
                    self.cancel()
                    raise ApiError(event.status, event.message)
                if isinstance(event, Finished):
                    open_choices -= 1
                yield index, event
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _watch(self, request: Request) -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(_DISCONNECT_POLL_SECONDS)
        self.cancel()
        self.queue.put_nowait(None)

    async def collect(self, request: Request) -> list[Choice]:
        choices = [Choice() for _ in self.jobs]
        prompt_scores: dict[int, PromptScored] = {}
        async for index, event in self.events(request):
            if isinstance(event, Delta):
                choices[index].add(event)
            elif isinstance(event, PromptScored):
                prompt_scores[index] = event
            elif isinstance(event, Finished):
                choices[index].finished = event
        for index, scored in prompt_scores.items():
            choices[index].prompt_logprobs = scored.logprobs
        return choices

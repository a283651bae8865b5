"""The scheduler of `serve`: one thread makes every model call, so concurrent requests share forward passes.

Requests wait in a queue, one entry per prompt. Between two decode steps the scheduler admits waiting
prompts while the batch has room (`max_num_seqs` rows): the prompts admitted together for one set of
weights are prefilled together (`generation.Batch.add_many`, one padded forward pass where their
lengths allow) and join a `generation.Batch`; then it runs one step of every batch, and answers the requests whose prompts have all
finished: continuous batching, sequences join and leave between steps. Requests for different weights
(the base model, each LoRA adapter) are kept in separate batches, one per set of weights, and never
share a forward pass. Work that changes the weights (loading an adapter) runs on the same thread
between two steps (`call`), so no step ever sees half-loaded weights. A prompt that begins like a
recent one (same weights) prefills only the rest (`generation.PrefixCache`). When nothing is
running, the first prompt to arrive waits up to `batch_wait` seconds for others (a client's burst of
concurrent requests arrives over a few milliseconds), so that a burst is prefilled together instead of
its first prompt alone and the rest one step later.

A request pins its weights (`Host.acquire`) from admission to its answer: an adapter replaced or
unloaded meanwhile stays loaded until no request uses it, so a request sees one adapter throughout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar

from tenet_trainer import generation as gen

log = logging.getLogger("tenet.serve")

T = TypeVar("T")

_PREFIX_WEIGHTS = 4
"""Sets of weights whose prompt prefixes are kept."""


class Host(Protocol):
    """What the scheduler needs from the server's engine."""

    model: Any
    tokenizer: Any
    end_ids: set[int]
    stopping: bool

    def acquire(self, name: str) -> Hashable:
        """The weights key of model `name`, pinned until `release` (raises for an unknown name)."""
        ...

    def release(self, key: Hashable) -> None: ...

    def weights(self, key: Hashable) -> AbstractContextManager[None]:
        """Make the model compute with `key`'s weights."""
        ...

    def record(self, generations: list[gen.Generation]) -> None:
        """A request has been answered (statistics)."""
        ...


@dataclass(eq=False)
class _Request:
    name: str
    prompts: list[list[int]]
    params: list[gen.SamplingParams]
    future: Future[list[gen.Generation]]
    jobs: list[gen.Job | None] = field(default_factory=list)
    key: Hashable = None
    pinned: bool = False

    def __post_init__(self) -> None:
        self.jobs = [None] * len(self.prompts)


@dataclass(eq=False)
class _Item:
    """One prompt of a request, waiting to be admitted."""

    request: _Request
    index: int

    @property
    def rows(self) -> int:
        return self.request.params[self.index].n


class Scheduler:
    def __init__(self, host: Host, max_num_seqs: int, prefix_entries: int = 0, batch_wait: float = 0.0):
        self.host = host
        self.max_num_seqs = max_num_seqs
        self.batch_wait = batch_wait
        """Seconds the first prompt to arrive at an idle scheduler waits for others to prefill with."""
        self.prefix_entries = prefix_entries
        self._prefixes: OrderedDict[Hashable, gen.PrefixCache] = OrderedDict()
        """Per set of weights, the most recently used last (a replaced adapter's age out)."""
        self._cond = threading.Condition()
        self._pending: deque[_Item] = deque()
        self._calls: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._closed = False
        self._batches: dict[Hashable, gen.Batch] = {}
        self.steps = 0
        """Decode steps run (one forward pass each)."""
        self.max_rows = 0
        """The most rows one decode step carried."""
        self._thread = threading.Thread(target=self._run, name="tenet-scheduler", daemon=True)
        self._thread.start()

    # -- from other threads

    def submit(self, name: str, prompts: list[list[int]], params: list[gen.SamplingParams]) -> Future[list[gen.Generation]]:
        """Generate for every prompt with model `name`; the future holds one Generation per prompt."""
        request = _Request(name, prompts, params, Future())
        with self._cond:
            self._pending.extend(_Item(request, i) for i in range(len(prompts)))
            self._cond.notify()
        return request.future

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the scheduler's thread between two steps and return its result (or raise its error)."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            self._calls.append((fn, future))
            self._cond.notify()
        return future.result()

    def close(self, timeout: float = 30) -> None:
        """End every request still running ("abort") and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the scheduler's thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._calls or self._batches or self._closed):
                    self._cond.wait()
                if not self._batches:
                    self._gather()
                calls, self._calls = self._calls, []
                closed = self._closed
            for fn, future in calls:
                _settle(future, fn)
            if closed or self.host.stopping:
                self._abort_all()
                if closed:
                    return
                continue
            try:
                self._admit()
                self._step()
            except Exception as err:  # noqa: BLE001 - a bug here must not leave requests hanging forever
                log.exception("scheduler step failed")
                self._fail_all(err)

    def _gather(self) -> None:
        """Idle, with prompts waiting: wait up to `batch_wait` for more to arrive, until a batch is full
        (or a call or close comes in). Holds `_cond`."""
        if self.batch_wait <= 0:
            return
        deadline = time.monotonic() + self.batch_wait
        while not (self._calls or self._closed) and sum(item.rows for item in self._pending) < self.max_num_seqs:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _active_rows(self) -> int:
        return sum(len(batch.rows) for batch in self._batches.values())

    def _admit(self) -> None:
        """Take waiting prompts while there is room, then prefill them, those of one set of weights together."""
        taken: dict[Hashable, list[_Item]] = {}
        try:
            self._take(taken)
        finally:
            for key, items in taken.items():
                self._prefill(key, items)

    def _take(self, taken: dict[Hashable, list[_Item]]) -> None:
        active = self._active_rows()
        while True:
            with self._cond:
                if not self._pending:
                    return
                item = self._pending[0]
                if active and active + item.rows > self.max_num_seqs:
                    return
                self._pending.popleft()
            request = item.request
            if request.future.done():  # failed already (an earlier prompt of it)
                continue
            if not request.pinned:
                try:
                    request.key = self.host.acquire(request.name)
                except Exception as err:  # noqa: BLE001 - e.g. the adapter was unloaded while it waited
                    request.future.set_exception(err)
                    continue
                request.pinned = True
            batch = self._batches.get(request.key)
            if batch is None:
                batch = self._batches[request.key] = gen.Batch(self.host.model, self.host.tokenizer, self.host.end_ids, lambda: self.host.stopping, self._prefix_cache(request.key))
            group = taken.setdefault(request.key, [])
            if not batch.can_join or (group and not batch.joinable):  # a cache that cannot be joined: one prompt at a time
                with self._cond:
                    self._pending.appendleft(item)
                return
            group.append(item)
            active += item.rows

    def _prefill(self, key: Hashable, items: list[_Item]) -> None:
        """Prefill `items` into the batch of `key` together; if that fails, one by one, so that only a
        prompt that fails on its own fails its request."""
        batch = self._batches[key]
        items = [item for item in items if not item.request.future.done()]
        work = [(item.request.prompts[item.index], item.request.params[item.index]) for item in items]
        if len(items) > 1:
            log.debug("prefilling %d prompts together", len(items))
            try:
                with self.host.weights(key):
                    jobs = batch.add_many(work)
            except Exception:  # noqa: BLE001 - retried one by one below, which names the culprit
                log.exception("batched prefill failed; prefilling one prompt at a time")
            else:
                for item, job in zip(items, jobs):
                    self._started(item, job)
                return
        for item, one in zip(items, work):
            if item.request.future.done():  # an earlier prompt of its request failed
                continue
            try:
                with self.host.weights(key):
                    job = batch.add(*one)
            except Exception as err:  # noqa: BLE001 - this request's failure only
                log.exception("prefill failed")
                self._fail(item.request, err)
                continue
            self._started(item, job)

    def _started(self, item: _Item, job: gen.Job) -> None:
        job.owner = item.request
        item.request.jobs[item.index] = job
        if job.done:
            self._job_done(job)

    def _prefix_cache(self, key: Hashable) -> gen.PrefixCache | None:
        if self.prefix_entries <= 0:
            return None
        cache = self._prefixes.pop(key, None) or gen.PrefixCache(self.prefix_entries)
        self._prefixes[key] = cache
        while len(self._prefixes) > _PREFIX_WEIGHTS:
            self._prefixes.popitem(last=False)
        return cache

    def _step(self) -> None:
        for key, batch in list(self._batches.items()):
            if batch.rows:
                self.steps += 1
                self.max_rows = max(self.max_rows, len(batch.rows))
                try:
                    with self.host.weights(key):
                        done = batch.step()
                except Exception as err:  # noqa: BLE001 - fails the requests of this batch only
                    log.exception("decode step failed")
                    for request in {id(row.job.owner): row.job.owner for row in batch.rows}.values():
                        self._fail(request, err)
                    done = []
                    batch.abort()
                for job in done:
                    self._job_done(job)
            if not batch.rows:
                del self._batches[key]

    def _job_done(self, job: gen.Job) -> None:
        request: _Request = job.owner
        if request.future.done() or not all(j is not None and j.done for j in request.jobs):
            return
        generations = [j.generation for j in request.jobs if j is not None]
        self._unpin(request)
        self.host.record(generations)
        request.future.set_result(generations)

    def _fail(self, request: _Request, err: BaseException) -> None:
        self._unpin(request)
        if not request.future.done():
            request.future.set_exception(err)

    def _unpin(self, request: _Request) -> None:
        if request.pinned:
            request.pinned = False
            self.host.release(request.key)

    def _abort_all(self) -> None:
        """Shutting down: running rows end now, waiting prompts end without a token ("abort")."""
        for batch in list(self._batches.values()):
            for job in batch.abort():
                self._job_done(job)
        self._batches.clear()
        with self._cond:
            items, self._pending = list(self._pending), deque()
        for item in items:
            request = item.request
            job = gen.Job(request.prompts[item.index], request.params[item.index], set())
            job.owner = request
            job.end_empty("abort")
            request.jobs[item.index] = job
            self._job_done(job)

    def _fail_all(self, err: BaseException) -> None:
        requests = {id(row.job.owner): row.job.owner for batch in self._batches.values() for row in batch.rows}
        self._batches.clear()
        with self._cond:
            requests.update({id(item.request): item.request for item in self._pending})
            self._pending.clear()
        for request in requests.values():
            self._fail(request, err)


def _settle(future: Future[Any], fn: Callable[[], Any]) -> None:
    try:
        future.set_result(fn())
    except BaseException as err:  # noqa: BLE001 - handed to the caller
        future.set_exception(err)

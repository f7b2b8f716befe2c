"""Run a batch on every core when it pays, in order, with progress callbacks."""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """Number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def map_batches(
    work: Callable[[Sequence[T]], list[R]],
    items: Iterable[T],
    *,
    jobs: int,
    parallel: bool,
    chunk_size: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[list[T], list[R]]]:
    """Yield `(chunk, work(chunk))` for consecutive chunks of `items`, in order.

    With `parallel` and `jobs > 1`, chunks run in `jobs` processes, a few at a time, so
    memory stays bounded whatever the number of items (items are read lazily); a batch
    that fits in one chunk runs here, where starting processes would cost more.
    `work` and `initializer` must be module-level functions (they are pickled).
    """
    chunks = _chunks(items, chunk_size)
    first = next(chunks, [])
    if len(first) < chunk_size:  # everything fits in one chunk: processes would not pay
        parallel = False
    chunks = itertools.chain([first] if first else [], chunks)
    if jobs <= 1 or not parallel:
        if initializer is not None:
            initializer(*initargs)
        for chunk in chunks:
            results = work(chunk)
            if progress:
                progress(len(chunk))
            yield chunk, results
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        pending: deque[tuple[list[T], Future[list[R]]]] = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(work, chunk)))
            if len(pending) >= 2 * jobs:
                done, future = pending.popleft()
                results = future.result()
                if progress:
                    progress(len(done))
                yield done, results
        while pending:
            done, future = pending.popleft()
            results = future.result()
            if progress:
                progress(len(done))
            yield done, results

"""Run a batch on every core when it pays, in order, with progress callbacks."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """Number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def map_batches(
    work: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    *,
    jobs: int,
    min_parallel: int,
    chunk_size: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    progress: Callable[[int], None] | None = None,
) -> Iterator[R]:
    """Yield `work(chunk)` results for every chunk of `items`, in order.

    Runs in `jobs` processes when there are at least `min_parallel` items (below that,
    starting processes costs more than it saves), otherwise in this process.
    `work` and `initializer` must be module-level functions (they are pickled).
    """
    if jobs <= 1 or len(items) < min_parallel:
        if initializer is not None:
            initializer(*initargs)
        for chunk in _chunks(items, chunk_size):
            yield from work(chunk)
            if progress:
                progress(len(chunk))
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        chunks = list(_chunks(items, chunk_size))
        for chunk, results in zip(chunks, pool.map(work, chunks), strict=True):
            yield from results
            if progress:
                progress(len(chunk))

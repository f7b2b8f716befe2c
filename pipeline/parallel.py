"""Run a batch on every core when it pays, in order, with progress callbacks.

Worker processes never outlive the command: each one dies with its parent (Linux:
`PR_SET_PDEATHSIG`; elsewhere a thread watching the parent), and closes the file
descriptors the parent asked workers not to keep (the campaign's run lock).

A command runs one thread: its workers are forked from it (nothing to import again). The
server of `grille ui` runs several: a child forked beside them could find a lock held
forever, so its workers are forked from a « fork server », a process of its own started
once, single-threaded, with grille already imported (`start_worker_server`): a batch
starts as fast as from a command, where spawning fresh workers cost seconds.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """Number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_not_for_workers: set[int] = set()  # file descriptors a forked worker closes at once


@contextmanager
def closed_in_workers(fd: int) -> Iterator[None]:
    """While inside, worker processes forked from here close `fd` when they start.

    A lock held through `fd` then belongs to this process alone: it is released when this
    process ends, whatever its workers do.
    """
    _not_for_workers.add(fd)
    try:
        yield
    finally:
        _not_for_workers.discard(fd)


def _watch_parent(parent: int) -> None:
    """Exit at once when the parent process is gone (the portable fallback)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _watch_process(pid: int) -> None:
    """Exit at once when the process `pid`, which is not this one's parent, is gone."""
    try:
        handle = os.pidfd_open(pid)  # Linux ≥ 5.3: readable once the process has ended
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        while True:  # elsewhere: look every half second
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(0.5)
    select.select([handle], [], [])
    os._exit(1)


def die_with_parent(parent: int) -> None:
    """Make this (worker) process end when `parent` ends, however it ends. A worker of the
    fork server is not the child of the process that asked for it: it watches it instead
    (the fork server itself lives as long as any of its workers)."""
    if os.getppid() != parent:
        threading.Thread(target=_watch_process, args=(parent,), daemon=True).start()
        return
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _start_worker(
    parent: int, folder: str, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
) -> None:
    """Worker-side start: tie the worker to the process that asked for it, work in that
    process's current `folder`, drop its lock, then init."""
    die_with_parent(parent)
    with suppress(OSError):
        os.chdir(folder)
    for fd in list(_not_for_workers):
        with suppress(OSError):
            os.close(fd)
    if initializer is not None:
        initializer(*initargs)


# imported once by the fork server rather than by each worker: what workers run (the
# program's main module is imported again by each worker before its first task: that of
# `grille` imports the commands)
_PRELOADED = ["pipeline.cli", "pipeline.campaign", "pipeline.collect"]


def _start_method() -> str:
    """« fork » (fast: nothing to import again) when this process runs one thread only;
    when it runs others (the server of `grille ui`), a child forked while another thread
    holds a lock would find it held forever: « forkserver » (see `start_worker_server`),
    else « spawn »."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def start_worker_server() -> None:
    """Start now, in the background, the fork server the workers of a process running
    threads are forked from (`grille ui` calls it at start): its own start (Python and
    grille imported, about a second) is then not paid by the first batch. It imports
    grille's modules this process has imported, so that workers need not. Does nothing
    where there is no fork server (Windows: workers are spawned)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    from multiprocessing import forkserver

    loaded = [name for name in sys.modules if name.split(".")[0] == "pipeline"]
    multiprocessing.set_forkserver_preload(sorted({*_PRELOADED, *loaded}))
    forkserver.ensure_running()


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
    method = _start_method()
    if method == "forkserver":
        start_worker_server()  # at once if `grille ui` did not start it already
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context(method),
        initializer=_start_worker,
        initargs=(os.getpid(), os.getcwd(), initializer, initargs),
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

"""Batches on several processes: order kept, progress reported, small batches inline."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence

from pipeline.parallel import map_batches


def _squares_and_pids(chunk: Sequence[int]) -> list[tuple[int, int]]:
    return [(n * n, os.getpid()) for n in chunk]


def test_map_batches__parallel__results_in_order_and_progress_counts_every_item() -> None:
    seen: list[int] = []
    results = [
        result
        for _, chunk_results in map_batches(
            _squares_and_pids,
            range(100),
            jobs=2,
            parallel=True,
            chunk_size=10,
            progress=seen.append,
        )
        for result in chunk_results
    ]
    assert [square for square, _ in results] == [n * n for n in range(100)]
    assert sum(seen) == 100
    assert {pid for _, pid in results} != {os.getpid()}  # ran in worker processes


def test_map_batches__one_chunk_only__runs_in_this_process() -> None:
    results = [
        r
        for _, rs in map_batches(_squares_and_pids, range(5), jobs=2, parallel=True, chunk_size=10)
        for r in rs
    ]
    assert results == [(n * n, os.getpid()) for n in range(5)]


def test_map_batches__nothing_to_do__yields_nothing() -> None:
    assert list(map_batches(_squares_and_pids, [], jobs=2, parallel=True, chunk_size=10)) == []


def _forked(chunk: Sequence[int]) -> list[tuple[int, bool]]:
    """Each item, and whether this worker was forked (it then has the test runner loaded)."""
    return [(n, "pytest" in sys.modules) for n in chunk]


def _run_forked(results: list[tuple[int, bool]]) -> None:
    for _, chunk_results in map_batches(_forked, range(40), jobs=2, parallel=True, chunk_size=10):
        results.extend(chunk_results)


def test_map_batches__from_a_process_running_threads__workers_are_spawned_not_forked() -> None:
    """`grille ui` collects from a job thread while the server's threads run: its workers
    start afresh (spawn) instead of being forked with another thread's locks."""
    alone: list[tuple[int, bool]] = []
    _run_forked(alone)
    assert [n for n, _ in alone] == list(range(40))
    assert all(forked for _, forked in alone)  # one thread: forked, as grille's commands do
    threaded: list[tuple[int, bool]] = []
    worker = threading.Thread(target=_run_forked, args=(threaded,))
    worker.start()
    worker.join(120)
    assert [n for n, _ in threaded] == list(range(40))
    assert not any(forked for _, forked in threaded)

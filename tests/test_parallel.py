"""Batches on several processes: order kept, progress reported, small batches inline."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing import forkserver
from pathlib import Path

import pytest

from pipeline.parallel import map_batches, start_worker_server


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


def _forked(chunk: Sequence[int]) -> list[tuple[int, bool, str]]:
    """Each item, whether this worker was forked from the test (it then holds the mark the
    test set) and the folder it works in."""
    return [(n, hasattr(sys, "_grille_test_mark"), os.getcwd()) for n in chunk]


def _run_forked(results: list[tuple[int, bool, str]]) -> None:
    for _, chunk_results in map_batches(_forked, range(40), jobs=2, parallel=True, chunk_size=10):
        results.extend(chunk_results)


def test_map_batches__from_a_process_running_threads__workers_come_from_the_fork_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`grille ui` collects from a job thread while the server's threads run: its workers
    are forked from the fork server (single-threaded, grille imported), never from this
    process with another thread's locks; they work in this process's current folder."""
    monkeypatch.setattr(sys, "_grille_test_mark", True, raising=False)
    monkeypatch.chdir(tmp_path)
    alone: list[tuple[int, bool, str]] = []
    _run_forked(alone)
    assert [n for n, _, _ in alone] == list(range(40))
    assert all(forked for _, forked, _ in alone)  # one thread: forked, as grille's commands do
    start_worker_server()
    server = forkserver._forkserver._forkserver_pid
    assert server is not None
    threaded: list[tuple[int, bool, str]] = []
    worker = threading.Thread(target=_run_forked, args=(threaded,))
    worker.start()
    worker.join(120)
    assert [n for n, _, _ in threaded] == list(range(40))
    assert not any(forked for _, forked, _ in threaded)
    assert {folder for _, _, folder in threaded} == {str(tmp_path)}
    assert forkserver._forkserver._forkserver_pid == server  # the same server, started once


_KILLED_PARENT = """
import os, sys, threading, time
from pipeline.parallel import map_batches, start_worker_server

def work(chunk):
    print(os.getpid(), flush=True)
    time.sleep(600)
    return list(chunk)

def run():
    for _ in map_batches(work, range(4), jobs=2, parallel=True, chunk_size=1):
        pass

if __name__ == "__main__":
    start_worker_server()
    threading.Thread(target=run, daemon=True).start()  # as a job of `grille ui`
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork server and /proc: Linux")
def test_map_batches__process_running_threads_killed__its_workers_end_too(tmp_path: Path) -> None:
    """`grille ui` killed (SIGKILL) while a job's workers run: the fork server sees its
    pipe close and ends, and the workers, tied to it, end with it."""
    script = tmp_path / "parent.py"
    script.write_text(_KILLED_PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert parent.stdout is not None
        workers = {int(parent.stdout.readline()) for _ in range(2)}
        assert all(_alive(pid) for pid in workers) and parent.pid not in workers
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)

"""Soak test: the demo season, killed with SIGKILL at a random moment, N times.

Not collected by pytest (the file name does not start with `test_`). Run it from the
project folder:

    .venv/bin/python tests/soak/kill9.py            # 220 runs
    .venv/bin/python tests/soak/kill9.py --runs 30 --seed 7

Each run makes a fresh demo campaign with `grille demo`, kills that process with SIGKILL
at a random moment of the season (drawn over the duration of an uninterrupted demo,
measured first, from its first step; one run in ten is killed while it starts), runs
`grille demo` again to finish the season, then checks what must hold whatever the moment
of the kill:

- the second run succeeds (exit 0) and the run lock is free;
- no return is lost: collecting the simulated replies again finds every one of them
  already collected (none is new, none is refused as unknown), and each recorded return's
  stored file is on disk with its recorded SHA-256;
- every latest workbook recorded in the database is on disk with its SHA-256;
- no workbook was sent twice (at most one « envoi » per workbook);
- `PRAGMA integrity_check` is ok, and every backup copy is sound (at most 5 are kept);
- no temp file or folder (`.NAME.xxxxxxxx.tmp`) is left under output/.

A failing campaign folder is kept for inspection; the others are deleted. Exit code 1 if
any run broke an invariant.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from email import policy
from email.parser import BytesParser
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))

from pipeline import state  # noqa: E402

STEP = re.compile(r"^== (\d+)\. ")


def grille(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lock_is_free(output: Path) -> bool:
    import fcntl

    lock = output / state.LOCK_NAME
    if not lock.exists():
        return True
    with lock.open("a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return True


def replies_given(folder: Path) -> int:
    """How many workbooks the simulated tutors sent back (files, and attachments)."""
    count = 0
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.suffix == ".xlsx":
            count += 1
        elif path.suffix == ".eml":
            message = BytesParser(policy=policy.default).parse(path.open("rb"))
            count += sum(1 for _ in message.iter_attachments())
    return count


def check(campaign: Path) -> list[str]:
    """Every invariant broken by this campaign, in words (empty: all hold)."""
    broken: list[str] = []
    output = campaign / "output"
    if not lock_is_free(output):
        broken.append("run lock still held")
    leftovers = [p for p in output.rglob("*") if p.name.endswith(".tmp")]
    if leftovers:
        broken.append(f"temp leftovers: {[str(p.relative_to(campaign)) for p in leftovers]}")
    db = sqlite3.connect(output / "grille.sqlite")
    try:
        verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            broken.append(f"integrity_check: {verdict}")
        for stored, digest in db.execute("SELECT stored_file, sha256 FROM returns"):
            path = campaign / stored
            if not path.is_file() or sha256(path) != digest:
                broken.append(f"return file missing or changed: {stored}")
        for file, digest in db.execute(
            "SELECT w.file, w.sha256 FROM workbooks w "
            "WHERE w.id = (SELECT MAX(id) FROM workbooks WHERE student_id = w.student_id)"
        ):
            path = campaign / file
            if not path.is_file() or sha256(path) != digest:
                broken.append(f"workbook missing or changed: {file}")
        twice = db.execute(
            "SELECT workbook_id, COUNT(*) FROM sendings WHERE kind = 'envoi' "
            "GROUP BY workbook_id HAVING COUNT(*) > 1"
        ).fetchall()
        if twice:
            broken.append(f"workbooks sent twice: {twice}")
    finally:
        db.close()
    copies = state.backups(output / ".sauvegardes")
    if len(copies) > state.BACKUPS_KEPT:
        broken.append(f"{len(copies)} backups kept")
    for copy in copies:
        fault = state.check_backup(copy)
        if fault:
            broken.append(f"backup {copy.name}: {fault}")
    replies = campaign / "retours_simules"
    given = replies_given(replies)
    if given:
        again = subprocess.run(
            grille("--dir", str(campaign), "collect", str(replies)),
            capture_output=True, text=True, cwd=PROJECT, check=False,
        )  # fmt: skip
        last = again.stdout.strip().splitlines()[-1] if again.stdout.strip() else again.stderr
        expected = f"0 retour(s) enregistré(s), 0 fichier(s) refusé(s) ou illisible(s), {given} "
        if not last.startswith(expected + "déjà collecté(s)"):
            broken.append(f"returns not all collected ({given} given): {last}")
    return broken


def one_run(base: Path, index: int, delay: float, at_start: bool) -> tuple[str, list[str]]:
    """Kill a demo `delay` seconds after its first step began (`at_start`: after it was
    launched, while Python starts and the campaign is made), finish the season, check;
    (where it was killed, invariants broken)."""
    campaign = base / f"run{index:03d}"
    log = base / f"run{index:03d}.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            grille("demo", str(campaign)),
            cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # the step reached, to the last line
        )  # fmt: skip
        if not at_start:  # the season begins when the demo prints its first step
            while child.poll() is None and not log.stat().st_size:
                time.sleep(0.01)
        time.sleep(delay)
        finished = child.poll() is not None
        if not finished:
            child.send_signal(signal.SIGKILL)
        child.wait()
    steps = [m.group(1) for line in log.read_text("utf-8", "replace").splitlines()
             if (m := STEP.match(line))]  # fmt: skip
    moment = "after the end" if finished else f"step {steps[-1]}" if steps else "startup"
    rerun = subprocess.run(
        grille("demo", str(campaign)), capture_output=True, text=True, cwd=PROJECT, check=False
    )
    broken = []
    if rerun.returncode != 0:
        broken.append(f"rerun exit {rerun.returncode}: {rerun.stderr.strip()[-500:]}")
    if (campaign / "output" / "grille.sqlite").is_file():
        broken += check(campaign)
    else:
        broken.append("no database after the rerun")
    return moment, broken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=220)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=None, help="where the campaigns go")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    chance = random.Random(seed)
    base = args.dir or Path(tempfile.mkdtemp(prefix="grille-kill9-"))
    base.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    calibration = subprocess.Popen(
        grille("demo", str(base / "calibration")),
        cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert calibration.stdout is not None
    calibration.stdout.readline()
    first_step = time.monotonic() - start
    calibration.communicate()
    full = time.monotonic() - start - first_step
    if calibration.returncode != 0:
        print(f"the uninterrupted demo failed (exit {calibration.returncode})")
        return 1
    calibration_broken = check(base / "calibration")
    shutil.rmtree(base / "calibration")
    print(
        f"seed {seed}; an uninterrupted demo: {first_step:.1f} s to its first step, then "
        f"{full:.1f} s; {args.runs} runs in {base}"
    )
    if calibration_broken:
        print(f"the uninterrupted demo already breaks: {calibration_broken}")
        return 1

    moments: Counter[str] = Counter()
    failures: list[tuple[int, str, list[str]]] = []
    began = time.monotonic()
    for index in range(args.runs):
        at_start = chance.random() < 0.1  # while starting: Python, then the campaign's init
        delay = chance.uniform(0.0, first_step if at_start else full)
        moment, broken = one_run(base, index, delay, at_start)
        moments[moment] += 1
        if broken:
            failures.append((index, moment, broken))
            print(f"run {index}: killed +{delay:.2f} s ({moment}): BROKEN {broken}", flush=True)
        else:
            shutil.rmtree(base / f"run{index:03d}", ignore_errors=True)
            (base / f"run{index:03d}.log").unlink(missing_ok=True)
            print(f"run {index}: killed +{delay:.2f} s ({moment}): ok", flush=True)
    elapsed = time.monotonic() - began
    print(
        f"\n{args.runs} runs in {elapsed:.0f} s, {len(failures)} broke an invariant; "
        "killed during: " + ", ".join(f"{k} ×{n}" for k, n in sorted(moments.items()))
    )
    if not failures:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"failing campaigns kept in {base}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of roster reading (not a test): python benchmarks/bench_roster.py [N ...]

For each N (default 10,000 and 50,000 students), writes a .xlsx roster (every column
filled, as a teacher's export would be) and the same roster as CSV, then reads each one
with `read_roster` and prints the wall time and the peak memory Python allocated while
reading (tracemalloc), next to the size of the file.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import date
from pathlib import Path

from openpyxl import Workbook

from pipeline.roster import ROSTER_COLUMNS, read_roster

HEADER = [c.header for c in ROSTER_COLUMNS]


def rows(count: int) -> list[list[object]]:
    """`count` distinct, valid roster lines with every column filled."""
    return [
        [
            f"NOM{n:06d}",
            f"Prénom{n % 997}",
            f"BTS MUC {1 + n % 40}",
            f"Entreprise {n % 3000}",
            f"Tuteur {n % 3000}",
            f"tuteur{n % 3000}@entreprise{n % 50}.example",
            date(2027, 1, 4),
            date(2027, 2, 26),
            f"ID{n:06d}",
            f"eleve{n}@lycee.example",
            f"01 99 {n % 100:02d} {n % 97:02d} 00",
            f"M. Référent {n % 60}",
        ]
        for n in range(count)
    ]


def write_xlsx(path: Path, lines: list[list[object]]) -> None:
    """Written like Excel writes it: with the sheet's dimension, which openpyxl reads first
    (without it, openpyxl parses the sheet once more just to find its size)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Stagiaires"
    sheet.append(HEADER)
    for values in lines:
        sheet.append(values)
    workbook.save(path)


def write_csv(path: Path, lines: list[list[object]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
        writer.writerow(HEADER)
        for values in lines:
            writer.writerow([v.strftime("%d/%m/%Y") if isinstance(v, date) else v for v in values])


def measure(path: Path, count: int) -> None:
    """Time one read, then read again under tracemalloc (which slows Python down)."""
    start = time.perf_counter()
    result = read_roster(path)
    elapsed = time.perf_counter() - start
    assert len(result.students) == count and result.problems == [], result.problems[:3]
    del result
    tracemalloc.start()
    read_roster(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = path.stat().st_size / 2**20
    print(
        f"{path.suffix[1:]:4} {count:>7} stagiaires ({size:5.1f} Mo) : {elapsed:6.2f} s, "
        f"mémoire maximale {peak / 2**20:6.1f} Mo ({peak / count / 1024:.2f} Ko par stagiaire)"
    )


def main() -> None:
    counts = [int(arg) for arg in sys.argv[1:]] or [10_000, 50_000]
    writers: dict[str, Callable[[Path, list[list[object]]], None]] = {
        "xlsx": write_xlsx,
        "csv": write_csv,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            lines = rows(count)
            for suffix, write in writers.items():
                path = Path(tmp) / f"liste_{count}.{suffix}"
                write(path, lines)
                measure(path, count)
            del lines


if __name__ == "__main__":
    main()

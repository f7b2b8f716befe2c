"""Benchmark of `grille generate` (not a test): python benchmarks/bench_generate.py [N]

Prints, for N students (default 1,000):
- the floor: copying the finished template's zip bytes and adding one small part;
- stamping one workbook (the per-student cost of our method) and its ratio to the floor;
- the whole `grille generate` command (roster reading, writing every file, database,
  tracking workbook), wall time and per workbook, with all cores;
- peak memory (RSS) of this process and of its children.
"""

from __future__ import annotations

import csv
import io
import resource
import sys
import tempfile
import time
import zipfile
from datetime import date
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.grid import load_grid
from pipeline.roster import Student
from pipeline.workbook import (
    TemplateOptions,
    WorkbookStamper,
    build_template,
    identity_values,
    template_bytes,
)

HEADER = ["Nom", "Prénom", "Classe", "Entreprise", "Tuteur", "Email tuteur", "Début", "Fin"]


def floor_cost(template: bytes, repeat: int) -> float:
    """Seconds to copy the template zip and append one small part (the lower bound)."""
    part = b"<x>" + b"identity " * 40 + b"</x>"
    start = time.perf_counter()
    for i in range(repeat):
        buffer = io.BytesIO(template)
        buffer.seek(0, io.SEEK_END)
        with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"custom{i}.xml", part)
        buffer.getvalue()
    return (time.perf_counter() - start) / repeat


def stamp_cost(stamper: WorkbookStamper, values: dict[str, str], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        stamper.stamp(values)
    return (time.perf_counter() - start) / repeat


def write_roster(path: Path, count: int) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow(HEADER)
    for i in range(count):
        writer.writerow(
            [
                f"Élève{i:04d}",
                f"Prénom{i % 97}",
                f"BTS MUC {1 + i % 4}",
                f"Entreprise {i % 300}",
                f"Tuteur {i % 300}",
                f"tuteur{i % 300}@entreprise.example",
                "05/01/2026",
                "27/02/2026",
            ]
        )
    path.write_text(buffer.getvalue(), encoding="utf-8")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    grid = load_grid()
    template = template_bytes(build_template(grid, TemplateOptions(campaign_id="bench")))
    stamper = WorkbookStamper(template)
    student = Student(
        "E0001", "Dupont", "Jean", "BTS MUC 1", "Agence", "Tuteur", "t@x.example",
        date(2026, 1, 5), date(2026, 2, 27),
    )  # fmt: skip
    values = identity_values(student, grid, "bench", b"k" * 32)
    floor = floor_cost(template, 2000)
    stamp = stamp_cost(stamper, values, 2000)
    print(f"plancher (copie du zip + 1 partie)  : {floor * 1000:6.3f} ms")
    print(
        f"estampillage d'un classeur          : {stamp * 1000:6.3f} ms  ({stamp / floor:.1f}× le plancher)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "campagne"
        runner = CliRunner()
        assert runner.invoke(cli, ["init", str(root)]).exit_code == 0
        roster = root / "liste.csv"
        write_roster(roster, count)
        start = time.perf_counter()
        result = runner.invoke(cli, ["--dir", str(root), "generate", "--roster", str(roster)])
        elapsed = time.perf_counter() - start
        assert result.exit_code == 0, result.output
        files = len(list((root / "output" / "classeurs").rglob("*.xlsx")))
        assert files == count, files
        print(
            f"grille generate, {count} stagiaires   : {elapsed:6.2f} s  "
            f"({elapsed / count * 1000:.2f} ms par classeur, tout compris)"
        )
        start = time.perf_counter()
        result = runner.invoke(cli, ["--dir", str(root), "generate", "--roster", str(roster)])
        print(f"relance sans changement             : {time.perf_counter() - start:6.2f} s")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"mémoire maximale                    : {own:.0f} Mo (processus), {children:.0f} Mo (workers)"
    )


if __name__ == "__main__":
    main()

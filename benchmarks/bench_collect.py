"""Benchmark of `grille collect` (not a test): python benchmarks/bench_collect.py [N]

Makes a campaign of N students (default 1,000), fills every workbook as a tutor would
(at the package level, to keep the set-up fast), then prints:
- the per-return cost of recognising and validating one file (safety checks included),
  single process, and its ratio to a plain python-calamine read of the same file;
- the whole `grille collect` command on the N files (gathering, storing the originals,
  both cores, database, tracking workbook): wall time and per return;
- peak memory of the process and of its workers.
"""

from __future__ import annotations

import csv
import io
import re
import resource
import sys
import tempfile
import time
import zipfile
from datetime import date
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.collect import _context_for, process_file
from pipeline.grid import load_grid
from pipeline.settings import Workspace
from pipeline.workbook import plan_layout

HEADER = ["Nom", "Prénom", "Classe", "Entreprise", "Tuteur", "Email tuteur", "Début", "Fin"]


def write_roster(path: Path, count: int) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow(HEADER)
    for i in range(count):
        writer.writerow(
            [
                f"Élève{i:04d}", f"Prénom{i % 97}", f"BTS MUC {1 + i % 4}", f"Entreprise {i % 300}",
                f"Tuteur {i % 300}", f"tuteur{i % 300}@entreprise.example", "05/01/2026", "27/02/2026",
            ]
        )  # fmt: skip
    path.write_text(buffer.getvalue(), encoding="utf-8")


def fill_package(
    data: bytes, sheet_paths: dict[str, str], values: dict[tuple[str, str], str]
) -> bytes:
    """Type `values` into the empty input cells, editing the sheet XML in the zip."""
    by_part: dict[str, dict[str, str]] = {}
    for (sheet, cell), value in values.items():
        by_part.setdefault(sheet_paths[sheet], {})[cell] = value
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            part = source.read(info)
            for cell, value in by_part.get(info.filename, {}).items():
                part = re.sub(
                    rf'<c r="{cell}"( s="\d+")?( t="\w+")?\s*(/>|>.*?</c>)'.encode(),
                    rf'<c r="{cell}"\1 t="inlineStr"><is><t>{value}</t></is></c>'.encode(),
                    part,
                    count=1,
                    flags=re.S,
                )
            target.writestr(info, part)
    return out.getvalue()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    grid = load_grid()
    layout = plan_layout(grid)
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "campagne"
        assert runner.invoke(cli, ["init", str(root)]).exit_code == 0
        roster = root / "liste.csv"
        write_roster(roster, count)
        result = runner.invoke(cli, ["--dir", str(root), "generate", "--roster", str(roster)])
        assert result.exit_code == 0, result.output
        workbooks = sorted((root / "output" / "classeurs").rglob("*.xlsx"))
        sheet_paths = {
            name: f"xl/worksheets/sheet{i}.xml"
            for i, name in enumerate(
                ["Instructions", *(s.sheet for s in grid.sections),
                 grid.global_evaluation.sheet, grid.closing.sheet], start=1,
            )
        }  # fmt: skip
        values: dict[tuple[str, str], str] = {}
        for i, ref in enumerate(layout.criteria.values()):
            values[(ref.sheet, ref.cell)] = grid.scale_codes[i % 4]
        for dim_id, ref in layout.dimensions.items():
            values[(ref.sheet, ref.cell)] = str(
                next(d for d in grid.global_evaluation.dimensions if d.id == dim_id).values[-1]
            )
        values[(layout.date.sheet, layout.date.cell)] = "20/02/2026"
        values[(layout.signature.sheet, layout.signature.cell)] = "Tuteur"
        inbox = Path(tmp) / "retours"
        inbox.mkdir()
        for i, path in enumerate(workbooks):
            values[(layout.appreciation.sheet, layout.appreciation.cell)] = (
                f"Très bon stage n° {i}."
            )
            (inbox / f"retour_{i:04d}.xlsx").write_bytes(
                fill_package(path.read_bytes(), sheet_paths, values)
            )
        returns = sorted(inbox.iterdir())
        payloads = [p.read_bytes() for p in returns[:200]]

        from pipeline.campaign import Campaign

        campaign = Campaign.open(Workspace(root))
        context = _context_for(campaign, date.today())
        campaign.close()
        start = time.perf_counter()
        outcomes = [
            process_file(context, str(i), "r.xlsx", data) for i, data in enumerate(payloads)
        ]
        ours = (time.perf_counter() - start) / len(payloads)
        assert all(o.status == "complete" for o in outcomes), outcomes[0].problems[:3]
        from python_calamine import CalamineWorkbook

        start = time.perf_counter()
        for data in payloads:
            book = CalamineWorkbook.from_filelike(io.BytesIO(data))
            for name in book.sheet_names:
                book.get_sheet_by_name(name).to_python()
        calamine = (time.perf_counter() - start) / len(payloads)
        print(f"lecture simple python-calamine      : {calamine * 1000:6.2f} ms par fichier")
        print(
            f"reconnaissance + contrôles + validation : {ours * 1000:6.2f} ms par retour "
            f"({ours / calamine:.1f}× calamine)"
        )
        start = time.perf_counter()
        result = runner.invoke(cli, ["--dir", str(root), "collect", str(inbox)])
        elapsed = time.perf_counter() - start
        assert result.exit_code == 0, result.output[-2000:]
        print(
            f"grille collect, {count} retours      : {elapsed:6.2f} s "
            f"({elapsed / count * 1000:.2f} ms par retour, tout compris)"
        )
        start = time.perf_counter()
        runner.invoke(cli, ["--dir", str(root), "collect", str(inbox)])
        print(f"relance (déjà collectés)            : {time.perf_counter() - start:6.2f} s")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"mémoire maximale                    : {own:.0f} Mo (processus), {children:.0f} Mo (workers)"
    )


if __name__ == "__main__":
    main()

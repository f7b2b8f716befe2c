"""Benchmark of .ods returns converted by LibreOffice (not a test):
python benchmarks/bench_convert.py [N]

Makes a campaign of N students (default 8), fills every workbook as a tutor would, saves
them as .ods with LibreOffice (as a tutor using LibreOffice Calc would), then times the
gathering of the N returns, which converts each back to .xlsx: one conversion at a time,
then on every core (two LibreOffice instances, each with its own profile).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_collect import fill_package, write_roster
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.grid import load_grid
from pipeline.office import find_soffice
from pipeline.parallel import default_jobs
from pipeline.returns import Candidate, gather
from pipeline.workbook import plan_layout


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    soffice = find_soffice()
    if soffice is None:
        sys.exit("LibreOffice (soffice) est introuvable : rien à mesurer.")
    grid = load_grid()
    layout = plan_layout(grid)
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "campagne"
        assert runner.invoke(cli, ["init", str(root)]).exit_code == 0
        write_roster(root / "liste.csv", count)
        result = runner.invoke(
            cli, ["--dir", str(root), "generate", "--roster", str(root / "liste.csv")]
        )
        assert result.exit_code == 0, result.output
        sheet_paths = {
            name: f"xl/worksheets/sheet{i}.xml"
            for i, name in enumerate(
                ["Instructions", *(s.sheet for s in grid.sections),
                 grid.global_evaluation.sheet, grid.closing.sheet], start=1,
            )
        }  # fmt: skip
        values = {
            (ref.sheet, ref.cell): grid.scale_codes[i % 4]
            for i, ref in enumerate(layout.criteria.values())
        }
        filled = Path(tmp) / "remplis"
        filled.mkdir()
        for i, path in enumerate(sorted((root / "output" / "classeurs").rglob("*.xlsx"))):
            (filled / f"retour_{i:04d}.xlsx").write_bytes(
                fill_package(path.read_bytes(), sheet_paths, values)
            )
        returns = Path(tmp) / "retours"
        subprocess.run(
            [soffice, "--headless", "--norestore",
             f"-env:UserInstallation={(Path(tmp) / 'profil').as_uri()}",
             "--convert-to", "ods", "--outdir", str(returns), *map(str, sorted(filled.iterdir()))],
            check=True, capture_output=True, env={"HOME": tmp, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        timings = {}
        for jobs in sorted({1, default_jobs()}):
            start = time.perf_counter()
            items = list(gather([returns], jobs=jobs))
            timings[jobs] = time.perf_counter() - start
            converted = sum(1 for item in items if isinstance(item, Candidate))
            assert converted == count, [item for item in items if not isinstance(item, Candidate)]
            print(
                f"{count} retours .ods convertis, {jobs} à la fois : {timings[jobs]:6.1f} s "
                f"({timings[jobs] / count:.2f} s par retour)"
            )
        if len(timings) > 1:
            print(f"gain du parallèle : ×{timings[1] / timings[max(timings)]:.2f}")


if __name__ == "__main__":
    main()

"""Shared test helpers: write real spreadsheet and CSV files from small inline tables."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook


def write_xlsx(path: Path, rows: Sequence[Sequence[Any]], sheet: str = "Feuil1") -> Path:
    """Write `rows` (row 1 first; None leaves a cell empty) to a real .xlsx at `path`."""
    workbook = Workbook()
    worksheet = workbook.active
    worksheet.title = sheet
    for values in rows:
        worksheet.append(list(values))
    workbook.save(path)
    return path


def write_csv(
    path: Path,
    rows: Sequence[Sequence[Any]],
    encoding: str = "utf-8-sig",
    delimiter: str = ";",
) -> Path:
    """Write `rows` as CSV at `path`, Excel style (CRLF line ends, minimal quoting)."""
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\r\n")
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    return path


@pytest.fixture(name="write_xlsx")
def write_xlsx_fixture() -> Callable[..., Path]:
    """The `write_xlsx(path, rows, sheet="Feuil1")` helper, as a fixture."""
    return write_xlsx


@pytest.fixture(name="write_csv")
def write_csv_fixture() -> Callable[..., Path]:
    """The `write_csv(path, rows, encoding="utf-8-sig", delimiter=";")` helper, as a fixture."""
    return write_csv

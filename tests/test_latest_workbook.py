"""Each student's latest workbook: the `latest_workbooks` view, the one place that says it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import state
from tests.test_mail import add_student, add_workbook


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = state.connect(tmp_path / "grille.sqlite")
    yield connection
    connection.close()


def test_latest_workbooks__the_newest_of_each_student__older_ones_left_out(
    db: sqlite3.Connection, tmp_path: Path
) -> None:
    first = add_student(db, tmp_path, "E1", ("Abadie", "Chloé"), ("T", "t@x.example"))
    only = add_student(db, tmp_path, "E2", ("Bernard", "Yanis"), ("T", "t@x.example"))
    newer = add_workbook(db, tmp_path, "E1", "ABADIE_Chloe_E1_v2")

    latest = state.latest_workbooks(db)

    assert {student: row["id"] for student, row in latest.items()} == {"E1": newer, "E2": only}
    assert first not in {row["id"] for row in latest.values()}
    assert [(r["student_id"], r["workbook_id"]) for r in state.students_with_workbooks(db)] == [
        ("E1", newer),
        ("E2", only),
    ]


def test_latest_workbook_view__added_to_a_campaign_made_before_it(tmp_path: Path) -> None:
    path = tmp_path / "grille.sqlite"
    db = state.connect(path)
    add_student(db, tmp_path, "E1", ("Abadie", "Chloé"), ("T", "t@x.example"))
    db.execute("DROP VIEW latest_workbooks")  # the database as grille left it before 013
    db.execute("DELETE FROM schema_migrations WHERE name = '013_latest_workbook'")
    db.close()

    again = state.connect(path)
    try:
        assert list(state.latest_workbooks(again)) == ["E1"]
    finally:
        again.close()

"""Several versions of one student's workbook: the one that counts is the most recent.

A tutor sends a first version, then a corrected one; a browser saves the second as
`X (1).xlsx` beside `X.xlsx`; both come in one folder, one archive, one mailbox or in two
`collect` runs. The version that counts is the most recent by the workbook's own save
date (`docProps/core.xml`), then the e-mail's Date, then the file's modification time;
never the order of names or arguments. Every version stays in the history, and the
teacher can choose another one (`grille collect --use`).

Workbooks are made by grille's generate step, filled with openpyxl and given a save date
as every client writes it (`tests.clients.saved_at`).
"""

from __future__ import annotations

import json
import mailbox
import os
import sqlite3
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline import state
from tests import clients
from tests.tutors import (
    complete_answers,
    fill,
    make_campaign,
    run,
    status_json,
    without_hidden_identity,
    workbook_of,
)

ROWS = [
    ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Garcia", "Léa", "BTS 2B", "Mutuelle H", "Bruno Caron", "bc@mutuelle.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip
EARLY = datetime(2026, 11, 10, 8, 30, tzinfo=UTC)  # 10/11/2026 09:30 in Paris
LATE = datetime(2026, 11, 12, 13, 5, tzinfo=UTC)  # 12/11/2026 14:05 in Paris


@pytest.fixture(autouse=True)
def paris_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dates are shown in the teacher's local time: here Paris, whatever the machine."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return make_campaign(tmp_path / "campagne", ROWS, write_csv)


def _answers(**changes: Any) -> dict[str, Any]:
    answers = complete_answers()
    answers.update(signature="Bruno Caron", date=date(2026, 2, 20))
    answers.update(changes)
    return answers


def _version(campaign: Path, target: Path, saved: datetime | None, **changes: Any) -> Path:
    """Garcia's workbook filled with `changes`, saved by the tutor at `saved`."""
    fill(workbook_of(campaign, "Garcia"), target, _answers(**changes))
    target.write_bytes(clients.saved_at(target.read_bytes(), saved))
    return target


def _first_and_corrected(campaign: Path, folder: Path, first: str, corrected: str) -> None:
    """The first version (no appreciation: incomplete) and the corrected one (complete)."""
    _version(campaign, folder / first, EARLY, appreciation=None)
    _version(campaign, folder / corrected, LATE)


def _returns(campaign: Path) -> dict[str, tuple[int, str]]:
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        rows = db.execute("SELECT file_name, id, status FROM returns ORDER BY id").fetchall()
    return {name: (number, status) for name, number, status in rows}


def _line(output: str, name: str) -> str:
    [line] = [line for line in output.splitlines() if name in line]
    return line


def test_two_versions_in_a_folder__the_most_recently_saved_counts_whatever_the_names(
    campaign: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "retours"
    # names sorted opposite to the save dates: the corrected one comes first
    _first_and_corrected(campaign, folder, first="b_premier_envoi.xlsx", corrected="a_corrige.xlsx")
    result = run(campaign, "collect", str(folder))
    assert result.exit_code == 0, result.output

    assert status_json(campaign)["Garcia"]["status"] == "complete"
    returns = _returns(campaign)
    assert set(returns) == {"a_corrige.xlsx", "b_premier_envoi.xlsx"}  # both kept
    assert _line(result.output, "b_premier_envoi.xlsx").endswith(
        f"plus ancien que le retour n° {returns['a_corrige.xlsx'][0]} déjà reçu (enregistré "
        "le 12/11/2026 à 14:05) : ignoré, gardé dans l'historique."
    )


def test_the_same_file_name_twice__browser_copy_x_1__the_newer_one_counts(
    campaign: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "Téléchargements"
    _first_and_corrected(campaign, folder, first="GARCIA_Lea.xlsx", corrected="GARCIA_Lea (1).xlsx")
    result = run(campaign, "collect", str(folder))
    assert result.exit_code == 0, result.output
    assert status_json(campaign)["Garcia"]["status"] == "complete"
    assert "GARCIA_Lea (1).xlsx" in status_json(campaign)["Garcia"]["origin"]
    older = _line(result.output, "GARCIA_Lea.xlsx")  # recorded, kept, not counted
    assert older.startswith("  GARCIA Léa (BTS 2B) — incomplet — ")
    assert older.endswith(": ignoré, gardé dans l'historique.")


def test_two_runs__an_older_version_collected_later_is_kept_but_does_not_count(
    campaign: Path, tmp_path: Path
) -> None:
    _first_and_corrected(campaign, tmp_path, first="v1.xlsx", corrected="v2.xlsx")
    first = run(campaign, "collect", str(tmp_path / "v2.xlsx"))
    assert first.exit_code == 0, first.output
    second = run(campaign, "collect", str(tmp_path / "v1.xlsx"))
    assert second.exit_code == 0, second.output
    assert status_json(campaign)["Garcia"]["status"] == "complete"
    number = _returns(campaign)["v2.xlsx"][0]
    assert (
        f"plus ancien que le retour n° {number} déjà reçu (enregistré le 12/11/2026 à 14:05)"
        in (second.output)
    )
    assert [status for _, status in _returns(campaign).values()] == ["complete", "incomplete"]


def test_two_runs__a_newer_version__says_which_return_it_replaces(
    campaign: Path, tmp_path: Path
) -> None:
    _first_and_corrected(campaign, tmp_path, first="v1.xlsx", corrected="v2.xlsx")
    assert run(campaign, "collect", str(tmp_path / "v1.xlsx")).exit_code == 0
    assert status_json(campaign)["Garcia"]["status"] == "incomplete"
    result = run(campaign, "collect", str(tmp_path / "v2.xlsx"))
    assert result.exit_code == 0, result.output
    number = _returns(campaign)["v1.xlsx"][0]
    assert _line(result.output, "v2.xlsx").endswith(
        f"remplace le retour n° {number} (enregistré le 10/11/2026 à 09:30)."
    )
    assert status_json(campaign)["Garcia"]["status"] == "complete"


def test_in_one_zip__member_order_does_not_decide(campaign: Path, tmp_path: Path) -> None:
    _first_and_corrected(campaign, tmp_path, first="v1.xlsx", corrected="v2.xlsx")
    archive = tmp_path / "retours.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # by name and in the archive: the old one last
        zf.write(tmp_path / "v2.xlsx", "garcia/a_v2.xlsx")
        zf.write(tmp_path / "v1.xlsx", "garcia/b_v1.xlsx")
    assert run(campaign, "collect", str(archive)).exit_code == 0
    assert status_json(campaign)["Garcia"]["status"] == "complete"


def _message(attachment: Path, sent: datetime) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Bruno Caron <bc@mutuelle.example>"
    message["To"] = "prof@lycee.example"
    message["Subject"] = "Re: évaluation de stage"
    message["Date"] = format_datetime(sent)
    message.set_content("Bonjour, voici la grille.")
    message.add_attachment(
        attachment.read_bytes(),
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename="GARCIA_Lea.xlsx",
    )
    return message


def test_in_one_mailbox__without_save_dates__the_latest_mail_counts(
    campaign: Path, tmp_path: Path
) -> None:
    """Two workbooks whose client wrote no save date: the e-mails' Date decides, not the
    order of the messages in the mailbox file."""
    first = _version(campaign, tmp_path / "v1.xlsx", None, appreciation=None)
    corrected = _version(campaign, tmp_path / "v2.xlsx", None)
    box = mailbox.mbox(tmp_path / "retours.mbox")
    box.add(_message(corrected, LATE))  # the newer message first in the file
    box.add(_message(first, EARLY))
    box.close()
    result = run(campaign, "collect", str(tmp_path / "retours.mbox"))
    assert result.exit_code == 0, result.output
    assert status_json(campaign)["Garcia"]["status"] == "complete"
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        [(number,)] = db.execute("SELECT id FROM returns WHERE origin LIKE '%message 1 ›%'")
    assert _line(result.output, "message 2").endswith(
        f"plus ancien que le retour n° {number} déjà reçu (envoyé le 12/11/2026 à 14:05) : "
        "ignoré, gardé dans l'historique."
    )


def test_without_save_date_nor_mail__the_file_modification_time_decides(
    campaign: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "retours"
    first = _version(campaign, folder / "b.xlsx", None, appreciation=None)
    corrected = _version(campaign, folder / "a.xlsx", None)
    os.utime(first, (EARLY.timestamp(), EARLY.timestamp()))
    os.utime(corrected, (LATE.timestamp(), LATE.timestamp()))
    assert run(campaign, "collect", str(folder)).exit_code == 0
    assert status_json(campaign)["Garcia"]["status"] == "complete"


def test_use__the_teacher_chooses_another_version__by_number_or_file(
    campaign: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "retours"
    _first_and_corrected(campaign, folder, first="v1.xlsx", corrected="v2.xlsx")
    assert run(campaign, "collect", str(folder)).exit_code == 0
    returns = _returns(campaign)
    old, new = returns["v1.xlsx"][0], returns["v2.xlsx"][0]

    chosen = run(campaign, "collect", "--use", str(old))
    assert chosen.exit_code == 0, chosen.output
    assert chosen.output.splitlines()[0] == (
        f"Retour n° {old} (« v1.xlsx », enregistré le 10/11/2026 à 09:30) retenu pour GARCIA Léa "
        f"(BTS 2B) ; il remplace le n° {new} (« v2.xlsx »)."
    )
    garcia = status_json(campaign)["Garcia"]
    assert garcia["status"] == "incomplete"
    assert [(v["return_id"], v["counts"], v["chosen"]) for v in garcia["versions"]] == [
        (new, False, False),
        (old, True, True),
    ]
    table = run(campaign, "status").output
    assert f"version retenue : n° {old} (choisie), sur 2 reçues" in _line(table, "GARCIA")

    # a new version does not undo the teacher's choice: it is kept, and she is told
    _version(campaign, tmp_path / "v3.xlsx", datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    third = run(campaign, "collect", str(tmp_path / "v3.xlsx"))
    assert third.exit_code == 0, third.output
    assert f"le retour n° {old} que vous avez retenu compte toujours" in third.output
    assert status_json(campaign)["Garcia"]["status"] == "incomplete"

    by_file = run(campaign, "collect", "--use", str(tmp_path / "v3.xlsx"))
    assert by_file.exit_code == 0, by_file.output
    assert status_json(campaign)["Garcia"]["status"] == "complete"
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        choices = db.execute("SELECT return_id FROM return_choices ORDER BY id").fetchall()
    assert [c[0] for c in choices] == [old, _returns(campaign)["v3.xlsx"][0]]  # history kept


def test_use__by_file_name_alone_and_bad_choices__french_message_exit_2(
    campaign: Path, tmp_path: Path, write_xlsx: Callable[..., Path]
) -> None:
    folder = tmp_path / "retours"
    _first_and_corrected(campaign, folder, first="v1.xlsx", corrected="v2.xlsx")
    other = write_xlsx(folder / "budget.xlsx", [["Poste", "Montant"]])
    assert run(campaign, "collect", str(folder)).exit_code == 1  # budget.xlsx refused
    (folder / "v1.xlsx").unlink()  # the file is gone: its name still designates it
    by_name = run(campaign, "collect", "--use", "v1.xlsx")
    assert by_name.exit_code == 0, by_name.output
    assert status_json(campaign)["Garcia"]["status"] == "incomplete"

    unknown = run(campaign, "collect", "--use", "999")
    assert unknown.exit_code == 2
    assert "aucun retour n° 999" in unknown.output
    refused = run(campaign, "collect", "--use", str(other))
    assert refused.exit_code == 2
    assert "a été refusé à la collecte" in refused.output
    never = run(campaign, "collect", "--use", "jamais-vu.xlsx")
    assert never.exit_code == 2
    assert "aucun retour collecté ne s'appelle « jamais-vu.xlsx »" in never.output
    mixed = run(campaign, "collect", "--use", "1", str(folder))
    assert mixed.exit_code == 2
    assert "--use s'emploie seul" in mixed.output


def test_a_signed_return_still_beats_a_newer_unconfirmed_copy_and_a_choice_beats_all(
    campaign: Path, tmp_path: Path
) -> None:
    """The rules of `grille confirm` hold with versions: an unsigned return « à confirmer »
    never replaces a signed one, however recent; the teacher's explicit choice wins."""
    signed = _version(campaign, tmp_path / "signe.xlsx", EARLY, appreciation=None)
    assert run(campaign, "collect", str(signed)).exit_code == 0
    copy = tmp_path / "copie.xlsx"
    _version(campaign, copy, LATE)

    without_hidden_identity(copy)
    copy.write_bytes(clients.saved_at(copy.read_bytes(), LATE))
    result = run(campaign, "collect", str(copy))
    assert result.exit_code == 0, result.output
    assert status_json(campaign)["Garcia"]["status"] == "incomplete"  # the signed one
    number = _returns(campaign)["copie.xlsx"][0]
    assert run(campaign, "collect", "--use", str(number)).exit_code == 0
    garcia = status_json(campaign)["Garcia"]
    assert (garcia["status"], garcia["to_confirm"]) == ("complete", True)


def test_versions__listed_in_status_json_most_recent_first(campaign: Path, tmp_path: Path) -> None:
    folder = tmp_path / "retours"
    _first_and_corrected(campaign, folder, first="v1.xlsx", corrected="v2.xlsx")
    assert run(campaign, "collect", str(folder)).exit_code == 0
    versions = json.loads(run(campaign, "status", "--format", "json").output)["stagiaires"]
    garcia = next(s for s in versions if s["last_name"] == "Garcia")
    assert [
        (v["file_name"], v["version_date"], v["date_source"], v["counts"])
        for v in garcia["versions"]
    ] == [
        ("v2.xlsx", "12/11/2026 14:05", "saved", True),
        ("v1.xlsx", "10/11/2026 09:30", "saved", False),
    ]
    abadie = next(s for s in versions if s["last_name"] == "Abadie")
    assert abadie["versions"] == []


def test_migration__returns_collected_before_it_are_ordered_by_their_saved_workbooks(
    campaign: Path, tmp_path: Path
) -> None:
    """Returns recorded before migration 012 get their save date from the kept file."""
    _first_and_corrected(campaign, tmp_path, first="v1.xlsx", corrected="v2.xlsx")
    assert run(campaign, "collect", str(tmp_path / "v2.xlsx")).exit_code == 0
    assert run(campaign, "collect", str(tmp_path / "v1.xlsx")).exit_code == 0
    path = campaign / "output" / "grille.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE returns SET saved_at = NULL, mailed_at = NULL, file_time = NULL")
    db.execute("DELETE FROM schema_migrations WHERE name = '012_return_versions'")
    for view in ("counted_returns", "return_versions", "chosen_returns"):
        db.execute(f"DROP VIEW {view}")
    db.execute(
        "CREATE VIEW counted_returns AS SELECT t.student_id, t.return_id, t.standing, "
        "t.decided_by, t.decided_at FROM return_standing t WHERE t.return_id = (SELECT "
        "u.return_id FROM return_standing u WHERE u.student_id = t.student_id AND u.standing "
        "!= 'rejected' ORDER BY u.standing = 'pending', u.return_id DESC LIMIT 1)"
    )
    for table in ("return_choices", "refused_files"):
        db.execute(f"DROP TABLE {table}")
    for column in ("saved_at", "mailed_at", "file_time"):
        db.execute(f"ALTER TABLE returns DROP COLUMN {column}")
    db.close()

    opened = state.connect(path)
    try:
        garcia = next(
            row[0]
            for row in opened.execute("SELECT student_id FROM students")
            if row[0] == status_json(campaign)["Garcia"]["student_id"]
        )
        counted = state.counted_return(opened, garcia)
        assert counted is not None and counted.file_name == "v2.xlsx"
        saved = dict(opened.execute("SELECT file_name, saved_at FROM returns"))
        assert saved == {"v2.xlsx": "2026-11-12 13:05:00", "v1.xlsx": "2026-11-10 08:30:00"}
    finally:
        opened.close()

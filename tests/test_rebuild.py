"""`grille rebuild`: a lost database (and no backup) is rebuilt from the campaign's files.

The workbooks carry their signed identity, the returns are kept content-addressed, the
messages to the tutors are kept as .eml files with the workbooks attached, suivi.xlsx
holds what grille last knew, the reports carry grille's own marks: from these and the
roster, the database comes back so that nobody is mailed again, nothing is regenerated
and every return is already collected. Real files, real SQLite, real SMTP, real SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from docx import Document

from pipeline import state
from tests.test_send_remind import use_smtp
from tests.tutors import (
    ROSTER_HEADER,
    Server,
    complete_answers,
    fill,
    roster_rows,
    run,
    smtp_server,
    status_json,
    with_teacher_email,
    without_hidden_identity,
    workbook_of,
)

ROWS = [
    *roster_rows("Abadie", "Bernard"),
    ["Chevallier", "Inès", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    *roster_rows("Da Silva"),
    ["Étienne", "Lou", "BTS 2B", "Mutuelle Bleue", "Bruno Caron", "bc@mutuelle.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip
PROJECT = Path(__file__).resolve().parents[1]
TIMES = ("generated_at", "sent_at", "reminded_at", "returned_at")
NOTES = "Notes du professeur"


@pytest.fixture(name="smtp_server")
def smtp_server_fixture() -> Iterator[tuple[Server, int]]:
    """A real SMTP server on the loopback that keeps what it accepts."""
    with smtp_server() as running:
        yield running


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    """Five students, two classes, four tutors; the teacher's address set before generating."""
    root = tmp_path / "campagne"
    assert run(root, "init", "--school", "Lycée Test").exit_code == 0
    with_teacher_email(root)
    roster = write_csv(root / "liste.csv", [ROSTER_HEADER, *ROWS])
    made = run(root, "generate", "--roster", str(roster), "--jobs", "1")
    assert made.exit_code == 0, made.output
    return root


def _answers(tutor: str, **changes: Any) -> dict[str, Any]:
    answers = complete_answers()
    answers.update(signature=tutor, date=date(2026, 2, 20), **changes)
    return answers


def _stripped(source: Path, target: Path, answers: dict[str, Any]) -> Path:
    """A filled copy of `source` whose hidden identity is gone (copied into a new file)."""
    fill(source, target, answers)
    without_hidden_identity(target)
    return target


def _season(root: Path, inbox: Path, *, pause: float = 0) -> dict[str, str]:
    """Send to the outbox, mark the Horizon tutor's message sent (after `pause` seconds),
    collect three returns (complete, incomplete, one « à confirmer »), write the reports;
    the student ids."""
    ids = {name: s["student_id"] for name, s in status_json(root).items()}
    assert run(root, "send").exit_code == 0
    time.sleep(pause)
    marked = run(
        root, "send", "--mark-sent", "--student", ids["Abadie"], "--student", ids["Chevallier"]
    )
    assert marked.exit_code == 0, marked.output
    fill(workbook_of(root, "Abadie"), inbox / "abadie.xlsx", _answers("Sophie Garnier"))
    fill(
        workbook_of(root, "Bernard"),
        inbox / "bernard.xlsx",
        _answers("Marc Dubreuil", appreciation=None),
    )
    _stripped(workbook_of(root, "Étienne"), inbox / "copie.xlsx", _answers("Bruno Caron"))
    collected = run(root, "collect", str(inbox))
    assert collected.exit_code == 0, collected.output
    assert run(root, "report").exit_code == 0
    return ids


def _lose_database(root: Path) -> None:
    """The database and every backup of it, gone."""
    for path in (root / "output").glob("grille.sqlite*"):
        path.unlink()
    shutil.rmtree(root / "output" / ".sauvegardes", ignore_errors=True)


def _type_note(root: Path, last_name: str, text: str) -> None:
    """The teacher types a note in suivi.xlsx, in Excel."""
    path = root / "output" / "suivi.xlsx"
    wb = openpyxl.load_workbook(path)
    ws = wb.active
    header = [cell.value for cell in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if row[header.index("Nom")].value == last_name.upper():
            row[header.index(NOTES)].value = text
    wb.save(path)


def _same_statuses(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> None:
    """Every field the same, but where a return came from (lost) and the times, which
    come back from the files' times: within a few seconds."""
    assert after.keys() == before.keys()
    for name, was in before.items():
        now = after[name]
        for key in was.keys() - {"origin", "versions", *TIMES}:
            assert now[key] == was[key], (name, key)
        lost = {"file_name", "origin", "collected_at"}  # where each version came from: lost
        assert [
            {k: v for k, v in version.items() if k not in lost} for version in now["versions"]
        ] == [{k: v for k, v in version.items() if k not in lost} for version in was["versions"]], (
            name,
            "versions",
        )
        for key in TIMES:
            assert bool(now[key]) == bool(was[key]), (name, key)
            if was[key]:
                gap = datetime.fromisoformat(now[key]) - datetime.fromisoformat(was[key])
                assert abs(gap) <= timedelta(seconds=3), (name, key, was[key], now[key])


def _outbox(root: Path) -> dict[str, bytes]:
    folder = root / "output" / "envoi"
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*.eml"))}


# ------------------------------------------------------------------ the offer


def test_database_and_backups_gone__refused_with_the_rebuild_offered(campaign: Path) -> None:
    assert run(campaign, "send").exit_code == 0
    _lose_database(campaign)

    result = run(campaign, "status")

    assert result.exit_code == 1
    assert "Aucun stagiaire" not in result.output
    assert (
        "Aucune sauvegarde dans output/.sauvegardes : reconstruisez la base à partir des "
        "fichiers de la campagne (classeurs, retours, messages envoyés, bilans) avec "
        "« grille rebuild »"
    ) in result.output
    assert "\n  rebuild " in run(campaign, "--help").output


# ------------------------------------------------------------------ a whole season


def test_rebuild__a_season_in_files__same_statuses__nobody_mailed_again__nothing_redone(
    campaign: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "retours"
    ids = _season(campaign, inbox, pause=3.1)  # a mark told apart from the writing by its time
    _type_note(campaign, "Bernard", "Appeler le tuteur en mars.")
    assert run(campaign, "status").exit_code == 0  # the note is read into the database
    before = status_json(campaign)
    assert {n: s["status_label"] for n, s in before.items()} == {
        "Abadie": "complet", "Bernard": "incomplet", "Chevallier": "envoyé",
        "Da Silva": "message prêt", "Étienne": "complet (à confirmer)",
    }  # fmt: skip
    outbox = _outbox(campaign)
    reports = {p: p.read_bytes() for p in (campaign / "output" / "rapports").rglob("*.docx")}
    _lose_database(campaign)
    refused = run(campaign, "send")
    assert refused.exit_code == 1
    assert "« grille rebuild »" in refused.output

    rebuilt = run(campaign, "rebuild", "--roster", str(campaign / "liste.csv"))

    assert rebuilt.exit_code == 0, rebuilt.output
    lines = rebuilt.output.splitlines()
    assert lines[0] == (
        "Base de la campagne reconstruite à partir de ses fichiers : 5 stagiaire(s), "
        "5 classeur(s), 5 envoi(s) (2 envoyé(s), 3 message(s) prêt(s)), 3 retour(s) "
        "(0 refusé(s)), 5 bilan(s) et PDF."
    )
    assert "  Notes du professeur reprises de output/suivi.xlsx : 1 stagiaire(s)." in lines
    assert "Perdu avec l'ancienne base :" in lines
    assert (
        "  les décisions sur les retours « à confirmer » : 1 retour(s) à confirmer de "
        "nouveau (« grille confirm »)."
    ) in lines
    assert lines[-1] == "Vérifiez l'état de la campagne : grille status"
    assert (campaign / "output" / "grille.sqlite").is_file()
    assert [p.name for p in (campaign / "output").iterdir() if p.name.endswith(".tmp")] == []
    after = status_json(campaign)
    _same_statuses(before, after)
    assert after["Abadie"]["origin"].startswith("output/retours/")
    db = sqlite3.connect(campaign / "output" / "grille.sqlite")
    notes = dict(db.execute("SELECT student_id, notes FROM teacher_notes").fetchall())
    db.close()
    assert notes == {ids["Bernard"]: "Appeler le tuteur en mars."}
    assert len(state.backups(campaign / "output" / ".sauvegardes")) == 1

    sent = run(campaign, "send")
    assert sent.exit_code == 0
    assert sent.output.startswith("Rien à envoyer")
    assert _outbox(campaign) == outbox  # nobody mailed again, no message rewritten
    generated = run(campaign, "generate", "--roster", str(campaign / "liste.csv"))
    assert generated.exit_code == 0
    assert generated.output.splitlines()[-1] == (
        "0 classeur(s) créé(s), 0 régénéré(s), 5 inchangé(s), dans output/classeurs."
    )
    collected = run(campaign, "collect", str(inbox))
    assert collected.exit_code == 0
    assert collected.output.splitlines()[-1].startswith(
        "0 retour(s) enregistré(s), 0 fichier(s) refusé(s) ou illisible(s), 3 déjà collecté(s)."
    )
    marked = run(campaign, "send", "--mark-sent")  # the marks came back from suivi.xlsx
    assert marked.output.splitlines() == [
        "  envoyé par vous : BERNARD Yanis (BTS 2A)",
        "  envoyé par vous : DA SILVA Mathéo (BTS 2B)",
        "  envoyé par vous : ÉTIENNE Lou (BTS 2B)",
        "3 classeur(s) notés comme envoyés.",
    ]
    reported = run(campaign, "report")
    assert reported.exit_code == 0
    assert "retouché" not in reported.output
    assert set((campaign / "output" / "rapports").rglob("*.docx")) == set(reports)
    assert status_json(campaign)["Bernard"]["status"] == "incomplete"


def test_rebuild__server_sendings_from_their_copies__the_server_gets_nothing_more(
    campaign: Path, smtp_server: tuple[Server, int]
) -> None:
    handler, port = smtp_server
    use_smtp(campaign, port)
    assert run(campaign, "send").exit_code == 0
    assert len(handler.accepted) == 4
    before = status_json(campaign)
    assert {s["status"] for s in before.values()} == {"sent"}
    _lose_database(campaign)
    (campaign / "output" / "suivi.xlsx").unlink()  # the copies alone tell what left

    rebuilt = run(campaign, "rebuild", "--roster", str(campaign / "liste.csv"))

    assert rebuilt.exit_code == 0, rebuilt.output
    assert "5 envoi(s) (5 envoyé(s), 0 message(s) prêt(s))" in rebuilt.output
    _same_statuses(before, status_json(campaign))
    again = run(campaign, "send")
    assert again.output.startswith("Rien à envoyer")
    assert len(handler.accepted) == 4


def test_rebuild__outbox_message_replaced_by_a_later_one__suivi_xlsx_still_knows_it_left(
    campaign: Path, write_csv: Callable[..., Path]
) -> None:
    ids = {name: s["student_id"] for name, s in status_json(campaign).items()}
    assert run(campaign, "send", "--student", ids["Abadie"]).exit_code == 0
    assert run(campaign, "send", "--mark-sent").exit_code == 0
    time.sleep(1.1)
    # Chevallier's message to the same tutor replaces the outbox file that held Abadie's.
    assert run(campaign, "send", "--student", ids["Chevallier"]).exit_code == 0
    before = status_json(campaign)
    assert (before["Abadie"]["status"], before["Chevallier"]["status"]) == ("sent", "prepared")
    _lose_database(campaign)

    rebuilt = run(campaign, "rebuild", "--roster", str(campaign / "liste.csv"))

    assert rebuilt.exit_code == 0, rebuilt.output
    _same_statuses(before, status_json(campaign))
    dry = run(campaign, "send", "--dry-run")
    assert "sg@horizon.example" not in dry.output  # neither of Sophie Garnier's students
    assert "3 message(s) prêt(s)" in dry.output


def test_rebuild__does_what_the_lost_database_would_have_done__config_changed_since(
    campaign: Path, tmp_path: Path
) -> None:
    root = campaign
    assert run(root, "send", "--student", status_json(root)["Bernard"]["student_id"]).exit_code == 0
    config = root / "grille.toml"  # the school is printed in every workbook: all to make again
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("Lycée Test", "Lycée Jean Moulin"), encoding="utf-8")
    intact = tmp_path / "intacte"
    shutil.copytree(root, intact)
    _lose_database(root)

    rebuilt = run(root, "rebuild", "--roster", str(root / "liste.csv"))

    assert rebuilt.exit_code == 0, rebuilt.output
    assert (
        "  À refaire par « grille generate » (configuration de la campagne modifiée depuis le "
        "classeur) : ABADIE Chloé (BTS 2A)"
    ) in rebuilt.output.splitlines()
    outputs = {}
    for command in ("generate", "send"):
        for folder in (root, intact):
            args = ["--roster", str(folder / "liste.csv")] if command == "generate" else []
            output = run(folder, command, *(args or ["--dry-run"])).output
            assert outputs.setdefault(command, output) == output, (command, folder)
    assert "0 classeur(s) créé(s), 5 régénéré(s), 0 inchangé(s)" in outputs["generate"]
    assert "4 message(s) prêt(s)" in outputs["send"].splitlines()[-1]  # one per tutor


# ------------------------------------------------------------------ what it refuses


def test_rebuild__key_replaced__refused_in_french__nothing_written(
    campaign: Path, tmp_path: Path
) -> None:
    _season(campaign, tmp_path / "retours")
    _lose_database(campaign)
    key = campaign / ".grille" / "cle_secrete"
    key.write_text(os.urandom(32).hex() + "\n", encoding="ascii")

    result = run(campaign, "rebuild", "--roster", str(campaign / "liste.csv"))

    assert result.exit_code == 1
    assert result.output.startswith(
        "Erreur : La clé secrète de la campagne (.grille/cle_secrete) ne vérifie la signature "
        "d'aucun de ses 5 classeur(s) de output/classeurs : elle a été remplacée ou recréée"
    ), result.output
    assert "Restaurez .grille/cle_secrete depuis votre sauvegarde" in result.output
    assert not (campaign / "output" / "grille.sqlite").exists()
    assert [p for p in (campaign / "output").iterdir() if p.name.startswith(".grille.sqlite")] == []


def test_rebuild__database_present__refused__with_replace_the_old_one_is_backed_up(
    campaign: Path,
) -> None:
    assert run(campaign, "send").exit_code == 0
    _lose_database(campaign)
    assert run(campaign, "rebuild", "--roster", str(campaign / "liste.csv")).exit_code == 0

    again = run(campaign, "rebuild", "--roster", str(campaign / "liste.csv"))
    assert again.exit_code == 1
    assert "est présente : il n'y a rien à reconstruire" in again.output
    assert "« grille rebuild --replace »" in again.output

    replaced = run(campaign, "rebuild", "--replace", "--roster", str(campaign / "liste.csv"))
    assert replaced.exit_code == 0, replaced.output
    saved = replaced.output.splitlines()[1]
    assert saved.startswith("  La base remplacée est gardée dans la sauvegarde grille-")
    assert {s["status"] for s in status_json(campaign).values()} == {"prepared"}


def test_rebuild__grid_not_shipped__refused_until_given(
    campaign: Path, tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    grid = tmp_path / "ma_grille.toml"
    text = (PROJECT / "pipeline" / "grids" / "bts_muc_stage.toml").read_text(encoding="utf-8")
    grid.write_text(text.replace('id = "bts-muc-stage-acrc"', 'id = "ma-grille"'), "utf-8")
    roster = str(campaign / "liste.csv")
    made = run(campaign, "generate", "--roster", roster, "--grid", str(grid))
    assert made.exit_code == 0, made.output
    assert run(campaign, "send").exit_code == 0
    before = status_json(campaign)
    _lose_database(campaign)

    refused = run(campaign, "rebuild", "--roster", roster)
    assert refused.exit_code == 1
    assert "la grille « ma-grille » version 1" in refused.output
    assert "« grille rebuild --grid FICHIER »" in refused.output
    assert not (campaign / "output" / "grille.sqlite").exists()

    rebuilt = run(campaign, "rebuild", "--roster", roster, "--grid", str(grid))
    assert rebuilt.exit_code == 0, rebuilt.output
    _same_statuses(before, status_json(campaign))
    assert "0 régénéré(s), 5 inchangé(s)" in run(campaign, "generate", "--roster", roster).output


# ------------------------------------------------------------------ what it cannot know


def test_rebuild__line_changed_and_student_gone__listed__generate_redoes_only_the_changed(
    campaign: Path, write_csv: Callable[..., Path]
) -> None:
    assert run(campaign, "send").exit_code == 0
    _lose_database(campaign)
    rows = [list(row) for row in ROWS if row[0] != "Da Silva"]
    rows[1][3] = "Banque Solvéa Entreprises"  # Bernard's company renamed since
    roster = write_csv(campaign / "nouvelle.csv", [ROSTER_HEADER, *rows])

    rebuilt = run(campaign, "rebuild", "--roster", str(roster))

    assert rebuilt.exit_code == 0, rebuilt.output
    assert (
        "  Attention — DA SILVA Mathéo (BTS 2B) n'est pas dans la liste : reconstruit d'après "
        "son classeur, « retiré de la liste »."
    ) in rebuilt.output.splitlines()
    assert (
        "  À refaire par « grille generate » (ligne de la liste modifiée depuis le classeur) : "
        "BERNARD Yanis (BTS 2A)"
    ) in rebuilt.output.splitlines()
    statuses = status_json(campaign)
    assert statuses["DA SILVA"]["in_roster"] is False
    assert (statuses["DA SILVA"]["class"], statuses["DA SILVA"]["tutor_email"]) == (
        "BTS 2B",
        "jl@quartz.example",
    )
    generated = run(campaign, "generate", "--roster", str(roster))
    assert "régénéré (ligne de la liste modifiée) : BERNARD Yanis (BTS 2A)" in generated.output
    assert "0 classeur(s) créé(s), 1 régénéré(s), 3 inchangé(s)" in generated.output
    dry = run(campaign, "send", "--dry-run")
    assert dry.output.splitlines()[-1].startswith("1 message(s) prêt(s)")
    assert "md@solvea.example" in dry.output


def test_rebuild__confirmed_return__the_decision_is_lost__said_and_shown(
    campaign: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "retours"
    _stripped(workbook_of(campaign, "Étienne"), inbox / "copie.xlsx", _answers("Bruno Caron"))
    assert run(campaign, "collect", str(inbox)).exit_code == 0
    number = status_json(campaign)["Étienne"]["return_id"]
    assert run(campaign, "confirm", str(number)).exit_code == 0
    assert status_json(campaign)["Étienne"]["to_confirm"] is False
    _lose_database(campaign)

    rebuilt = run(campaign, "rebuild", "--roster", str(campaign / "liste.csv"))

    assert "1 retour(s) à confirmer de nouveau (« grille confirm »)." in rebuilt.output
    after = status_json(campaign)["Étienne"]
    assert (after["return_id"], after["to_confirm"]) == (number, True)
    assert run(campaign, "confirm", str(number)).exit_code == 0


def test_rebuild__report_edited_by_hand__left_unrecorded__the_next_report_writes_beside(
    campaign: Path, tmp_path: Path
) -> None:
    _season(campaign, tmp_path / "retours")
    edited = next((campaign / "output" / "rapports").rglob("bilan_ABADIE_*.docx"))
    doc = Document(str(edited))  # what Word does when the teacher saves her changes
    doc.add_paragraph("Vu en conseil de classe.")
    doc.core_properties.last_modified_by = "Claire Martin"
    doc.core_properties.revision = 2
    doc.core_properties.modified = datetime.now()
    doc.save(str(edited))
    kept = edited.read_bytes()
    _lose_database(campaign)

    rebuilt = run(campaign, "rebuild", "--roster", str(campaign / "liste.csv"))

    assert rebuilt.exit_code == 0, rebuilt.output
    relative = edited.relative_to(campaign).as_posix()
    assert f"  Bilan retouché à la main, laissé tel quel : {relative}" in rebuilt.output
    assert "4 bilan(s) et PDF." in rebuilt.output.splitlines()[0]
    reported = run(campaign, "report")
    assert reported.exit_code == 0
    assert edited.read_bytes() == kept
    assert edited.with_name(edited.stem + "_nouveau.docx").is_file()
    assert len(list((campaign / "output" / "rapports").rglob("*_nouveau.docx"))) == 1


# ------------------------------------------------------------------ killed midway


@pytest.fixture
def child_env() -> Iterator[dict[str, str]]:
    yield {**os.environ, "PYTHONPATH": str(PROJECT)}


def test_rebuild__killed_midway__the_database_stays_absent__a_new_rebuild_succeeds(
    campaign: Path, tmp_path: Path, child_env: dict[str, str]
) -> None:
    _season(campaign, tmp_path / "retours")
    before = status_json(campaign)
    _lose_database(campaign)
    output = campaign / "output"
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--dir", str(campaign), "rebuild", "--roster",
         str(campaign / "liste.csv"), "--jobs", "1"],
        env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size for p in output.glob(".grille.sqlite.*.tmp-wal")):
            assert child.poll() is None, "the rebuild ended before its new database was seen"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)  # while the new database is being written
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert list(output.glob(".grille.sqlite.*.tmp"))  # its half-made database, left behind
    assert not (output / "grille.sqlite").exists()
    assert run(campaign, "status").exit_code == 1  # still refused: nothing half-made

    rebuilt = run(campaign, "rebuild", "--roster", str(campaign / "liste.csv"))

    assert rebuilt.exit_code == 0, rebuilt.output
    assert list(output.glob(".grille.sqlite.*")) == []
    _same_statuses(before, status_json(campaign))


# ------------------------------------------------------------------ the demonstration


def test_rebuild__the_demo_season__same_statuses_reminders_kept(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    root = tmp_path / "demo"
    made = CliRunner().invoke(cli, ["demo", str(root), "--jobs", "1"], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    before = status_json(root)
    _lose_database(root)

    rebuilt = run(root, "rebuild", "--roster", str(root / "input_templates" / "demo_roster.csv"))

    assert rebuilt.exit_code == 0, rebuilt.output
    _same_statuses(before, status_json(root))
    reminded = run(root, "remind", "--dry-run")
    assert reminded.output.splitlines()[-1] == "Aucun tuteur à relancer."
    assert "2 archive(s) de output/archive" in rebuilt.output


def test_rebuild__classes_whose_names_share_a_folder_keep_their_own(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    root = tmp_path / "campagne"
    assert run(root, "init", "--school", "Lycée Test").exit_code == 0
    with_teacher_email(root)
    rows = [
        [*ROWS[0][:2], "BTS MUC 2A", *ROWS[0][3:]],
        [*ROWS[1][:2], "BTS MUC (2A)", *ROWS[1][3:]],
    ]
    roster = write_csv(root / "liste.csv", [ROSTER_HEADER, *rows])
    assert run(root, "generate", "--roster", str(roster)).exit_code == 0
    assert run(root, "send").exit_code == 0

    def folders() -> list[tuple[str, str]]:
        db = sqlite3.connect(root / "output" / "grille.sqlite")
        try:
            return db.execute("SELECT class_name, folder FROM class_folders ORDER BY 1").fetchall()
        finally:
            db.close()

    before = folders()
    assert [folder for _, folder in before] == ["BTS_MUC_2A_2", "BTS_MUC_2A"]
    _lose_database(root)

    assert run(root, "rebuild", "--roster", str(roster)).exit_code == 0

    assert folders() == before
    generated = run(root, "generate", "--roster", str(roster)).output
    assert "0 régénéré(s), 2 inchangé(s)" in generated


def test_rebuild__foreign_and_forged_files_listed__exit_1__the_rest_rebuilt(
    campaign: Path, write_xlsx: Callable[..., Path]
) -> None:
    assert run(campaign, "send").exit_code == 0
    before = status_json(campaign)
    folder = workbook_of(campaign, "Abadie").parent
    wb = openpyxl.load_workbook(workbook_of(campaign, "Abadie"))
    wb["_grille"]["B6"].value = "0" * 64  # a signature made up by hand
    wb.save(folder / "copie_modifiee.xlsx")
    write_xlsx(folder / "mes_notes.xlsx", [["Élève", "Remarque"], ["Abadie", "RAS"]])
    _lose_database(campaign)

    rebuilt = run(campaign, "rebuild", "--roster", str(campaign / "liste.csv"))

    assert rebuilt.exit_code == 1, rebuilt.output
    lines = rebuilt.output.splitlines()
    assert lines[0].startswith("Base de la campagne reconstruite à partir de ses fichiers : 5 ")
    shown = folder.relative_to(campaign).as_posix()
    start = lines.index("Non repris :")
    assert lines[start + 1 : start + 3] == [
        f"  {shown}/copie_modifiee.xlsx : signature invalide : classeur modifié, ou signé avec "
        "une autre clé.",
        f"  {shown}/mes_notes.xlsx : ce n'est pas un classeur de grille.",
    ]
    _same_statuses(before, status_json(campaign))

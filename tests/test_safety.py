"""Nothing a teacher has is lost: key, database, disk, lock, killed runs.

A replaced or lost key is named as such; a missing or empty database beside a campaign's
files stops grille instead of starting over; the database is backed up and restored; a
full disk or a read-only folder is named; a killed command leaves no lock, no worker and
no temp file behind. The processes here are real (SIGKILL, flock, tmpfs mounts).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

from pipeline import state
from pipeline.cli import write_crash_log
from pipeline.settings import Workspace
from tests.tutors import complete_answers, fill, make_campaign, run, status_json, workbook_of

ROWS = [
    ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Bernard", "Yanis", "BTS 2A", "Banque Solvéa", "Marc Dubreuil", "md@solvea.example", "05/01/2026", "27/02/2026"],
    ["Da Silva", "Mathéo", "BTS 2B", "Immo Quartz", "Julien Lemaître", "jl@quartz.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip

PROJECT = Path(__file__).resolve().parents[1]


def _campaign(root: Path, write_csv: Callable[..., Path]) -> Path:
    """A campaign of three students whose messages can be written (`send`)."""
    make_campaign(root, ROWS, write_csv)
    config = root / "grille.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('email = ""', 'email = "prof@lycee.example"'), "utf-8")
    return root


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return _campaign(tmp_path / "campagne", write_csv)


def _answers(tutor: str) -> dict[str, object]:
    answers = complete_answers()
    answers["signature"] = tutor
    answers["date"] = date(2026, 2, 20)
    return answers


def _grille(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real `grille` console entry point in a child process."""
    return subprocess.run(
        [sys.executable, "-c", "from pipeline.cli import main; main()", "--dir", str(root), *args],
        capture_output=True, text=True, timeout=timeout, cwd=PROJECT, check=False,
    )  # fmt: skip


def _table_count(root: Path, table: str) -> int:
    db = sqlite3.connect(root / "output" / "grille.sqlite")
    try:
        count: int = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()
    return count


def _leftovers(root: Path) -> list[Path]:
    return [p for p in (root / "output").rglob("*") if p.name.endswith(".tmp")]


def _new_key(root: Path) -> None:
    (root / ".grille" / "cle_secrete").write_text(secrets.token_hex(32) + "\n", encoding="ascii")


# ------------------------------------------------------------------ 4. the key


def test_key_replaced__generate_and_collect_name_the_key_instead_of_unchanged_or_modified(
    campaign: Path, tmp_path: Path
) -> None:
    returned = fill(workbook_of(campaign, "Abadie"), tmp_path / "r" / "a.xlsx", _answers("S G"))
    _new_key(campaign)

    generated = run(campaign, "generate", "--roster", str(campaign / "liste.csv"))
    collected = run(campaign, "collect", str(returned))

    for result in (generated, collected):
        assert result.exit_code == 1, result.output
        assert "Erreur : La clé secrète de la campagne (.grille/cle_secrete) n'est plus celle " in (
            result.output
        )
        assert "Restaurez .grille/cle_secrete depuis votre sauvegarde" in result.output
        assert "grille generate --new-key" in result.output
    assert "inchangé" not in generated.output
    assert "modifiée" not in collected.output
    assert _table_count(campaign, "returns") == 0


def test_key_deleted__init_refuses_to_make_a_new_one_beside_signed_workbooks(
    campaign: Path,
) -> None:
    key = campaign / ".grille" / "cle_secrete"
    key.unlink()

    result = run(campaign, "init")

    assert result.exit_code == 1
    assert result.output.startswith(
        "Erreur : La clé secrète de la campagne (.grille/cle_secrete) a disparu, alors que des "
        "classeurs ont déjà été signés avec elle"
    )
    assert "Restaurez .grille/cle_secrete depuis votre sauvegarde" in result.output
    assert not key.exists()


def test_key_deleted_with_the_database__workbooks_on_disk__init_still_refuses(
    campaign: Path,
) -> None:
    (campaign / ".grille" / "cle_secrete").unlink()
    for name in ("grille.sqlite", "grille.sqlite-wal", "grille.sqlite-shm"):
        (campaign / "output" / name).unlink(missing_ok=True)

    result = run(campaign, "init")

    assert result.exit_code == 1
    assert "est absente, alors que la campagne a déjà 3 classeur(s) dans output/classeurs" in (
        result.output
    )
    assert not (campaign / ".grille" / "cle_secrete").exists()
    assert not (campaign / "output" / "grille.sqlite").exists()


def test_key_deleted_before_any_workbook__init_makes_a_new_one(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    root = tmp_path / "c"
    assert run(root, "init").exit_code == 0
    (root / ".grille" / "cle_secrete").unlink()

    again = run(root, "init")

    assert again.exit_code == 0, again.output
    assert "créé : .grille/cle_secrete" in again.output
    roster = write_csv(root / "liste.csv", [["Nom", "Prénom", "Classe", "Entreprise", "Tuteur", "Email tuteur", "Début", "Fin"], ROWS[0]])  # fmt: skip
    assert run(root, "generate", "--roster", str(roster)).exit_code == 0


def test_new_key__remakes_every_workbook__new_ones_recognised_old_ones_refused(
    campaign: Path, tmp_path: Path
) -> None:
    old = fill(workbook_of(campaign, "Abadie"), tmp_path / "old" / "a.xlsx", _answers("S G"))
    (campaign / ".grille" / "cle_secrete").unlink()
    roster = str(campaign / "liste.csv")

    result = run(campaign, "generate", "--roster", roster, "--new-key")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == [
        "  régénéré (nouvelle clé secrète) : ABADIE Chloé (BTS 2A) → "
        + str(workbook_of(campaign, "Abadie").relative_to(campaign)),
        "  régénéré (nouvelle clé secrète) : BERNARD Yanis (BTS 2A) → "
        + str(workbook_of(campaign, "Bernard").relative_to(campaign)),
        "  régénéré (nouvelle clé secrète) : DA SILVA Mathéo (BTS 2B) → "
        + str(workbook_of(campaign, "Da Silva").relative_to(campaign)),
    ]
    assert lines[3] == "0 classeur(s) créé(s), 3 régénéré(s), 0 inchangé(s), dans output/classeurs."
    assert lines[4].startswith("Nouvelle clé secrète adoptée : sauvegardez .grille/cle_secrete.")
    new = fill(workbook_of(campaign, "Bernard"), tmp_path / "new" / "b.xlsx", _answers("M D"))
    collected = run(campaign, "collect", str(old), str(new))
    assert "Refusé — " in collected.output and "signature invalide" in collected.output
    statuses = status_json(campaign)
    assert statuses["Bernard"]["status"] == "complete"
    assert statuses["Abadie"]["status"] == "generated"
    again = run(campaign, "generate", "--roster", roster, "--new-key")
    assert again.exit_code == 2
    assert "--new-key : la clé secrète de la campagne est toujours celle de ses classeurs" in (
        again.output
    )


def test_database_made_before_the_fingerprint__key_checked_against_the_signatures(
    campaign: Path,
) -> None:
    db = sqlite3.connect(campaign / "output" / "grille.sqlite")
    db.execute("DELETE FROM campaign_identity")
    db.commit()
    db.close()
    good_key = (campaign / ".grille" / "cle_secrete").read_text(encoding="ascii")
    _new_key(campaign)

    refused = run(campaign, "status")
    (campaign / ".grille" / "cle_secrete").write_text(good_key, encoding="ascii")
    accepted = run(campaign, "status")

    assert refused.exit_code == 1
    assert "n'est plus celle qui a signé ses classeurs" in refused.output
    assert accepted.exit_code == 0, accepted.output
    assert _table_count(campaign, "campaign_identity") == 1


def test_campaign_id_changed_in_the_configuration__named_with_the_value_to_put_back(
    campaign: Path,
) -> None:
    config = campaign / "grille.toml"
    text = config.read_text(encoding="utf-8")
    original = Workspace(campaign).load_config().campaign_id
    config.write_text(text.replace(original, "campagne-autre"), encoding="utf-8")

    result = run(campaign, "status")

    assert result.exit_code == 1
    assert (
        "Erreur : L'identifiant de la campagne dans grille.toml (« campagne-autre ») n'est plus "
        f"celui de ses classeurs (« {original} »)"
    ) in result.output
    assert f'remettez : identifiant = "{original}"' in result.output


# ------------------------------------------------------------------ 5. the database


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_database_gone__with_workbooks_on_disk__refused_with_what_exists_and_backups(
    campaign: Path, damage: str
) -> None:
    database = campaign / "output" / "grille.sqlite"
    assert run(campaign, "send").exit_code == 0  # the newest copy holds what was sent
    for side in ("-wal", "-shm"):
        Path(f"{database}{side}").unlink(missing_ok=True)
    if damage == "deleted":
        database.unlink()
    else:
        database.write_bytes(b"")
    latest = state.backups(campaign / "output" / ".sauvegardes")[-1].name

    for command in (["status"], ["generate", "--roster", str(campaign / "liste.csv")], ["send"]):
        result = run(campaign, *command)
        assert result.exit_code == 1, command
        word = "absente" if damage == "deleted" else "vide"
        assert result.output.startswith(
            f"Erreur : La base de la campagne (output/grille.sqlite) est {word}, alors que la "
            "campagne a déjà 3 classeur(s) dans output/classeurs, 3 message(s) aux tuteurs "
            "dans output/envoi. "
        ), result.output
        assert f"« grille restore {latest} »" in result.output
        assert "Aucun stagiaire" not in result.output
    assert not (campaign / "output" / "grille.sqlite").exists() or database.stat().st_size == 0
    assert len(list((campaign / "output" / "envoi").glob("*.eml"))) == 3  # nobody mailed again

    restored = run(campaign, "restore", latest)

    assert restored.exit_code == 0, restored.output
    assert restored.output.splitlines()[0] == (
        f"Base de la campagne remise depuis {latest} (3 stagiaire(s), 0 retour(s))."
    )
    assert {s["status"] for s in status_json(campaign).values()} == {"prepared"}
    assert run(campaign, "send").output.startswith("Rien à envoyer")


def test_database_recreated_empty_by_hand__with_returns_on_disk__refused(
    campaign: Path, tmp_path: Path
) -> None:
    fill(workbook_of(campaign, "Abadie"), tmp_path / "r" / "a.xlsx", _answers("S G"))
    assert run(campaign, "collect", str(tmp_path / "r")).exit_code == 0
    database = campaign / "output" / "grille.sqlite"
    for side in ("", "-wal", "-shm"):
        Path(f"{database}{side}").unlink(missing_ok=True)
    state.connect(database).close()  # a fresh database, migrated, with no campaign in it

    result = run(campaign, "status")

    assert result.exit_code == 1
    assert result.output.startswith(
        "Erreur : La base de la campagne (output/grille.sqlite) est vide, alors que la campagne "
        "a déjà 3 classeur(s) dans output/classeurs, 1 retour(s) dans output/retours. "
    )


def test_database_gone_and_no_backup__says_so_and_how_to_start_over_on_purpose(
    campaign: Path,
) -> None:
    for path in (campaign / "output").glob("grille.sqlite*"):
        path.unlink()
    for path in (campaign / "output" / ".sauvegardes").iterdir():
        path.unlink()

    result = run(campaign, "generate", "--roster", str(campaign / "liste.csv"))

    assert result.exit_code == 1
    assert (
        "Aucune sauvegarde dans output/.sauvegardes : reconstruisez la base à partir des "
        "fichiers de la campagne (classeurs, retours, messages envoyés, bilans) avec « grille "
        "rebuild » (donnez-lui votre liste des stagiaires comme à « grille generate » : "
        "--roster), ou remettez output/grille.sqlite depuis votre propre sauvegarde du dossier "
        "de la campagne. Pour vraiment recommencer une campagne, déplacez d'abord le dossier "
        "output ailleurs."
    ) in result.output


def test_backups__one_per_writing_command_that_changed_something__five_kept(
    campaign: Path, tmp_path: Path
) -> None:
    backups = campaign / "output" / ".sauvegardes"
    after_generate = state.backups(backups)
    assert len(after_generate) == 2  # as `init` left it, as `generate` left it
    assert state.describe_backup(after_generate[-1]).students == 3
    run(campaign, "status")  # reads only: no copy
    run(campaign, "send", "--dry-run")  # writes nothing: the newest copy is the same
    assert state.backups(backups) == after_generate
    for index, name in enumerate(["Abadie", "Bernard", "Da Silva"]):
        fill(workbook_of(campaign, name), tmp_path / f"r{index}" / "x.xlsx", _answers("T"))
        assert run(campaign, "collect", str(tmp_path / f"r{index}")).exit_code == 0
    assert run(campaign, "send").exit_code == 0
    assert run(campaign, "send", "--dry-run").exit_code == 0

    copies = state.backups(backups)

    assert len(copies) == 5  # six states were copied; the oldest (before generate) dropped
    assert copies[0] == after_generate[-1]
    described = [state.describe_backup(p) for p in copies]
    assert [(b.students, b.returns) for b in described] == [(3, 0), (3, 1), (3, 2), (3, 3), (3, 3)]
    assert all(state.check_backup(p) is None for p in copies)


def test_restore__list__then_back_to_an_older_state__the_replaced_one_kept(
    campaign: Path, tmp_path: Path
) -> None:
    fill(workbook_of(campaign, "Abadie"), tmp_path / "r" / "a.xlsx", _answers("S G"))
    assert run(campaign, "collect", str(tmp_path / "r")).exit_code == 0
    assert run(campaign, "send").exit_code == 0
    copies = state.backups(campaign / "output" / ".sauvegardes")

    listed = run(campaign, "restore", "--list")
    back = run(campaign, "restore", copies[0].name)  # as init left it: nobody in it

    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[0] == (
        "Sauvegardes de la base (output/.sauvegardes), de la plus récente à la plus ancienne :"
    )
    assert [line.split()[0] for line in lines[1:-1]] == [p.name for p in reversed(copies)]
    assert lines[1].endswith("3 stagiaire(s), 1 retour(s)")
    assert lines[-1] == "Pour en remettre une : grille restore NOM"
    assert back.exit_code == 0, back.output
    saved = state.backups(campaign / "output" / ".sauvegardes")[-1]
    assert f"La base remplacée est gardée dans la sauvegarde {saved.name}." in back.output
    assert state.describe_backup(saved).returns == 1
    assert _table_count(campaign, "students") == 0
    undo = run(campaign, "restore", saved.name)
    assert undo.exit_code == 0, undo.output
    assert _table_count(campaign, "returns") == 1


def test_database_damaged__named_with_restore__never_start_over(campaign: Path) -> None:
    database = campaign / "output" / "grille.sqlite"
    data = bytearray(database.read_bytes())
    data[:16] = b"not a database!!"
    database.write_bytes(bytes(data))

    result = run(campaign, "status")
    restored = run(
        campaign, "restore", state.backups(campaign / "output" / ".sauvegardes")[-1].name
    )

    assert result.exit_code == 1
    assert "abîmée" in result.output and "grille restore --list" in result.output
    assert "repartir de zéro" not in result.output
    assert restored.exit_code == 0, restored.output
    assert "La base remplacée, abîmée, est mise de côté : grille.sqlite.abimee-" in restored.output
    assert len(list((campaign / "output").glob("grille.sqlite.abimee-*"))) == 1
    assert run(campaign, "status").exit_code == 0


def test_purge__no_backup_and_no_free_page_keeps_the_purged_class(
    campaign: Path, tmp_path: Path
) -> None:
    fill(workbook_of(campaign, "Abadie"), tmp_path / "r" / "a.xlsx", _answers("Sophie Garnier"))
    assert run(campaign, "collect", str(tmp_path / "r")).exit_code == 0
    assert run(campaign, "report").exit_code == 0
    archived = run(campaign, "archive", "--class", "BTS 2A", "--year", "2026-2027")
    assert archived.exit_code == 0, archived.output
    zipped = campaign / "output" / "archive" / "2026-2027" / "BTS_2A.zip"
    assert run(campaign, "archive", "verify", str(zipped)).exit_code == 0
    backups = campaign / "output" / ".sauvegardes"
    assert any(b"Abadie" in p.read_bytes() for p in state.backups(backups))

    result = run(campaign, "purge", "--class", "BTS 2A", "--oui")

    assert result.exit_code == 0, result.output
    copies = state.backups(backups)
    assert len(copies) == 1  # the purged database, copied after the purge
    assert state.describe_backup(copies[0]).students == 1
    for path in [*copies, *(campaign / "output").glob("grille.sqlite*")]:
        data = path.read_bytes()
        assert b"Abadie" not in data and b"Bernard" not in data, path
        assert b"Da Silva" in data or path.name != "grille.sqlite"


def test_restore__unknown_name__usage_error_in_french(campaign: Path) -> None:
    result = run(campaign, "restore", "grille-19990101-000000.sqlite")
    assert result.exit_code == 2
    assert result.output == (
        "Erreur : sauvegarde « grille-19990101-000000.sqlite » introuvable. « grille restore "
        "--list » montre celles de la campagne.\n"
    )


# ------------------------------------------------------------------ 9. full disk, read-only


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs mounted for the test (root only; skipped elsewhere)."""
    mount = tmp_path / "disque"
    mount.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("monter un tmpfs demande d'être root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
        capture_output=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mount tmpfs impossible : {done.stderr!r}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill_disk(folder: Path) -> Path:
    filler = folder / "remplissage.bin"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_disk_full__sqlite_or_file_hit_first__disque_plein_exit_1__nothing_lost(
    small_disk: Path, write_csv: Callable[..., Path], tmp_path: Path
) -> None:
    root = _campaign(small_disk / "campagne", write_csv)
    returned = fill(workbook_of(root, "Abadie"), tmp_path / "r" / "a.xlsx", _answers("S G"))
    filler = _fill_disk(small_disk)

    for command in (["collect", str(returned)], ["send"], ["report"]):
        result = _grille(root, *command)
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr.startswith("Erreur : ") and "disque plein" in result.stderr, (
            command, result.stderr,
        )  # fmt: skip
        assert "inattendue" not in result.stderr
    created = _grille(tmp_path / "ailleurs", "init", str(small_disk / "nouvelle"))
    assert created.returncode == 1
    assert created.stderr.startswith("Erreur : disque plein"), created.stderr

    filler.unlink()
    again = _grille(root, "collect", str(returned))

    assert again.returncode == 0, again.stderr
    assert status_json(root)["Abadie"]["status"] == "complete"
    db = sqlite3.connect(root / "output" / "grille.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert _leftovers(root) == []


def test_read_only_campaign__named_read_only__never_unreadable_or_start_over(
    small_disk: Path, write_csv: Callable[..., Path], tmp_path: Path
) -> None:
    root = _campaign(small_disk / "campagne", write_csv)
    returned = fill(workbook_of(root, "Abadie"), tmp_path / "r" / "a.xlsx", _answers("S G"))
    remount = subprocess.run(
        ["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, check=False
    )
    if remount.returncode != 0:
        pytest.skip(f"remontage en lecture seule impossible : {remount.stderr!r}")
    try:
        for command in (["status"], ["collect", str(returned)], ["generate"], ["init"]):
            result = _grille(root, *command)
            assert result.returncode == 1, (command, result.stderr)
            assert "en lecture seule" in result.stderr, (command, result.stderr)
            assert "illisible" not in result.stderr and "zéro" not in result.stderr
        try:
            raise RuntimeError("essai")
        except RuntimeError:
            log = write_crash_log(root, ["status"])
        assert log is not None and not log.is_relative_to(small_disk)
        assert "RuntimeError: essai" in log.read_text(encoding="utf-8")
        log.unlink()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=False)


def test_internal_error__log_in_the_campaign_journal__one_file_per_error(campaign: Path) -> None:
    db = sqlite3.connect(campaign / "output" / "grille.sqlite")
    db.execute("DROP TABLE answers")  # a database damaged by another program: a real bug path
    db.commit()
    db.close()
    fill(workbook_of(campaign, "Abadie"), campaign.parent / "r" / "a.xlsx", _answers("S G"))

    first = _grille(campaign, "collect", str(campaign.parent / "r"))
    second = _grille(campaign, "collect", str(campaign.parent / "r"))

    logs = sorted((campaign / "output" / "journal").glob("erreur-*.log"))
    assert len(logs) == 2
    for result, log in zip((first, second), logs, strict=True):
        assert result.returncode == 3
        assert result.stderr == (
            "Erreur inattendue de grille (ce n'est pas de votre fait). Détails techniques dans "
            f"{log} : joignez ce fichier à votre signalement.\n"
        )
        text = log.read_text(encoding="utf-8")
        assert "Traceback" in text and "no such table: answers" in text
        assert f"commande : grille --dir {campaign} collect" in text


def test_crash_log__no_campaign__a_new_temp_file_each_time(tmp_path: Path) -> None:
    try:
        raise RuntimeError("essai")
    except RuntimeError:
        first = write_crash_log(tmp_path / "pas-une-campagne", ["status"])
        second = write_crash_log(None, ["status"])
    assert first is not None and second is not None and first != second
    try:
        assert first.parent == second.parent != tmp_path
        assert "RuntimeError: essai" in first.read_text(encoding="utf-8")
        assert not (tmp_path / "pas-une-campagne").exists()
    finally:
        first.unlink()
        second.unlink()


# ------------------------------------------------------------------ 10. lock, leftovers, workers


def _lock_is_free(output: Path) -> bool:
    with (output / state.LOCK_NAME).open("a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return True


def _wait_for(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie waiting for its new parent counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return fields[0] in ("Z", "X")


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pipeline import state
    from pipeline.errors import GrilleError
    output, start = Path(sys.argv[1]), float(sys.argv[2])
    while time.time() < start:
        pass
    try:
        with state.run_lock(output):
            print("gagné", flush=True)
            time.sleep(1.5)
    except GrilleError as exc:
        print("refusé :", exc, flush=True)
    """
)


@pytest.mark.parametrize("stale", [False, True])
def test_run_lock__two_processes_race__exactly_one_wins(tmp_path: Path, stale: bool) -> None:
    output = tmp_path / "output"
    output.mkdir()
    if stale:  # a lock file left by a dead command, with its dead pid
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        (output / state.LOCK_NAME).write_text(dead.stdout.strip(), encoding="ascii")
    start = str(time.time() + 1.5)
    command = [sys.executable, "-c", RACER, str(output), start]
    racers = [
        subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = sorted(racer.communicate(timeout=60)[0].strip() for racer in racers)

    assert outputs[0] == "gagné", outputs
    for refused in outputs[1:]:
        assert refused.startswith(
            f"refusé : Une autre commande grille travaille déjà sur cette campagne "
            f"({output / state.LOCK_NAME}, processus "
        ), outputs
        assert refused.endswith("Attendez qu'elle se termine, puis relancez la vôtre.")
    assert _lock_is_free(output)


KILLED_WRITER = textwrap.dedent(
    """
    import sys, tempfile, time
    from pathlib import Path
    from pipeline.files import atomic_write_with
    target, ready = Path(sys.argv[1]), Path(sys.argv[2])
    tempfile.mkdtemp(dir=target.parent, prefix=".archive_en_cours.", suffix=".tmp")
    def write(handle):
        handle.write(b"PK half a workbook")
        handle.flush()
        ready.touch()
        time.sleep(120)
    atomic_write_with(target, write)
    """
)


def test_killed_mid_write__next_command_removes_its_temp_files_and_folders(
    campaign: Path, tmp_path: Path
) -> None:
    target = workbook_of(campaign, "Abadie")
    before = target.read_bytes()
    nested = campaign / "output" / "demo"  # another campaign kept inside: not ours to clean
    (nested / "output").mkdir(parents=True)
    (nested / "grille.toml").write_text("", encoding="utf-8")
    foreign = nested / "output" / ".suivi.xlsx.abcd1234.tmp"
    foreign.write_bytes(b"")
    ready = tmp_path / "ready"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target), str(ready)],
                              cwd=PROJECT)  # fmt: skip
    assert _wait_for(ready.exists)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    leftovers = _leftovers(campaign)
    assert len(leftovers) == 3  # the temp workbook, the temp folder, the nested campaign's
    assert target.read_bytes() == before

    result = run(campaign, "send", "--dry-run")

    assert result.exit_code == 0, result.output
    assert _leftovers(campaign) == [foreign]
    assert target.read_bytes() == before


SUPERVISOR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pipeline import state
    from pipeline.parallel import map_batches
    from tests.workers import note_pid_then_sleep
    output, pids = Path(sys.argv[1]), sys.argv[2]
    with state.run_lock(output):
        for _ in map_batches(note_pid_then_sleep, [pids] * 4, jobs=2, parallel=True,
                             chunk_size=1):
            pass
    """
)


def test_worker_pool__parent_killed__workers_end_and_the_lock_is_free(tmp_path: Path) -> None:
    output, pids = tmp_path / "output", tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(output), str(pids)],
                              cwd=PROJECT)  # fmt: skip
    assert _wait_for(lambda: len(list(pids.glob("*.pid"))) == 2, 60)
    workers = [int(p.stem) for p in pids.glob("*.pid")]
    assert parent.pid not in workers and not any(_gone(pid) for pid in workers)
    assert not _lock_is_free(output)

    parent.send_signal(signal.SIGKILL)
    parent.wait()

    assert _wait_for(lambda: all(_gone(pid) for pid in workers), 20), workers
    assert _wait_for(lambda: _lock_is_free(output), 20)


def test_grille_killed_mid_generate__no_lock_left__next_run_completes_and_cleans(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    root = tmp_path / "c"
    assert run(root, "init").exit_code == 0
    header = ["Nom", "Prénom", "Classe", "Entreprise", "Tuteur", "Email tuteur", "Début", "Fin"]
    rows = [[f"Nom{i:03d}", "Élève", "BTS 2A", "Entreprise", f"Tuteur {i}", f"t{i}@ex.example",
             "05/01/2026", "27/02/2026"] for i in range(300)]  # fmt: skip
    roster = write_csv(root / "liste.csv", [header, *rows])
    child = subprocess.Popen(
        [sys.executable, "-c", "from pipeline.cli import main; main()", "--dir", str(root),
         "generate", "--roster", str(roster), "--jobs", "1"],
        cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    folder = root / "output" / "classeurs" / "BTS_2A"
    assert _wait_for(lambda: folder.is_dir() and len(list(folder.iterdir())) >= 10, 120)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert _lock_is_free(root / "output")
    assert _table_count(root, "workbooks") == 0  # killed before its transaction

    again = run(root, "generate", "--roster", str(roster), "--jobs", "1")

    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-1] == (
        "300 classeur(s) créé(s), 0 régénéré(s), 0 inchangé(s), dans output/classeurs."
    )
    assert _table_count(root, "workbooks") == 300
    assert _leftovers(root) == []

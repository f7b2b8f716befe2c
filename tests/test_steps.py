"""The season's steps as library functions `step(campaign, …) -> Result`, with no click in
them: what the CLI prints, and what a web interface will show, comes from their results."""

from __future__ import annotations

import ast
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline import mail, remind
from pipeline.campaign import Campaign, generate_workbooks, list_backups, restore_backup
from pipeline.errors import RequestError, RosterError
from pipeline.rebuild import rebuild_step
from pipeline.settings import SmtpSettings, Workspace
from tests.test_collect import ROWS
from tests.tutors import ROSTER_HEADER, make_campaign, run

PIPELINE = Path(__file__).parent.parent / "pipeline"


@pytest.fixture
def root(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    folder = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    config = folder / "grille.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('email = ""', 'email = "prof@lycee.example"'), "utf-8")
    return folder


@pytest.fixture
def opened(root: Path) -> Iterator[Campaign]:
    campaign = Campaign.open(Workspace(root))
    yield campaign
    campaign.close()


def _unreachable_server(root: Path, user: str = "") -> int:
    """Set the campaign's SMTP server to a free port of the loopback (nothing listens);
    its port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = root / "grille.toml"
    text = config.read_text(encoding="utf-8").replace('serveur = ""', 'serveur = "127.0.0.1"', 1)
    text = text.replace('utilisateur = ""', f'utilisateur = "{user}"', 1)
    config.write_text(text.replace("port = 587", f"port = {port}"), encoding="utf-8")
    return port


def test_no_library_module_uses_click() -> None:
    """Only `pipeline/cli/` talks to the teacher; the steps return results."""
    users = []
    for path in sorted(PIPELINE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name == "click" or name.startswith("click.") for name in names):
                users.append(path.name)
    assert users == []


def test_generate_workbooks__roster_with_errors__result_says_so__nothing_written(
    opened: Campaign, root: Path, write_csv: Callable[..., Path]
) -> None:
    bad = write_csv(root / "fausse.csv", [ROSTER_HEADER, ["Zola", "Émile", "BTS 2A"]])
    before = sorted((root / "output" / "classeurs").rglob("*.xlsx"))

    result = generate_workbooks(opened, [bad])

    assert not result.generated
    assert not result.roster.valid
    assert {p.code for p in result.roster.problems} == {"missing_value"}
    assert sorted((root / "output" / "classeurs").rglob("*.xlsx")) == before


def test_generate_workbooks__progress_told_done_and_total__removed_students_as_students(
    opened: Campaign, root: Path, write_csv: Callable[..., Path]
) -> None:
    fewer = write_csv(root / "moins.csv", [ROSTER_HEADER, *ROWS[:5]])
    seen: list[tuple[int, int]] = []

    result = generate_workbooks(
        opened, [fewer], force=True, progress=lambda done, total: seen.append((done, total))
    )

    assert result.generated
    assert seen[-1] == (5, 5)
    assert [(s.display_name, s.class_name) for s in result.removed] == [
        ("FAURE Gaëtan", "BTS 2B"),
        ("GARCIA Léa", "BTS 2B"),
    ]


def test_generate_workbooks__unreadable_roster__roster_error_exit_code_2(
    opened: Campaign, root: Path
) -> None:
    with pytest.raises(RosterError) as error:
        generate_workbooks(opened, [root / "absente.csv"])

    assert error.value.exit_code == 2


def test_generate_workbooks__new_key_with_the_same_key__refused_exit_code_2(
    opened: Campaign,
) -> None:
    with pytest.raises(RequestError) as error:
        generate_workbooks(opened, new_key=True)

    assert error.value.exit_code == 2
    assert str(error.value).startswith("--new-key : la clé secrète de la campagne est toujours")


def test_deliver_messages__dry_run_builds_only__then_outbox__recorded(
    opened: Campaign, root: Path
) -> None:
    pending = mail.pending_messages(opened)

    dry = mail.deliver_messages(opened, pending, mail.SEND, dry_run=True)
    done = mail.deliver_messages(opened, pending, mail.SEND)

    assert (len(dry.built), dry.errors, dry.report.written, dry.ok) == (4, [], [], True)
    assert not dry.smtp.configured
    assert dry.outbox == root / "output" / "envoi"
    assert [path.parent for _, path in done.report.written] == [dry.outbox] * 4
    assert done.ok and done.failures == 0
    assert mail.pending_messages(opened) == []


def test_deliver_messages__server_unreachable__fault_named__nothing_recorded(
    root: Path,
) -> None:
    port = _unreachable_server(root)
    campaign = Campaign.open(Workspace(root))
    try:
        pending = mail.pending_messages(campaign)

        done = mail.deliver_messages(campaign, pending, mail.SEND, password="secret")

        assert done.fault.startswith(f"Connexion au serveur d'envoi 127.0.0.1:{port} impossible")
        assert (done.ok, done.failures) == (False, 1)
        assert len(mail.pending_messages(campaign)) == 4
    finally:
        campaign.close()


def test_send_step__outbox__no_password_asked__then_nothing_pending(
    opened: Campaign, root: Path
) -> None:
    asked: list[str] = []

    def password(smtp: SmtpSettings) -> str:
        asked.append(smtp.host)
        return "secret"

    first = mail.send_step(opened, password=password)
    again = mail.send_step(opened, password=password)

    assert first.delivery is not None and first.exit_code == 0
    assert [p.parent for _, p in first.delivery.report.written] == [root / "output" / "envoi"] * 4
    assert (again.delivery, again.exit_code, asked) == (None, 0, [])


def test_send_step__server_with_a_user__password_asked_once__the_variable_first(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unreachable_server(root, user="prof")
    asked: list[str] = []

    def password(smtp: SmtpSettings) -> str:
        asked.append(f"{smtp.user}@{smtp.host}")
        return "secret"

    campaign = Campaign.open(Workspace(root))
    try:
        dry = mail.send_step(campaign, dry_run=True, password=password)
        failed = mail.send_step(campaign, password=password)
        monkeypatch.setenv(mail.PASSWORD_VARIABLE, "dans-la-variable")
        from_variable = mail.send_step(campaign, student_ids=["nobody"], password=password)
        again = mail.send_step(campaign, class_name="bts 2a", password=password)
    finally:
        campaign.close()

    assert dry.delivery is not None and len(dry.delivery.built) == 4 and dry.exit_code == 0
    assert failed.delivery is not None and failed.delivery.fault and failed.exit_code == 1
    assert from_variable.delivery is None  # no such student: nothing pending, nothing asked
    assert again.delivery is not None and again.exit_code == 1
    assert asked == ["prof@127.0.0.1"]  # the dry run and the variable asked nothing


def test_remind_step__skipped_students_said__dry_run_records_nothing(opened: Campaign) -> None:
    mail.send_step(opened, class_name="BTS 2A")

    dry = remind.remind_step(opened, dry_run=True)
    done = remind.remind_step(opened, class_name="bts 2a")

    assert dry.delivery is not None and dry.exit_code == 0
    assert sorted(m.tutor_email for m, _ in dry.delivery.built) == [
        "md@solvea.example",
        "sg@horizon.example",
    ]
    assert len(dry.skipped) == 4  # BTS 2B: workbooks never sent
    assert all("lancez « grille send »" in note for note in dry.skipped)
    assert done.delivery is not None and len(done.delivery.report.written) == 2
    assert remind.remind_step(opened).delivery is None  # reminded just now, the 2B never sent


def test_rebuild_step__roster_with_errors__nothing_done__roster_says_why(
    root: Path, write_csv: Callable[..., Path]
) -> None:
    bad = write_csv(root / "fausse.csv", [ROSTER_HEADER, ["Zola", "Émile", "BTS 2A"]])
    database = (root / "output" / "grille.sqlite").read_bytes()

    result = rebuild_step(Workspace(root), [bad], replace=True)

    assert not result.roster.valid and result.students == 0
    assert (root / "output" / "grille.sqlite").read_bytes() == database


def test_mark_sent_by_hand_and_reminders__take_the_campaign__give_students(
    opened: Campaign,
) -> None:
    mail.deliver_messages(opened, mail.pending_messages(opened), mail.SEND)

    marked = mail.mark_sent_by_hand(opened, class_name="bts 2b")
    reminders = remind.pending_reminders(opened, class_name="BTS 2A")

    assert sorted(s.display_name for s in marked) == [
        "DA SILVA Mathéo", "FAURE Gaëtan", "GARCIA Léa", "ÉTIENNE Lou",
    ]  # fmt: skip
    assert sorted(m.tutor_email for m in reminders.messages) == [
        "md@solvea.example",
        "sg@horizon.example",
    ]


def test_restore_backup__unknown_name__request_error__listing_unchanged(root: Path) -> None:
    workspace = Workspace(root)
    copies = list_backups(workspace)

    with pytest.raises(RequestError) as error:
        restore_backup(workspace, "grille-19990101-000000.sqlite")

    assert error.value.exit_code == 2
    assert [c.path for c in list_backups(workspace)] == [c.path for c in copies]
    assert copies and copies[0].students == len(ROWS)
    assert run(root, "restore", "grille-19990101-000000.sqlite").exit_code == 2


def test_restore_backup__newest_copy_back__replaced_database_kept(root: Path) -> None:
    workspace = Workspace(root)
    newest = list_backups(workspace)[0]

    done = restore_backup(workspace, newest.path.name)

    assert done.restored == newest.path
    assert done.described is not None and done.described.students == len(ROWS)
    assert done.mismatch == ""
    assert done.saved_as is not None and done.saved_as.is_file()

"""`grille collect --imap` against a real IMAP server (pymap) started on loopback."""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.inbox import MAX_MESSAGE_SIZE, PASSWORD_VARIABLE, imap_folder_name
from tests.test_collect import ROWS, _answers_for
from tests.tutors import fill, make_campaign, run, status_json, workbook_of

USER = "prof@lycee.example"
PASSWORD = "Sésame 2027"  # not ASCII: logs in with AUTHENTICATE PLAIN
XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
SENT = datetime(2026, 2, 20, 10, 0, tzinfo=UTC)
PYMAP = "import sys; from pymap.main import main; sys.argv[0] = 'pymap'; sys.exit(main())"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def quoted(folder: str) -> str:
    return f'"{folder}"'


class ImapServer:
    """The test's own IMAP client on the server: what a tutor's mail delivery would do."""

    def __init__(self, port: int) -> None:
        self.port = port

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        credentials = b"\0" + USER.encode() + b"\0" + PASSWORD.encode()
        client.authenticate("PLAIN", lambda _: credentials)
        return client

    def append(self, raw: bytes, folder: str = "INBOX", received: datetime = SENT) -> None:
        client = self.client()
        try:
            typ, data = client.append(
                quoted(folder), None, imaplib.Time2Internaldate(received), raw
            )
            assert typ == "OK", data
        finally:
            client.logout()

    def create(self, folder: str) -> None:
        client = self.client()
        try:
            assert client.create(quoted(folder))[0] == "OK"
        finally:
            client.logout()

    def delete(self, folder: str) -> None:
        client = self.client()
        try:
            assert client.delete(quoted(folder))[0] == "OK"
        finally:
            client.logout()

    def uidvalidity(self, folder: str) -> int:
        client = self.client()
        try:
            typ, data = client.status(quoted(folder), "(UIDVALIDITY)")
            assert typ == "OK", data
            return int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))
        finally:
            client.logout()

    def flags(self, folder: str = "INBOX") -> dict[str, set[str]]:
        """Flags of every message of `folder`, by subject (read-only: changes nothing)."""
        client = self.client()
        try:
            assert client.select(quoted(folder), readonly=True)[0] == "OK"
            typ, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK", data
            found = {}
            for index, item in enumerate(data):
                if isinstance(item, tuple):
                    subject = item[1].decode().split(":", 1)[1].strip()
                    text = item[0] + (
                        data[index + 1] if isinstance(data[index + 1], bytes) else b""
                    )
                    flags = re.search(rb"FLAGS \(([^)]*)\)", text).group(1)
                    found[subject] = set(flags.decode().split())
            return found
        finally:
            client.logout()


@pytest.fixture
def imap_server(tmp_path: Path) -> Iterator[ImapServer]:
    """A pymap server (in-memory mailboxes) on a free loopback port, one per test."""
    pytest.importorskip("pymap", reason="serveur IMAP de test absent : pip install -e '.[test]'")
    port = _free_port()
    log_path = tmp_path / "pymap.log"
    command = [sys.executable, "-c", PYMAP, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--no-tls", "dict", "--demo-user", USER, "--demo-password", PASSWORD]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:  # wait until it listens (not an assertion on time)
                if process.poll() is not None:
                    pytest.fail(f"pymap s'est arrêté : {log_path.read_text(errors='replace')}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("pymap n'écoute pas après 30 s")
                    time.sleep(0.05)
            yield ImapServer(port)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return make_campaign(tmp_path / "campagne", ROWS, write_csv)


def use_imap(root: Path, port: int, *, security: str = "aucune") -> None:
    """Fill the [reception] section of grille.toml as the teacher would."""
    config = root / "grille.toml"
    head, tail = config.read_text(encoding="utf-8").split("[reception]")
    for key, value in (
        ("serveur", '"127.0.0.1"'),
        ("port", str(port)),
        ("securite", f'"{security}"'),
        ("utilisateur", f'"{USER}"'),
    ):
        tail = re.sub(rf"^{key} = .*$", f"{key} = {value}", tail, count=1, flags=re.MULTILINE)
    config.write_text(f"{head}[reception]{tail}", encoding="utf-8")


def collect_imap(root: Path, *args: str, password: str = PASSWORD) -> Result:
    """`grille collect --imap …` with the password in the environment, as documented."""
    return CliRunner().invoke(
        cli,
        ["--dir", str(root), "collect", "--imap", *args],
        env={PASSWORD_VARIABLE: password},
        catch_exceptions=False,
    )


def reply(sender: str, subject: str, attachments: dict[str, bytes], sent: datetime = SENT) -> bytes:
    """A tutor's answer as a mail client sends it, workbooks attached."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = USER
    message["Subject"] = subject
    message["Date"] = format_datetime(sent)
    message["Message-ID"] = make_msgid(domain="tuteur.example")
    message.set_content("Bonjour,\nvoici la grille d'évaluation remplie.\nCordialement")
    for name, data in attachments.items():
        message.add_attachment(data, *XLSX, filename=name)
    return bytes(message)


def filled(
    campaign: Path, tmp_path: Path, last_name: str, tutor: str, **changes: object
) -> dict[str, bytes]:
    """The student's workbook as the tutor fills it, ready to attach."""
    source = workbook_of(campaign, last_name)
    target = fill(source, tmp_path / "tuteurs" / source.name, _answers_for(tutor, **changes))
    return {source.name: target.read_bytes()}


def summary(result: Result) -> str:
    return result.output.splitlines()[-1]


def test_collect_imap__returns_in_the_mailbox__are_fetched_recognised_validated_and_never_twice(
    campaign: Path, tmp_path: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)
    abadie = filled(campaign, tmp_path, "Abadie", "Sophie Garnier")
    bernard = filled(
        campaign, tmp_path, "Bernard", "Marc Dubreuil", **{"integration.ponctualite": None}
    )
    imap_server.append(reply("Sophie Garnier <sg@horizon.example>", "Grille Abadie", abadie))
    imap_server.append(reply("Marc Dubreuil <md@solvea.example>", "Re: évaluation", bernard))
    imap_server.append(reply("Julien Lemaître <jl@quartz.example>", "Je l'envoie demain", {}))

    first = collect_imap(campaign)

    assert first.exit_code == 0, first.output
    assert summary(first) == (
        "Boîte aux lettres 127.0.0.1, dossier « INBOX » : 3 message(s) relevé(s), "
        "0 déjà traité(s), 1 sans classeur, 2 retour(s) enregistré(s)."
    )
    assert (
        "  Sans classeur — message de Julien Lemaître <jl@quartz.example>, "
        "« Je l'envoie demain », du 20/02/2026 : ignoré."
    ) in first.output.splitlines()
    statuses = status_json(campaign)
    assert {name: s["status"] for name, s in statuses.items()} == {
        "Abadie": "complete",
        "Bernard": "incomplete",
        "Chevallier": "generated",
        "Da Silva": "generated",
        "Étienne": "generated",
        "Faure": "generated",
        "Garcia": "generated",
    }
    assert statuses["Bernard"]["missing"] == [
        "Phase préparatoire du stage : intégration dans l’agence › Ponctualité (cellule D15) : "
        "non renseigné."
    ]
    assert re.fullmatch(
        r".*output/courrier/INBOX-\d+-\d+\.eml › pièce jointe « ABADIE_.*\.xlsx »",
        statuses["Abadie"]["origin"],
    )
    kept = sorted(p.name for p in (campaign / "output" / "courrier").iterdir())
    assert len(kept) == 2  # the message without a workbook is not kept

    second = collect_imap(campaign)

    assert second.exit_code == 0, second.output
    assert second.output.splitlines() == [
        "0 retour(s) enregistré(s), 0 fichier(s) refusé(s) ou illisible(s), 0 déjà collecté(s). "
        "Suivi : output/suivi.xlsx.",
        "Boîte aux lettres 127.0.0.1, dossier « INBOX » : 0 message(s) relevé(s), "
        "3 déjà traité(s), 0 sans classeur, 0 retour(s) enregistré(s).",
    ]
    assert status_json(campaign) == statuses


def test_purge__fetched_messages_of_the_purged_class__deleted(
    campaign: Path, tmp_path: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)
    abadie = filled(campaign, tmp_path, "Abadie", "Sophie Garnier")
    faure = filled(campaign, tmp_path, "Faure", "Bruno Caron")
    imap_server.append(reply("Sophie Garnier <sg@horizon.example>", "Grille Abadie", abadie))
    imap_server.append(reply("Bruno Caron <bc@mutuelle.example>", "Grille Faure", faure))
    assert collect_imap(campaign).exit_code == 0
    mail = campaign / "output" / "courrier"
    before = {p.name: p.read_bytes() for p in mail.iterdir()}
    assert len(before) == 2
    assert run(campaign, "report").exit_code == 0
    assert run(campaign, "archive", "--class", "BTS 2A").exit_code == 0
    (archived,) = (campaign / "output" / "archive").rglob("BTS_2A.zip")
    assert run(campaign, "archive", "verify", str(archived)).exit_code == 0

    purged = run(campaign, "purge", "--class", "BTS 2A", "--oui")

    assert purged.exit_code == 0, purged.output
    assert "  1 message(s) .eml (envoyés ou relevés) à leur sujet\n" in purged.output
    after = {p.name: p.read_bytes() for p in mail.iterdir()}
    assert len(after) == 1 and b"Grille Faure" in next(iter(after.values()))
    again = collect_imap(campaign).output.splitlines()[-1]
    assert again.endswith(
        "0 message(s) relevé(s), 2 déjà traité(s), 0 sans classeur, 0 retour(s) enregistré(s)."
    )


def test_collect_imap__without_mark_seen__the_server_is_left_unchanged(
    campaign: Path, tmp_path: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)
    imap_server.append(
        reply(
            "Bruno Caron <bc@mutuelle.example>",
            "Faure",
            filled(campaign, tmp_path, "Faure", "Bruno Caron"),
        )
    )
    imap_server.append(reply("Bruno Caron <bc@mutuelle.example>", "Question", {}))
    before = imap_server.flags()

    result = collect_imap(campaign)

    assert result.exit_code == 0, result.output
    assert status_json(campaign)["Faure"]["status"] == "complete"
    after = imap_server.flags()
    assert after == before
    assert set(after) == {"Faure", "Question"}  # nothing deleted
    assert all("\\Seen" not in flags for flags in after.values())


def test_collect_imap__mark_seen__marks_read_only_the_messages_that_held_a_workbook(
    campaign: Path, tmp_path: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)
    imap_server.append(
        reply(
            "Bruno Caron <bc@mutuelle.example>",
            "Faure",
            filled(campaign, tmp_path, "Faure", "Bruno Caron"),
        )
    )
    imap_server.append(reply("Bruno Caron <bc@mutuelle.example>", "Question", {}))

    result = collect_imap(campaign, "--mark-seen")

    assert result.exit_code == 0, result.output
    assert summary(result) == (
        "Boîte aux lettres 127.0.0.1, dossier « INBOX » : 2 message(s) relevé(s), "
        "0 déjà traité(s), 1 sans classeur, 1 retour(s) enregistré(s). 1 marqué(s) comme lu(s)."
    )
    flags = imap_server.flags()
    assert "\\Seen" in flags["Faure"]
    assert "\\Seen" not in flags["Question"]
    assert "\\Deleted" not in flags["Faure"]


def test_collect_imap__since__leaves_older_messages_for_a_later_fetch(
    campaign: Path, tmp_path: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)
    old = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    imap_server.append(
        reply(
            "Bruno Caron <bc@mutuelle.example>",
            "Garcia",
            filled(campaign, tmp_path, "Garcia", "Bruno Caron"),
            old,
        ),
        received=old,
    )
    imap_server.append(
        reply(
            "Bruno Caron <bc@mutuelle.example>",
            "Faure",
            filled(campaign, tmp_path, "Faure", "Bruno Caron"),
        )
    )

    recent = collect_imap(campaign, "--since", "01/02/2026")

    assert recent.exit_code == 0, recent.output
    assert summary(recent).endswith(
        ": 1 message(s) relevé(s), 0 déjà traité(s), 0 sans classeur, 1 retour(s) enregistré(s)."
    )
    assert status_json(campaign)["Garcia"]["status"] == "generated"
    assert status_json(campaign)["Faure"]["status"] == "complete"

    everything = collect_imap(campaign)

    assert summary(everything).endswith(
        ": 1 message(s) relevé(s), 1 déjà traité(s), 0 sans classeur, 1 retour(s) enregistré(s)."
    )
    assert status_json(campaign)["Garcia"]["status"] == "complete"


def test_collect_imap__folder_renumbered_by_the_server__message_id_prevents_a_second_processing(
    campaign: Path, tmp_path: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)
    folder = imap_folder_name("Stages/Évaluations")
    assert folder == "Stages/&AMk-valuations"
    message = reply(
        "Bruno Caron <bc@mutuelle.example>",
        "Faure",
        filled(campaign, tmp_path, "Faure", "Bruno Caron"),
    )
    imap_server.create(folder)
    imap_server.append(message, folder)
    first = collect_imap(campaign, "--folder", "Stages/Évaluations")
    assert first.exit_code == 0, first.output
    assert "dossier « Stages/Évaluations » : 1 message(s) relevé(s)" in summary(first)
    validity = imap_server.uidvalidity(folder)
    imap_server.delete(folder)  # the server rebuilt the folder: every UID changes
    imap_server.create(folder)
    imap_server.append(message, folder)
    assert imap_server.uidvalidity(folder) != validity

    again = collect_imap(campaign, "--folder", "Stages/Évaluations")

    assert again.exit_code == 0, again.output
    assert summary(again).endswith(
        ": 0 message(s) relevé(s), 1 déjà traité(s), 0 sans classeur, 0 retour(s) enregistré(s)."
    )


def test_collect_imap__files_and_mailbox_together__both_are_collected(
    campaign: Path, tmp_path: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)
    imap_server.append(
        reply(
            "Bruno Caron <bc@mutuelle.example>",
            "Faure",
            filled(campaign, tmp_path, "Faure", "Bruno Caron"),
        )
    )
    on_disk = fill(
        workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", _answers_for("Bruno Caron")
    )

    result = collect_imap(campaign, str(on_disk))

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-2].startswith("2 retour(s) enregistré(s), 0 fichier(s)")
    assert summary(result).endswith("1 retour(s) enregistré(s).")
    statuses = status_json(campaign)
    assert statuses["Faure"]["status"] == statuses["Garcia"]["status"] == "complete"


def test_collect_imap__message_over_the_size_limit__skipped_with_a_warning_naming_it(
    campaign: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)
    imap_server.append(
        reply("Bruno Caron <bc@mutuelle.example>", "Scan", {"scan.xlsx": bytes(MAX_MESSAGE_SIZE)})
    )

    result = collect_imap(campaign)

    assert result.exit_code == 0, result.output
    assert re.search(
        r"  Attention — message de Bruno Caron <bc@mutuelle.example>, « Scan », du 20/02/2026 : "
        r"message trop volumineux \(\d\d,\d Mo, maximum 25 Mo\) : non relevé\.",
        result.output,
    ), result.output
    assert summary(result).endswith(
        ": 0 message(s) relevé(s), 0 déjà traité(s), 0 sans classeur, 0 retour(s) enregistré(s)."
    )
    again = collect_imap(campaign)
    assert "trop volumineux" not in again.output


class CuttingRelay:
    """A loopback relay to the IMAP server that cuts the connection when the client asks
    for the `cut_at`-th message body: a server dropping the connection mid-fetch."""

    def __init__(self, upstream_port: int, cut_at: int) -> None:
        self.upstream_port = upstream_port
        self.cut_at = cut_at
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))

        def down() -> None:
            with contextlib.suppress(OSError):
                while chunk := upstream.recv(65536):
                    client.sendall(chunk)

        threading.Thread(target=down, daemon=True).start()
        asked = 0
        try:
            while data := client.recv(65536):
                asked += data.count(b"BODY.PEEK[]<")
                if asked >= self.cut_at:
                    break
                upstream.sendall(data)
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=10)


def test_collect_imap__connection_lost_mid_fetch__what_was_fetched_stays_recorded(
    campaign: Path, tmp_path: Path, imap_server: ImapServer
) -> None:
    for name in ("Abadie", "Bernard", "Chevallier"):
        tutor = "Marc Dubreuil" if name == "Bernard" else "Sophie Garnier"
        imap_server.append(
            reply(f"{tutor} <t@x.example>", name, filled(campaign, tmp_path, name, tutor))
        )
    relay = CuttingRelay(imap_server.port, cut_at=2)
    use_imap(campaign, relay.port)
    try:
        cut = collect_imap(campaign)
    finally:
        relay.close()

    assert cut.exit_code == 1
    assert cut.output.splitlines()[-1] == (
        f"Erreur : connexion au serveur de réception 127.0.0.1:{relay.port} perdue pendant la "
        "relève du dossier « INBOX » (connexion coupée par le serveur) : 1 message(s) relevé(s) "
        "avant la coupure ont été traités ; relancez « grille collect --imap » pour relever "
        "les suivants."
    )
    assert "Traceback" not in cut.output
    statuses = status_json(campaign)
    assert [statuses[n]["status"] for n in ("Abadie", "Bernard", "Chevallier")] == [
        "complete",
        "generated",
        "generated",
    ]

    use_imap(campaign, imap_server.port)  # same server, reached directly
    resumed = collect_imap(campaign)

    assert resumed.exit_code == 0, resumed.output
    assert summary(resumed).endswith(
        ": 2 message(s) relevé(s), 1 déjà traité(s), 0 sans classeur, 2 retour(s) enregistré(s)."
    )
    statuses = status_json(campaign)
    assert [statuses[n]["status"] for n in ("Abadie", "Bernard", "Chevallier")] == ["complete"] * 3


def test_collect_imap__wrong_password__french_error_without_traceback(
    campaign: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)

    result = collect_imap(campaign, password="pas le bon")

    assert result.exit_code == 1
    assert result.output.startswith(
        f"Erreur : Connexion au serveur de réception 127.0.0.1:{imap_server.port} pour "
        f"l'utilisateur « {USER} » : identifiant ou mot de passe refusé (réponse du serveur : « "
    )
    assert result.output.endswith(
        "Vérifiez la section [reception] de grille.toml (utilisateur) et le mot de passe "
        "(demandé, ou lu dans la variable GRILLE_IMAP_MOT_DE_PASSE).\n"
    )
    assert "pas le bon" not in result.output
    assert "Traceback" not in result.output


def test_collect_imap__missing_folder__names_it_and_lists_the_account_folders(
    campaign: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)
    imap_server.create(imap_folder_name("Évaluations 2026"))

    result = collect_imap(campaign, "--folder", "Stages")

    assert result.exit_code == 1
    assert result.output.startswith(
        f"Erreur : Dossier « Stages » introuvable sur 127.0.0.1 (compte « {USER} »"
    )
    assert result.output.endswith(
        "Vérifiez la section [reception] de grille.toml (dossier), ou indiquez le dossier avec "
        "--folder ; dossiers de ce compte : INBOX, Évaluations 2026.\n"
    )


def test_collect_imap__server_unreachable__french_error(campaign: Path) -> None:
    port = _free_port()  # nothing listens there
    use_imap(campaign, port)

    result = collect_imap(campaign)

    assert result.exit_code == 1
    assert result.output == (
        f"Erreur : Connexion au serveur de réception 127.0.0.1:{port} impossible : connexion "
        "refusée (serveur arrêté, ou mauvais port). Vérifiez la section [reception] de "
        "grille.toml (serveur, port, securite).\n"
    )


def test_collect_imap__ssl_on_a_plain_text_server__tls_failure_named(
    campaign: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port, security="ssl")

    result = collect_imap(campaign)

    assert result.exit_code == 1
    assert result.output == (
        f"Erreur : Connexion au serveur de réception 127.0.0.1:{imap_server.port} impossible : "
        "échec de la négociation TLS (« securite » et « port » cohérents ?). Vérifiez la "
        "section [reception] de grille.toml (serveur, port, securite).\n"
    )


def test_collect_imap__starttls_not_offered__french_error(
    campaign: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port, security="starttls")

    result = collect_imap(campaign)

    assert result.exit_code == 1
    assert result.output == (
        f"Erreur : Connexion au serveur de réception 127.0.0.1:{imap_server.port} impossible : "
        'le serveur ne propose pas STARTTLS (essayez securite = "ssl" et port = 993). '
        "Vérifiez la section [reception] de grille.toml.\n"
    )


def test_collect_imap__reception_not_configured__says_which_keys_to_fill(campaign: Path) -> None:
    result = collect_imap(campaign)

    assert result.exit_code == 1
    assert result.output == (
        "Erreur : Boîte aux lettres non configurée : renseignez « serveur » et « utilisateur » "
        'dans la section [reception] de grille.toml (exemple : serveur = "imap.ac-academie.fr", '
        'utilisateur = "prenom.nom@ac-academie.fr" ; au besoin port, securite, dossier, depuis). '
        "Le mot de passe n'y est jamais écrit : il est demandé, ou lu dans la variable "
        "GRILLE_IMAP_MOT_DE_PASSE.\n"
    )


def test_collect__neither_paths_nor_imap__usage_error_exit_2(campaign: Path) -> None:
    result = run(campaign, "collect")

    assert result.exit_code == 2
    assert (
        "Erreur : indiquez les fichiers ou dossiers à lire, ou --imap pour relever la boîte "
        "aux lettres."
    ) in result.output


def test_collect__mailbox_options_without_imap__usage_error_exit_2(campaign: Path) -> None:
    result = run(campaign, "collect", "retours", "--mark-seen")

    assert result.exit_code == 2
    assert (
        "Erreur : --since, --folder et --mark-seen ne s'emploient qu'avec --imap." in result.output
    )

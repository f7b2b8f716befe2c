"""Returns from a mailbox: the new messages of an IMAP folder, collected like files.

`collect_mailbox` logs in (TLS unless `securite = "aucune"`), opens the folder read-only
(read-write only to mark messages as read), searches the messages received since a
date, skips those already processed (by UID, or by Message-ID when the folder's
UIDVALIDITY changed), fetches the others without marking them as read, keeps each one
as an .eml file in output/courrier/ and hands them to `collect.collect`, exactly as if
the teacher had given those files. Every processed message is recorded in the
`fetched_messages` table. Nothing on the server is ever deleted or moved.

Server data is untrusted: sizes are capped, and no name it sends becomes a path.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.policy
import imaplib
import os
import re
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from pipeline import collect as collect_ops
from pipeline import state
from pipeline.campaign import Campaign
from pipeline.errors import GrilleError, Problem, french_os_error
from pipeline.files import atomic_write_bytes, safe_name
from pipeline.kinds import MatchKind
from pipeline.network import network_fault
from pipeline.returns import MiB, printable
from pipeline.settings import CONFIG_NAME, ImapSettings

PASSWORD_VARIABLE = "GRILLE_IMAP_MOT_DE_PASSE"
MAX_MESSAGE_SIZE = 25 * MiB  # as for a file given to `collect`
MAX_HEADER_SIZE = 16 * 1024
MAIL_FOLDER = "courrier"  # under output/: the messages read, as .eml files
TIMEOUT = 30  # seconds without an answer from the server

RETURNS = "returns"  # had a workbook (or something that looked like one): collected
NO_WORKBOOK = "no_workbook"  # no workbook attached: ignored
TOO_LARGE = "too_large"  # over MAX_MESSAGE_SIZE: not fetched
DUPLICATE = "duplicate"  # same Message-ID as a message already processed

_FIX = f"Vérifiez la section [reception] de {CONFIG_NAME}"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CHUNK = 200  # UIDs per FETCH or STORE command
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_LIST_LINE = re.compile(rb'^\((?P<flags>[^)]*)\) (?:NIL|"(?:[^"\\]|\\.)*"|\S+) (?P<name>.*)$')
_LOST = (OSError, EOFError, imaplib.IMAP4.abort)


class InboxError(GrilleError):
    """The mailbox cannot be reached, opened or read."""


@dataclass
class MailboxResult:
    """What `collect --imap` did: the collect result, and what became of the messages."""

    collected: collect_ops.CollectResult
    mailbox: str  # « imap.example.fr, dossier « INBOX » », as the teacher reads it
    read: int = 0  # new messages fetched and handed to collect
    already: int = 0  # messages processed by an earlier run (or copies of them)
    without_workbook: list[str] = field(default_factory=list)  # described, ignored
    returns: int = 0  # returns recorded from the messages
    marked_seen: int = 0
    interrupted: str = ""  # why the fetch stopped early, in French; "" when it did not

    @property
    def failed(self) -> bool:
        return self.collected.failed or bool(self.interrupted)


@dataclass
class _Message:
    """One new message of the folder."""

    uid: int
    message_id: str
    description: str  # « message de …, « objet », du jj/mm/aaaa »
    outcome: str = ""  # decided when fetched (too large, duplicate) or once collected
    path: Path | None = None  # the .eml written, as handed to collect


@dataclass
class _Fetch:
    uidvalidity: int
    messages: list[_Message] = field(default_factory=list)
    already: int = 0  # UIDs processed by an earlier run
    problems: list[Problem] = field(default_factory=list)
    interrupted: str = ""


def mailbox_settings(
    configured: ImapSettings, *, folder: str | None = None, since: date | None = None
) -> ImapSettings:
    """The [reception] settings with the command's overrides; `InboxError` when incomplete."""
    required = {"serveur": configured.host, "utilisateur": configured.user}
    missing = [key for key, value in required.items() if not value]
    if missing:
        keys = " et ".join(f"« {key} »" for key in missing)
        raise InboxError(
            f"Boîte aux lettres non configurée : renseignez {keys} dans la section [reception] "
            f'de {CONFIG_NAME} (exemple : serveur = "imap.ac-academie.fr", utilisateur = '
            '"prenom.nom@ac-academie.fr" ; au besoin port, securite, dossier, depuis). '
            f"Le mot de passe n'y est jamais écrit : il est demandé, ou lu dans la variable "
            f"{PASSWORD_VARIABLE}."
        )
    overrides: dict[str, Any] = {}
    if folder is not None and folder.strip():
        overrides["folder"] = folder.strip()
    if since is not None:
        overrides["since"] = since
    return replace(configured, **overrides)


def describe_mailbox(settings: ImapSettings) -> str:
    """« imap.example.fr, dossier « INBOX » »."""
    return f"{settings.host}, dossier « {printable(settings.folder)} »"


def collect_mailbox(
    campaign: Campaign,
    settings: ImapSettings,
    password: str,
    *,
    paths: Sequence[Path] = (),
    mark_seen: bool = False,
    jobs: int = 1,
    today: date | None = None,
    progress: Callable[[int], None] | None = None,
    timeout: float = TIMEOUT,
) -> MailboxResult:
    """Fetch the folder's new messages and collect them together with the files of `paths`.

    Connection, login and folder faults raise `InboxError` before anything is collected;
    a connection lost while fetching collects what was fetched and says so in
    `interrupted`. With `mark_seen`, the messages that held a workbook are marked as read.
    """
    client = _connect(settings, password, timeout)
    try:
        fetch = _fetch_new(client, campaign, settings, writable=mark_seen)
        if not mark_seen:
            _logout(client)
        emls = [m.path for m in fetch.messages if m.path is not None]
        collected = collect_ops.collect(
            campaign, [*paths, *emls], jobs=jobs, today=today, progress=progress
        )
        result = _account(campaign, settings, fetch, collected)
        if mark_seen and not fetch.interrupted:
            seen = [m.uid for m in fetch.messages if m.outcome == RETURNS]
            result.marked_seen = _mark_seen(client, settings, seen, collected.problems)
    finally:
        _logout(client)
    return result


# ------------------------------------------------------------------ connection


def _reason(exc: BaseException) -> str:
    """A short French description of a network or IMAP failure."""
    network = network_fault(exc)
    if network is not None:
        return network
    if isinstance(exc, imaplib.IMAP4.abort):
        return "connexion coupée par le serveur"
    if isinstance(exc, imaplib.IMAP4.error):
        return f"réponse du serveur : « {_server_text(exc)} »"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _server_text(exc: BaseException) -> str:
    """What the server said (its own words, untrusted: printable and short)."""
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = printable(" ".join(text.split()))
    return text[:200] + ("…" if len(text) > 200 else "")


def _quoted(text: str) -> str:
    """An IMAP quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _connect(settings: ImapSettings, password: str, timeout: float) -> imaplib.IMAP4:
    """An open, logged-in connection; a French `InboxError` otherwise."""
    where = f"{settings.host}:{settings.port}"
    client: imaplib.IMAP4 | None = None
    context = ssl.create_default_context()
    try:
        if settings.security == "ssl":
            client = imaplib.IMAP4_SSL(
                settings.host, settings.port, ssl_context=context, timeout=timeout
            )
        else:
            client = imaplib.IMAP4(settings.host, settings.port, timeout=timeout)
            if settings.security != "aucune":  # anything unknown gets STARTTLS, never plain
                if "STARTTLS" not in client.capabilities:
                    _logout(client)
                    raise InboxError(
                        f"Connexion au serveur de réception {where} impossible : le serveur ne "
                        'propose pas STARTTLS (essayez securite = "ssl" et port = 993). '
                        f"{_FIX}."
                    )
                client.starttls(ssl_context=context)
    except imaplib.IMAP4.error as exc:
        _logout(client)
        raise InboxError(
            f"Connexion au serveur de réception {where} impossible : ce n'est pas un serveur "
            f"IMAP, ou il a coupé la connexion ({_reason(exc)}). {_FIX} (serveur, port, "
            "securite)."
        ) from exc
    except OSError as exc:
        _logout(client)
        raise InboxError(
            f"Connexion au serveur de réception {where} impossible : {_reason(exc)}. "
            f"{_FIX} (serveur, port, securite)."
        ) from exc
    try:
        _login(client, settings.user, password)
    except (*_LOST, imaplib.IMAP4.error) as exc:
        _logout(client)
        if isinstance(exc, _LOST):
            fault = f"connexion perdue ({_reason(exc)})"
        else:
            fault = f"identifiant ou mot de passe refusé ({_reason(exc)})"
        raise InboxError(
            f"Connexion au serveur de réception {where} pour l'utilisateur « {settings.user} » : "
            f"{fault}. {_FIX} (utilisateur) et le mot de passe (demandé, ou lu dans la "
            f"variable {PASSWORD_VARIABLE})."
        ) from exc
    return client


def _login(client: imaplib.IMAP4, user: str, password: str) -> None:
    """LOGIN, or AUTHENTICATE PLAIN when the user or password is not ASCII."""
    if user.isascii() and password.isascii():
        client.login(_quoted(user), password)
        return
    credentials = b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8")
    client.authenticate("PLAIN", lambda _challenge: credentials)


def _logout(client: imaplib.IMAP4 | None) -> None:
    """Say goodbye if the connection still works; close it in any case (idempotent)."""
    if client is None or client.state == "LOGOUT":
        return
    with contextlib.suppress(OSError, EOFError, imaplib.IMAP4.error):
        client.logout()  # closes the socket even when LOGOUT itself fails


# ------------------------------------------------------------------ folder names


def imap_folder_name(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501): « Évaluations » → « &AMk-valuations »."""
    encoded: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            encoded.append("&" + raw.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if " " <= char <= "~":
            flush()
            encoded.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(encoded)


def _decode_folder_name(name: str) -> str:
    def shifted(match: re.Match[str]) -> str:
        chunk = match.group(1)
        if not chunk:
            return "&"
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        try:
            return base64.b64decode(padded).decode("utf-16-be", "replace")
        except (binascii.Error, ValueError):
            return match.group(0)

    return re.sub(r"&([A-Za-z0-9+,]*)-", shifted, name)


def _folder_names(client: imaplib.IMAP4) -> list[str]:
    """The account's folders, as the teacher spells them (best effort: [] on any fault)."""
    try:
        typ, data = client.list()
    except (*_LOST, imaplib.IMAP4.error):
        return []
    names: list[str] = []
    for item in data if typ == "OK" else []:
        literal: bytes | None = None  # a name sent as a literal follows its line
        if isinstance(item, tuple) and len(item) == 2:
            line, literal = bytes(item[0]), bytes(item[1])
        elif isinstance(item, bytes):
            line = item
        else:
            continue
        match = _LIST_LINE.match(line)
        if match is None or b"\\noselect" in match.group("flags").lower():
            continue
        raw = literal if literal is not None else match.group("name")
        if literal is None and len(raw) >= 2 and raw.startswith(b'"') and raw.endswith(b'"'):
            raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
        names.append(printable(_decode_folder_name(raw.decode("utf-8", "replace")))[:80])
    return sorted(set(names))[:20]


def _open_folder(client: imaplib.IMAP4, settings: ImapSettings, *, writable: bool) -> int:
    """SELECT (to mark as read) or EXAMINE the folder; its UIDVALIDITY."""
    folder = printable(settings.folder)
    try:
        typ, data = client.select(_quoted(imap_folder_name(settings.folder)), readonly=not writable)
    except imaplib.IMAP4.readonly as exc:
        raise InboxError(
            f"Dossier « {folder} » de {settings.host} en lecture seule : impossible de marquer "
            "les messages comme lus. Relancez sans --mark-seen."
        ) from exc
    except (*_LOST, imaplib.IMAP4.error) as exc:
        raise InboxError(
            f"Ouverture du dossier « {folder} » sur {settings.host} impossible : "
            f"{_reason(exc)}. Relancez la commande ; si cela se reproduit, {_FIX.lower()}."
        ) from exc
    if typ != "OK":
        said = _server_text(imaplib.IMAP4.error(data[-1] if data else b""))
        known = _folder_names(client)
        listing = f" ; dossiers de ce compte : {', '.join(known)}" if known else ""
        raise InboxError(
            f"Dossier « {folder} » introuvable sur {settings.host} (compte « {settings.user} », "
            f"réponse du serveur : « {said} »). {_FIX} (dossier), ou indiquez le dossier avec "
            f"--folder{listing}."
        )
    _, values = client.response("UIDVALIDITY")
    value = values[0] if values else None
    return int(value) if isinstance(value, bytes) and value.strip().isdigit() else 0


# ------------------------------------------------------------------ fetching


def _imap_date(day: date) -> str:
    """01-Mar-2027: IMAP's date, with English month names whatever the locale."""
    return f"{day.day:02d}-{_MONTHS[day.month - 1]}-{day.year}"


def _chunks(uids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(uids), _CHUNK):
        yield uids[start : start + _CHUNK]


def _uid_set(uids: Iterable[int]) -> str:
    return ",".join(str(uid) for uid in uids)


def _search(client: imaplib.IMAP4, settings: ImapSettings) -> list[int]:
    """UIDs of the messages received since `settings.since` (all when no date)."""
    criteria = ("SINCE", _imap_date(settings.since)) if settings.since else ("ALL",)
    typ, data = client.uid("SEARCH", *criteria)
    if typ != "OK":
        raise imaplib.IMAP4.error(data[-1] if data else b"SEARCH")
    found = {
        int(token)
        for line in data
        if isinstance(line, bytes)
        for token in line.split()
        if token.isdigit()
    }
    return sorted(found)


def _fetch_answers(data: list[Any], *, headers: bool) -> dict[int, tuple[bytes, bytes]]:
    """uid → (attributes, literal) in a UID FETCH answer; unsolicited lines are ignored."""
    answers: dict[int, tuple[bytes, bytes]] = {}
    for index, item in enumerate(data):
        if isinstance(item, tuple) and len(item) == 2:
            after = data[index + 1] if index + 1 < len(data) else b""
            attributes = bytes(item[0]) + b" " + (after if isinstance(after, bytes) else b"")
            literal = bytes(item[1])
        elif isinstance(item, bytes) and headers and _SIZE.search(item):
            attributes, literal = item, b""  # header fields sent as a quoted string
        else:
            continue
        uid = _UID.search(attributes)
        if uid is not None and b"BODY[" in attributes:
            answers.setdefault(int(uid.group(1)), (attributes, literal))
    return answers


def _header(headers: Message | None, name: str, limit: int = 80) -> str:
    try:
        value = headers.get(name) if headers is not None else None
        text = printable(" ".join(str(value).split())) if value is not None else ""
    except Exception:  # hostile header: the parser raises ValueError, IndexError…
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(headers: Message | None) -> str:
    """« message de …, « objet », du jj/mm/aaaa »: how the teacher finds it in the mailbox."""
    sender = _header(headers, "From") or "expéditeur inconnu"
    subject = _header(headers, "Subject")
    parts = [f"message de {sender}", f"« {subject} »" if subject else "sans objet"]
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        parts.append(f"du {parsedate_to_datetime(_header(headers, 'Date')):%d/%m/%Y}")
    return ", ".join(parts)


def _new_messages(
    client: imaplib.IMAP4, uids: Sequence[int], known_ids: set[str]
) -> Iterator[tuple[_Message, int]]:
    """(message, size) from the headers of `uids`; copies of processed ones are DUPLICATE."""
    section = f"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)]<0.{MAX_HEADER_SIZE}>"
    for chunk in _chunks(uids):
        typ, data = client.uid("FETCH", _uid_set(chunk), f"(UID RFC822.SIZE {section})")
        if typ != "OK":
            raise imaplib.IMAP4.error(data[-1] if data else b"FETCH")
        answers = _fetch_answers(data, headers=True)
        for uid in chunk:
            if uid not in answers:  # deleted meanwhile by someone else
                continue
            attributes, raw = answers[uid]
            try:
                headers: Message | None = BytesParser(policy=email.policy.default).parsebytes(
                    raw[:MAX_HEADER_SIZE], headersonly=True
                )
            except Exception:  # the parser on hostile input
                headers = None
            message = _Message(uid, _header(headers, "Message-ID", 500), _describe(headers))
            size = _SIZE.search(attributes)
            if message.message_id and message.message_id in known_ids:
                message.outcome = DUPLICATE
            known_ids.add(message.message_id)
            yield message, int(size.group(1)) if size else 0


def _fetch_body(client: imaplib.IMAP4, uid: int) -> bytes | None:
    """The whole message, at most MAX_MESSAGE_SIZE + 1 bytes, without setting \\Seen."""
    typ, data = client.uid("FETCH", str(uid), f"(UID BODY.PEEK[]<0.{MAX_MESSAGE_SIZE + 1}>)")
    if typ != "OK":
        raise imaplib.IMAP4.error(data[-1] if data else b"FETCH")
    answer = _fetch_answers(data, headers=False).get(uid)
    return None if answer is None else answer[1]


def _too_large(message: _Message, size: int) -> Problem:
    shown = f"{size / MiB:.1f}".replace(".", ",") + " Mo"
    return Problem(
        "message_too_large",
        f"message trop volumineux ({shown}, maximum {MAX_MESSAGE_SIZE // MiB} Mo) : non relevé. "
        "Enregistrez la pièce jointe depuis votre messagerie et donnez-la à « grille collect ».",
        file=message.description,
        severity="warning",
    )


def _mailbox_key(settings: ImapSettings) -> tuple[str, str, str]:
    """(server, user, folder) as recorded; INBOX is case-insensitive in IMAP."""
    folder = "INBOX" if settings.folder.upper() == "INBOX" else settings.folder
    return settings.host.lower(), settings.user, folder


def _known(
    campaign: Campaign, settings: ImapSettings, uidvalidity: int
) -> tuple[set[int], set[str]]:
    """UIDs already processed in this folder (same UIDVALIDITY), and their Message-IDs."""
    key = _mailbox_key(settings)
    return (
        state.fetched_uids(campaign.db, key, uidvalidity),
        state.fetched_message_ids(campaign.db, key),
    )


def _fetch_new(
    client: imaplib.IMAP4, campaign: Campaign, settings: ImapSettings, *, writable: bool
) -> _Fetch:
    """Search, skip what was processed, write each new message as an .eml file."""
    uidvalidity = _open_folder(client, settings, writable=writable)
    fetch = _Fetch(uidvalidity)
    known_uids, known_ids = _known(campaign, settings, uidvalidity)
    where = f"{settings.host}:{settings.port}"
    folder = printable(settings.folder)
    try:
        uids = _search(client, settings)
    except (*_LOST, imaplib.IMAP4.error) as exc:
        raise InboxError(
            f"Recherche des messages du dossier « {folder} » sur {where} impossible : "
            f"{_reason(exc)}. Relancez la commande."
        ) from exc
    new = [uid for uid in uids if uid not in known_uids]
    fetch.already = len(uids) - len(new)
    mail_dir = campaign.workspace.output_dir / MAIL_FOLDER
    stem = safe_name(settings.folder)
    try:
        for message, size in _new_messages(client, new, known_ids):
            fetch.messages.append(message)
            if message.outcome:
                continue
            if size > MAX_MESSAGE_SIZE:
                message.outcome = TOO_LARGE
                fetch.problems.append(_too_large(message, size))
                continue
            raw = _fetch_body(client, message.uid)
            if raw is None:  # deleted meanwhile: nothing to record
                fetch.messages.pop()
                continue
            if len(raw) > MAX_MESSAGE_SIZE:  # the announced size was wrong
                message.outcome = TOO_LARGE
                fetch.problems.append(_too_large(message, len(raw)))
                continue
            path = mail_dir / f"{stem}-{uidvalidity}-{message.uid}.eml"
            try:
                atomic_write_bytes(path, raw)
            except OSError as exc:  # not the network: the campaign folder
                raise InboxError(
                    f"Écriture de {path} impossible : {french_os_error(exc)}. Libérez de la "
                    "place ou vérifiez les droits du dossier de la campagne, puis relancez."
                ) from exc
            message.path = _as_given(path)
    except (*_LOST, imaplib.IMAP4.error) as exc:
        if fetch.messages and fetch.messages[-1].path is None and not fetch.messages[-1].outcome:
            fetch.messages.pop()  # the message being fetched when the connection was lost
        done = sum(1 for m in fetch.messages if m.path is not None)
        fault = "perdue" if isinstance(exc, _LOST) else "interrompue par le serveur"
        fetch.interrupted = (
            f"connexion au serveur de réception {where} {fault} pendant la relève du dossier "
            f"« {folder} » ({_reason(exc)}) : {done} message(s) relevé(s) avant la coupure "
            "ont été traités ; relancez « grille collect --imap » pour relever les suivants."
        )
    return fetch


def _as_given(path: Path) -> Path:
    """`path` relative to the current folder when inside it: shorter origins to read."""
    with contextlib.suppress(ValueError, OSError):
        return path.relative_to(Path.cwd())
    return path


# ------------------------------------------------------------------ after collect


def _origin(path: Path) -> str:
    """The origin `returns.gather` gives a file handed to it as `path`."""
    return printable(os.fsdecode(path))


def _account(
    campaign: Campaign,
    settings: ImapSettings,
    fetch: _Fetch,
    collected: collect_ops.CollectResult,
) -> MailboxResult:
    """Sort the messages by what collect found in them, forget the .eml files without a
    workbook and record every message, in one transaction."""
    by_origin = {_origin(m.path): m for m in fetch.messages if m.path is not None}
    kept: list[Problem] = []
    for problem in collected.problems:
        message = by_origin.get(problem.file)
        if message is not None and problem.code == "no_workbook":
            message.outcome = NO_WORKBOOK
        else:
            kept.append(problem)
    collected.problems = fetch.problems + kept
    copies = sum(1 for m in fetch.messages if m.outcome == DUPLICATE)
    result = MailboxResult(
        collected,
        describe_mailbox(settings),
        already=fetch.already + copies,
        interrupted=fetch.interrupted,
    )
    root = campaign.workspace.root
    rows = []
    for message in fetch.messages:
        stored = ""
        if message.path is not None:
            result.read += 1
            if message.outcome == NO_WORKBOOK:
                result.without_workbook.append(message.description)
                message.path.unlink(missing_ok=True)
            else:
                message.outcome = RETURNS
                stored = message.path.resolve().relative_to(root).as_posix()
        rows.append((message.uid, message.message_id, message.outcome, stored))
    result.returns = sum(
        1
        for r in collected.recorded
        if r.outcome is not None
        and r.outcome.match != MatchKind.REJECTED
        and r.origin.split(" › ", 1)[0] in by_origin
    )
    state.record_fetched_messages(campaign.db, _mailbox_key(settings), fetch.uidvalidity, rows)
    return result


def _mark_seen(
    client: imaplib.IMAP4, settings: ImapSettings, uids: Sequence[int], problems: list[Problem]
) -> int:
    """Set \\Seen on `uids` (nothing else changes); a failure is a warning, not an error."""
    marked = 0
    try:
        for chunk in _chunks(uids):
            typ, data = client.uid("STORE", _uid_set(chunk), "+FLAGS.SILENT", "(\\Seen)")
            if typ != "OK":
                raise imaplib.IMAP4.error(data[-1] if data else b"STORE")
            marked += len(chunk)
    except (*_LOST, imaplib.IMAP4.error) as exc:
        problems.append(
            Problem(
                "mark_seen_failed",
                f"{len(uids) - marked} message(s) relevé(s) n'ont pas pu être marqués comme lus "
                f"({_reason(exc)}) ; ils sont bien enregistrés.",
                file=describe_mailbox(settings),
                severity="warning",
            )
        )
    return marked

"""Gather returned workbooks from files, folders, mails, mailboxes and zip archives.

A file's type is decided from its bytes, never from its name. Gathering yields one
`Candidate` per workbook and one `Problem` per thing that cannot be used, and writes
nothing (except LibreOffice's temporary files when converting .ods/.xls).
"""

from __future__ import annotations

import codecs
import email.errors
import email.policy
import hashlib
import importlib
import io
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import Problem, french_os_error
from pipeline.files import atomic_write_bytes
from pipeline.safe_zip import SafeZip, UnsafeFile

MiB = 1024 * 1024
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
CONVERSION_TIMEOUT = 60
MAX_NAME_LENGTH = 120
_MAX_ZIPS = 2  # an archive inside an archive, no deeper
_MAX_DEPTH = 4  # containers of any kind (message, archive) inside each other
_MAX_FOLDERS = 100  # folders inside each other
_MAIL_HEADERS = {
    "from", "to", "subject", "received", "mime-version", "content-type",
    "return-path", "date", "message-id",
}  # fmt: skip
_HEADER_LINE = re.compile(r"^[!-9;-~]+:")
_MBOX_SEPARATOR = re.compile(rb"^From [^\n]*\n", re.MULTILINE)
_TNEF_MAGIC = b"\x78\x9f\x3e\x22"
_BOOKS = (".xlsx", ".xlsm", ".xls", ".ods", ".csv", ".zip", ".eml", ".msg")
_WANTED_IN_MAIL = {"xlsx", "ods", "xls", "zip", "encrypted", "msg"}
_BASE64_DEFECTS = (
    email.errors.InvalidBase64PaddingDefect,
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64LengthDefect,
)
_FORMATS = {"ods": ".ods", "xls": ".xls (ancien format Excel)"}
_LOOKS_LIKE = {
    "text": "du texte (CSV ?)",
    "html": "une page web (HTML) ou du XML",
    "pdf": "un document PDF",
    "unknown": "des données d'un type inconnu",
    "package": "un document Office ou OpenDocument, pas un classeur .xlsx (Word ? .xlsb ?)",
}
_RESEND = "demandez au tuteur de renvoyer le classeur"
_MESSAGES = {
    "not_found": "fichier ou dossier introuvable : vérifiez le chemin.",
    "unreadable": "illisible ({why}).",
    "skipped_special": "ignoré : ce n'est pas un fichier ordinaire (lien symbolique, tube…).",
    "too_large": "trop volumineux ({size}, maximum {limit}) : "
    "ce n'est pas un classeur rempli par un tuteur.",
    "empty_file": f"fichier vide (0 octet) : {_RESEND}.",
    "not_a_workbook": "ce n'est pas un classeur Excel : il contient {what}. "
    f"Si c'est un retour de tuteur, {_RESEND} au format .xlsx.",
    "encrypted": f"classeur protégé par un mot de passe : {_RESEND} sans mot de passe.",
    "needs_conversion": "ce classeur est au format {what} : ouvrez-le dans LibreOffice ou "
    "Excel et enregistrez-le en .xlsx, ou installez LibreOffice pour que grille le convertisse.",
    "conversion_failed": "LibreOffice n'a pas pu convertir ce classeur au format {what} : "
    f"ouvrez-le et enregistrez-le en .xlsx, ou {_RESEND} au format .xlsx.",
    "unsafe_file": "{why}",
    "damaged_file": "{why}",
    "damaged_mail": "message illisible ou endommagé.",
    "damaged_attachment": f"pièce jointe incomplète ou endommagée (message tronqué ?) : {_RESEND}.",
    "no_workbook": "aucun classeur en pièce jointe : demandez au tuteur de joindre le classeur.",
    "empty_archive": "archive sans aucun fichier : rien à lire.",
    "too_deep": "trop d'archives ou de messages imbriqués les uns dans les autres : "
    "extrayez-les d'abord.",
    "outlook_attachment": "pièce jointe au format propre à Outlook (winmail.dat) : ouvrez le "
    "message dans Outlook et enregistrez le classeur, ou demandez au tuteur de le renvoyer.",
    "msg_unsupported": "message Outlook (.msg) : ouvrez-le dans Outlook, enregistrez la pièce "
    "jointe et donnez le classeur à grille (ou installez le module Python extract-msg).",
}
_WARNINGS = {"skipped_special", "no_workbook", "empty_archive"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class Candidate:
    """One returned workbook: where it came from and its .xlsx bytes."""

    origin: str
    name: str
    data: bytes = field(repr=False)
    sha256: str
    original: bytes = field(repr=False)
    converted_from: str = ""


Found = Candidate | Problem


def sniff(data: bytes) -> str:
    """The type of a file from its bytes: xlsx, ods, zip, xls, encrypted, eml, mbox, msg,
    pdf, empty, text or unknown."""
    if not data:
        return "empty"
    if data.startswith(b"PK"):
        return _sniff_zip(data)
    if data.startswith(OLE2_MAGIC):
        return _sniff_ole(data)
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"From "):
        return "mbox"
    if _looks_like_mail(data):
        return "eml"
    return "text" if _looks_like_text(data) else "unknown"


def _sniff_zip(data: bytes) -> str:
    try:
        archive = SafeZip(data, "", strict_names=False)
        names = {name.lower() for name in archive.names()}
        if "[content_types].xml" in names and "xl/workbook.xml" in names:
            return "xlsx"
        mime = archive.read_optional("mimetype", max_size=200) or b""
    except (UnsafeFile, KeyError):
        return "zip"
    return "ods" if mime.startswith(b"application/vnd.oasis.opendocument.spreadsheet") else "zip"


def _sniff_ole(data: bytes) -> str:
    """Encrypted OOXML, Outlook message or old .xls, from the OLE2 stream names."""
    try:
        with importlib.import_module("olefile").OleFileIO(io.BytesIO(data)) as ole:
            names = {entry[0].lower() for entry in ole.listdir(True, True)}
    except Exception:  # no olefile, or a damaged directory: search the UTF-16 names
        names = {n.lower() for n in ("EncryptedPackage", "__substg1.0_", "Workbook")}
        names = {n for n in names if n.encode("utf-16-le") in data.lower()}
    if "encryptedpackage" in names:
        return "encrypted"
    if any(name.startswith("__substg1.0_") for name in names):
        return "msg"
    if not names & {"workbook", "book"}:
        return "unknown"
    try:  # an .xls with a password (FILEPASS record)
        office = importlib.import_module("msoffcrypto").OfficeFile(io.BytesIO(data))
        return "encrypted" if office.is_encrypted() else "xls"
    except Exception:  # no msoffcrypto, or a damaged file
        return "xls"


def _looks_like_mail(data: bytes) -> bool:
    headers: list[str] = []
    for line in data[:8192].decode("latin-1").splitlines()[:60]:
        if not line:
            break
        if line[0] not in " \t" or not headers:
            if not _HEADER_LINE.match(line):
                return False
            headers.append(line.split(":", 1)[0].lower())
    return len(headers) >= 2 and bool(_MAIL_HEADERS.intersection(headers[:20]))


def _looks_like_text(data: bytes) -> bool:
    head = data[:65536]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    try:  # not final when the window cuts the data: a cut character is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=len(data) == len(head))
    except UnicodeDecodeError:
        text = head.decode("cp1252", errors="replace")
    bad = sum(1 for char in text if char == "\ufffd" or (char < " " and char not in "\t\n\r\f"))
    return bad <= len(text) // 100


def printable(text: str) -> str:
    """`text` without control/format characters; undecodable bytes become U+FFFD."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(char for char in text if not unicodedata.category(char).startswith("C"))


def clean_name(raw: str | None, fallback: str = "sans_nom") -> str:
    """A display file name: last path component, printable, at most 120 characters."""
    name = printable(re.split(r"[\\/]", raw or "")[-1]).strip()
    if name in ("", ".", ".."):
        name = fallback
    if len(name) > MAX_NAME_LENGTH:
        stem, suffix = os.path.splitext(name)
        suffix = suffix if len(suffix) <= 10 else ""
        name = stem[: MAX_NAME_LENGTH - len(suffix)] + suffix
    return name


def _display(path: Path) -> str:
    return printable(os.fsdecode(path))


def _safely(read: Callable[[], _T], default: _T) -> _T:
    """Read a header or payload of an untrusted message; any exception gives `default`."""
    try:
        return read()
    except Exception:  # header tricks raise ValueError, TypeError, IndexError…
        return default


def _read_prefix(path: Path, size: int, *, follow: bool) -> bytes | None:
    """At most `size` bytes of a regular file (None if it is not one), never blocking."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags if follow else flags | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read(size) if stat.S_ISREG(os.fstat(fd).st_mode) else None


def _size(count: int) -> str:
    """A size as the user reads it: « 512 Ko », « 31,2 Mo »."""
    if count < MiB:
        return f"{count / 1024:.0f} Ko"
    return f"{count / MiB:.1f}".replace(".", ",").removesuffix(",0") + " Mo"


def _why(exc: OSError) -> str:
    return french_os_error(exc)


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _problem(code: str, origin: str, **details: Any) -> Problem:
    severity = "warning" if code in _WARNINGS else "error"
    return Problem(code, _MESSAGES[code].format(**details), file=origin, severity=severity)


def _unsafe(exc: UnsafeFile, origin: str) -> Problem:
    return _problem("damaged_file" if exc.damaged else "unsafe_file", origin, why=exc.reason)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _or(found: Iterable[Iterable[Found]], problem: Problem | None) -> Iterator[Found]:
    """Everything `found` yields, or `problem` alone when that is nothing."""
    empty = True
    for items in found:
        for item in items:
            empty = False
            yield item
    if empty and problem is not None:
        yield problem


class _Gatherer:
    def __init__(self, max_file_size: int) -> None:
        self.limit = max_file_size

    def path(self, path: Path, *, top: bool = False, mail: bool = False) -> Iterator[Found]:
        """A file or folder; symlinks are followed only when the user named them."""
        origin = _display(path)
        try:
            info = path.stat() if top else path.lstat()
            size = info.st_size
            is_dir = stat.S_ISDIR(info.st_mode)
            regular = stat.S_ISREG(info.st_mode)
            data = _read_prefix(path, min(size, self.limit) + 1, follow=top) if regular else None
        except FileNotFoundError:
            yield _problem("not_found", origin)
            return
        except OSError as exc:
            yield _problem("unreadable", origin, why=_why(exc))
            return
        if is_dir:
            yield from self.folder(path)
        elif data is None:
            yield _problem("skipped_special", origin)
        elif size > self.limit or len(data) > self.limit:
            yield _problem("too_large", origin, size=_size(size), limit=_size(self.limit))
        elif mail:
            yield from self.message(data, origin, 0, alone=False)
        else:
            yield from self.blob(data, origin, clean_name(os.fsdecode(path.name)))

    def folder(self, path: Path) -> Iterator[Found]:
        """Every file, sorted; a Maildir (cur/ new/ tmp/) is read as messages."""
        if len(path.parts) > _MAX_FOLDERS:
            yield _problem("too_deep", _display(path))
            return
        maildir = all(_is_dir(path / sub) for sub in ("cur", "new", "tmp"))
        names: list[str] = []
        try:
            for sub in ("new", "cur") if maildir else ("",):
                with os.scandir(path / sub) as scan:
                    names += sorted(os.path.join(sub, entry.name) for entry in scan)
        except OSError as exc:
            yield _problem("unreadable", _display(path), why=_why(exc))
            return
        visible = [name for name in names if not os.path.basename(name).startswith((".", "~$"))]
        found = (self.path(path / name, mail=maildir) for name in visible)
        yield from _or(found, _problem("no_workbook", _display(path)) if maildir else None)

    def blob(
        self, data: bytes, origin: str, name: str, depth: int = 0, zips: int = 0
    ) -> Iterator[Found]:
        """Bytes whose type is sniffed: a workbook, a container, or a problem."""
        kind = sniff(data)
        if kind == "xlsx":
            try:
                SafeZip(data, origin)
                yield Candidate(origin, name, data, _sha256(data), data)
            except UnsafeFile as exc:
                yield _unsafe(exc, origin)
        elif kind in ("ods", "xls"):
            yield self.convert(data, kind, origin, name)
        elif kind == "zip":
            yield from self.archive(data, origin, depth, zips)
        elif kind == "eml":
            yield from self.message(data, origin, depth)
        elif kind == "mbox":
            yield from self.mbox(data, origin, depth)
        elif kind == "msg":
            yield from self.outlook(data, origin, depth)
        elif kind in ("encrypted", "empty"):
            yield _problem("encrypted" if kind == "encrypted" else "empty_file", origin)
        else:
            if kind == "text" and data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
                kind = "html"
            yield _problem("not_a_workbook", origin, what=_LOOKS_LIKE[kind])

    def convert(self, data: bytes, kind: str, origin: str, name: str) -> Found:
        """An .ods/.xls converted to .xlsx by LibreOffice, when it is installed."""
        soffice = shutil.which("soffice")
        if soffice is None:
            return _problem("needs_conversion", origin, what=_FORMATS[kind])
        try:
            if kind == "ods":
                SafeZip(data, origin)
        except UnsafeFile as exc:
            return _unsafe(exc, origin)
        with tempfile.TemporaryDirectory(prefix="grille-") as tmp:
            source = Path(tmp) / f"retour.{kind}"
            source.write_bytes(data)
            profile = f"-env:UserInstallation={(Path(tmp) / 'profile').as_uri()}"
            command = [soffice, "--headless", "--norestore", profile, "--convert-to", "xlsx"]
            command += ["--outdir", str(Path(tmp) / "out"), str(source)]
            converted = _run_conversion(command, Path(tmp) / "out" / "retour.xlsx")
        if converted is None or sniff(converted) != "xlsx":
            return _problem("conversion_failed", origin, what=_FORMATS[kind])
        return Candidate(origin, name, converted, _sha256(data), data, converted_from=kind)

    def archive(self, data: bytes, origin: str, depth: int, zips: int) -> Iterator[Found]:
        """Every member of a zip archive (names are display only: nothing is extracted)."""
        if zips >= _MAX_ZIPS or depth >= _MAX_DEPTH:
            yield _problem("too_deep", origin)
            return
        try:
            archive = SafeZip(data, origin, strict_names=False)
        except UnsafeFile as exc:
            yield _unsafe(exc, origin)
            return
        if archive.has("[Content_Types].xml") or archive.has("mimetype"):
            yield _problem("not_a_workbook", origin, what=_LOOKS_LIKE["package"])
            return
        found = (self.member(archive, m, origin, depth, zips) for m in sorted(set(archive.names())))
        yield from _or(found, _problem("empty_archive", origin))

    def member(
        self, archive: SafeZip, member: str, origin: str, depth: int, zips: int
    ) -> Iterator[Found]:
        parts = [part for part in re.split(r"[\\/]+", member) if part not in ("", ".", "..")]
        if member.endswith(("/", "\\")) or not parts or parts[0] == "__MACOSX":
            return
        if parts[-1].startswith((".", "~$")):
            return
        where = f"{origin} › {'/'.join(printable(part) for part in parts)}"
        try:
            content = archive.read(member, self.limit)
        except UnsafeFile as exc:
            yield _unsafe(exc, where)
            return
        yield from self.blob(content, where, clean_name(parts[-1]), depth + 1, zips + 1)

    def mbox(self, data: bytes, origin: str, depth: int) -> Iterator[Found]:
        """Every message of a mailbox file (mbox format)."""
        mails = enumerate(_MBOX_SEPARATOR.split(data)[1:], start=1)
        found = (
            self.message(mail, f"{origin} › message {i}", depth, alone=False) for i, mail in mails
        )
        yield from _or(found, _problem("no_workbook", origin))

    def message(
        self, data: bytes, origin: str, depth: int, *, alone: bool = True
    ) -> Iterator[Found]:
        """The workbooks attached to a message, forwarded messages included."""
        if depth >= _MAX_DEPTH:
            yield _problem("too_deep", origin)
            return
        try:
            parsed = BytesParser(policy=email.policy.default).parsebytes(data)
            parts = [part for part in parsed.walk() if not part.is_multipart()]
        except Exception:  # the parser on hostile input: RecursionError, ValueError…
            yield _problem("damaged_mail", origin)
            return
        found = (self.part(part, origin, depth) for part in parts)
        yield from _or(found, _problem("no_workbook", origin) if alone else None)

    def part(self, part: Message, origin: str, depth: int) -> Iterator[Found]:
        payload = _safely(lambda: part.get_payload(decode=True), None)
        defects: list[object] = _safely(lambda: list(part.defects), [])
        damaged = any(isinstance(defect, _BASE64_DEFECTS) for defect in defects)
        data = payload if isinstance(payload, bytes) else b""
        yield from self.attached(_safely(part.get_filename, None), data, damaged, origin, depth)

    def attached(
        self, filename: str | None, data: bytes, damaged: bool, origin: str, depth: int
    ) -> Iterator[Found]:
        """An attachment, kept when its bytes or its name say workbook or archive."""
        if data.startswith(_TNEF_MAGIC):  # Outlook's winmail.dat hides the real attachments
            yield _problem("outlook_attachment", f"{origin} › pièce jointe « winmail.dat »")
            return
        if sniff(data) not in _WANTED_IN_MAIL and not (filename or "").lower().endswith(_BOOKS):
            return
        name = clean_name(filename, fallback="pièce jointe sans nom")
        where = f"{origin} › pièce jointe « {name} »"
        if damaged:
            yield _problem("damaged_attachment", where)
        else:
            yield from self.blob(data, where, name, depth + 1)

    def outlook(self, data: bytes, origin: str, depth: int) -> Iterator[Found]:
        """The attachments of an Outlook .msg, when the extract_msg module is installed."""
        try:
            items = importlib.import_module("extract_msg").openMsg(data).attachments
            files = [(item.longFilename or item.shortFilename, item.data) for item in items]
        except ImportError:
            yield _problem("msg_unsupported", origin)
            return
        except Exception:  # extract_msg on hostile input
            yield _problem("damaged_mail", origin)
            return
        for filename, content in files:
            if isinstance(content, bytes):
                yield from self.attached(filename, content, False, origin, depth)


def _run_conversion(command: list[str], result: Path) -> bytes | None:
    """Run LibreOffice within the time limit; the converted bytes, or None."""
    posix = os.name == "posix"
    devnull = subprocess.DEVNULL
    try:
        with subprocess.Popen(
            command, stdin=devnull, stdout=devnull, stderr=devnull, start_new_session=posix
        ) as process:
            try:
                process.wait(timeout=CONVERSION_TIMEOUT)
            except subprocess.TimeoutExpired:  # kill soffice.bin too, not just the launcher
                if posix:
                    os.killpg(process.pid, signal.SIGKILL)
                process.kill()
                return None
        return _read_prefix(result, 100 * MiB, follow=False)
    except OSError:
        return None


def gather(
    paths: Sequence[Path], *, max_file_size: int = 25 * MiB
) -> Iterator[Candidate | Problem]:
    """One Candidate per workbook found under `paths`, one Problem per unusable thing."""
    gatherer = _Gatherer(max_file_size)
    for path in paths:
        yield from gatherer.path(Path(path), top=True)


def store_original(candidate: Candidate, returns_dir: Path) -> tuple[Path, bool]:
    """Keep the original bytes at `returns_dir/ab/abcd….ext`; (path, created)."""
    sha = _sha256(candidate.original)
    if sha != candidate.sha256:
        raise ValueError("store_original: sha256 does not match the original bytes")
    kind = sniff(candidate.original)
    root = returns_dir.resolve()
    target = root / sha[:2] / f"{sha}.{kind if kind in ('xlsx', 'ods', 'xls') else 'bin'}"
    if not target.resolve().is_relative_to(root):
        raise ValueError(f"store_original: {target} is outside {root}")
    try:
        existing = _read_prefix(target, len(candidate.original) + 1, follow=False)
    except OSError:
        existing = None
    if existing is not None and _sha256(existing) == sha:
        return target, False
    atomic_write_bytes(target, candidate.original)
    return target, True

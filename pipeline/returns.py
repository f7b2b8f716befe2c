"""Gather returned workbooks from files, folders, mails, mailboxes and zip archives.

A file's type is decided from its bytes, never from its name. Gathering yields one
`Candidate` per workbook and one `Problem` per thing that cannot be used, and writes
nothing (except LibreOffice's temporary files when converting .ods/.xls).
"""

from __future__ import annotations

import email.errors
import email.policy
import hashlib
import importlib
import io
import mailbox
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from pathlib import Path
from typing import TypeVar

from pipeline.errors import Problem
from pipeline.files import atomic_write_bytes
from pipeline.safe_zip import SafeZip, UnsafeFile

MiB = 1024 * 1024
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
CONVERSION_TIMEOUT = 60
MAX_NAME_LENGTH = 120
_MAX_ZIP_DEPTH = 2  # an archive inside an archive, no deeper
_MAX_DEPTH = 4  # containers of any kind (message, archive) inside each other
_ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
_MAIL_HEADERS = {
    "from", "to", "subject", "received", "mime-version", "content-type",
    "return-path", "date", "message-id",
}  # fmt: skip
_HEADER_LINE = re.compile(r"^[!-9;-~]+:")
_BOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".csv", ".zip", ".eml", ".msg")
_WANTED_IN_MAIL = {"xlsx", "ods", "xls", "zip", "encrypted", "msg"}
_BASE64_DEFECTS = (
    email.errors.InvalidBase64PaddingDefect,
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64LengthDefect,
)
_MAILDIR = ("cur", "new", "tmp")
_RESEND = "demandez au tuteur de renvoyer le classeur"
_LOOKS_LIKE = {
    "text": "du texte (CSV ?)",
    "html": "une page web (HTML) ou du XML",
    "pdf": "un document PDF",
    "mbox": "une boîte aux lettres (mbox) : donnez-la directement à grille",
    "eml": "un message électronique sans classeur",
    "unknown": "des données d'un type inconnu",
}
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
    """The type of a file from its first bytes (see the module for the values)."""
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
        mime = archive.read_optional("mimetype", max_size=200)
    except (UnsafeFile, KeyError):
        return "zip"
    return "ods" if mime is not None and mime.strip().startswith(_ODS_MIME) else "zip"


def _sniff_ole(data: bytes) -> str:
    names = _ole_names(data)
    if names is None:  # unreadable directory: search the UTF-16 names in the bytes
        if "EncryptedPackage".encode("utf-16-le") in data:
            return "encrypted"
        return "msg" if "__substg1.0_".encode("utf-16-le") in data else "xls"
    if "encryptedpackage" in names:
        return "encrypted"
    if any(name.startswith("__substg1.0_") for name in names):
        return "msg"
    if "workbook" in names or "book" in names:
        return "encrypted" if _xls_encrypted(data) else "xls"
    return "unknown"


def _ole_names(data: bytes) -> set[str] | None:
    try:
        olefile = importlib.import_module("olefile")
        with olefile.OleFileIO(data) as ole:
            return {part.lower() for entry in ole.listdir(True, True) for part in entry[:1]}
    except Exception:  # a missing module or any parse error of a hostile file
        return None


def _xls_encrypted(data: bytes) -> bool:
    try:
        msoffcrypto = importlib.import_module("msoffcrypto")
        return bool(msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted())
    except Exception:  # a missing module or any parse error of a hostile file
        return False


def _looks_like_mail(data: bytes) -> bool:
    lines = data[:8192].decode("latin-1").splitlines()
    headers: list[str] = []
    for line in lines[:60]:
        if not line:
            break
        if line[0] in " \t" and headers:
            continue
        if not _HEADER_LINE.match(line):
            return False
        headers.append(line.split(":", 1)[0].lower())
    return len(headers) >= 2 and bool(_MAIL_HEADERS.intersection(headers[:20]))


def _looks_like_text(data: bytes) -> bool:
    head = data[:65536]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut by the 64 KiB window
            text = head[: exc.start].decode("utf-8")
        else:
            try:
                text = head.decode("cp1252")
            except UnicodeDecodeError:
                return False
    controls = sum(1 for char in text if ord(char) < 32 and char not in "\t\n\r\f")
    return controls <= len(text) // 100


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


class _NotRegular(Exception):
    """The path is no longer a regular file (replaced after lstat)."""


def _read_prefix(path: Path, size: int, *, follow: bool) -> bytes:
    """At most `size` bytes of a regular file, without blocking on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotRegular
        return handle.read(size)


def _problem(code: str, origin: str, message: str, severity: str = "error") -> Problem:
    return Problem(code=code, message=message, file=origin, severity=severity)


def _unsafe(exc: UnsafeFile, origin: str) -> Problem:
    return _problem("damaged_file" if exc.damaged else "unsafe_file", origin, exc.reason)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _if_empty(items: Iterator[Found], problem: Problem | None) -> Iterator[Found]:
    """`items`, or `problem` alone when they are none."""
    empty = True
    for item in items:
        empty = False
        yield item
    if empty and problem is not None:
        yield problem


class _Gatherer:
    def __init__(self, max_file_size: int, max_mailbox_size: int) -> None:
        self.max_file_size = max_file_size
        self.max_mailbox_size = max_mailbox_size

    def path(self, path: Path, *, top: bool = False, mail: bool = False) -> Iterator[Found]:
        origin = _display(path)
        try:
            info = path.stat() if top else path.lstat()
        except FileNotFoundError:
            yield _problem(
                "not_found", origin, "fichier ou dossier introuvable : vérifiez le chemin."
            )
            return
        except OSError as exc:
            yield _problem("unreadable", origin, f"illisible ({exc.strerror}).")
            return
        if stat.S_ISDIR(info.st_mode):
            yield from self.folder(path)
        elif stat.S_ISREG(info.st_mode):
            yield from self.file(path, info.st_size, follow=top, mail=mail)
        else:
            yield self._special(origin)

    def _special(self, origin: str) -> Problem:
        message = (
            "ignoré : ce n'est pas un fichier ordinaire (lien symbolique, tube, périphérique)."
        )
        return _problem("skipped_special", origin, message, "warning")

    def folder(self, path: Path) -> Iterator[Found]:
        if all(stat.S_ISDIR(_safely(lambda: (path / s).lstat().st_mode, 0)) for s in _MAILDIR):
            yield from self.maildir(path)
            return
        try:
            with os.scandir(path) as scan:
                names = sorted(entry.name for entry in scan)
        except OSError as exc:
            yield _problem("unreadable", _display(path), f"dossier illisible ({exc.strerror}).")
            return
        for name in names:
            if not name.startswith((".", "~$")):
                yield from self.path(path / name)

    def maildir(self, path: Path) -> Iterator[Found]:
        def messages() -> Iterator[Found]:
            for sub in ("new", "cur"):
                try:
                    names = sorted(os.listdir(path / sub))
                except OSError as exc:
                    yield _problem(
                        "unreadable", _display(path / sub), f"illisible ({exc.strerror})."
                    )
                    continue
                for name in names:
                    if not name.startswith("."):
                        yield from self.path(path / sub / name, mail=True)

        message = "aucun classeur en pièce jointe dans cette boîte aux lettres."
        yield from _if_empty(
            messages(), _problem("no_workbook", _display(path), message, "warning")
        )

    def file(self, path: Path, size: int, *, follow: bool, mail: bool) -> Iterator[Found]:
        origin = _display(path)
        try:
            if size > self.max_file_size:
                if _read_prefix(path, 5, follow=follow) == b"From " and not mail:
                    yield from self.mbox(path, size)
                    return
                data = b""
            else:
                data = _read_prefix(path, self.max_file_size + 1, follow=follow)
        except _NotRegular:
            yield self._special(origin)
            return
        except OSError as exc:
            yield _problem("unreadable", origin, f"fichier illisible ({exc.strerror}).")
            return
        if size > self.max_file_size or len(data) > self.max_file_size:
            yield self._too_large(origin, max(size, len(data)), self.max_file_size)
        elif mail:
            yield from self.message(data, origin, depth=0, alone=False)
        elif sniff(data) == "mbox":
            yield from self.mbox(path, size)
        else:
            yield from self.blob(data, origin, clean_name(os.fsdecode(path.name)))

    def _too_large(self, origin: str, size: int, limit: int) -> Problem:
        message = (
            f"trop volumineux ({size / MiB:.1f} Mo, maximum {limit / MiB:.0f} Mo) : "
            "ce n'est pas un classeur rempli par un tuteur."
        )
        return _problem("too_large", origin, message)

    def mbox(self, path: Path, size: int) -> Iterator[Found]:
        origin = _display(path)
        if size > self.max_mailbox_size:
            yield self._too_large(origin, size, self.max_mailbox_size)
            return
        try:
            box = mailbox.mbox(path, create=False)
            keys = box.keys()
        except (OSError, mailbox.Error) as exc:
            yield _problem("unreadable", origin, f"boîte aux lettres illisible ({exc}).")
            return

        def messages() -> Iterator[Found]:
            for index, key in enumerate(keys, start=1):
                where = f"{origin} › message {index}"
                raw = box.get_file(key).read(self.max_file_size + 1)
                if len(raw) > self.max_file_size:
                    yield self._too_large(where, len(raw), self.max_file_size)
                else:
                    yield from self.message(raw, where, depth=0, alone=False)

        try:
            message = "aucun classeur en pièce jointe dans cette boîte aux lettres."
            yield from _if_empty(messages(), _problem("no_workbook", origin, message, "warning"))
        finally:
            box.close()

    def blob(
        self, data: bytes, origin: str, name: str, depth: int = 0, zips: int = 0
    ) -> Iterator[Found]:
        kind = sniff(data)
        if kind == "xlsx":
            try:
                SafeZip(data, origin)
            except UnsafeFile as exc:
                yield _unsafe(exc, origin)
                return
            yield Candidate(origin, name, data, _sha256(data), data)
        elif kind in ("ods", "xls"):
            yield self.convert(data, kind, origin, name)
        elif kind == "zip":
            yield from self.archive(data, origin, depth, zips)
        elif kind == "eml":
            yield from self.message(data, origin, depth)
        elif kind == "msg":
            yield from self.outlook(data, origin, depth, zips)
        elif kind == "encrypted":
            message = f"classeur protégé par un mot de passe : {_RESEND} sans mot de passe."
            yield _problem("encrypted", origin, message)
        elif kind == "empty":
            yield _problem("empty_file", origin, f"fichier vide (0 octet) : {_RESEND}.")
        else:
            if kind == "text" and data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
                kind = "html"
            message = (
                f"ce n'est pas un classeur Excel : il contient {_LOOKS_LIKE[kind]}. "
                f"Si c'est un retour de tuteur, {_RESEND} au format .xlsx."
            )
            yield _problem("not_a_workbook", origin, message)

    def convert(self, data: bytes, kind: str, origin: str, name: str) -> Found:
        what = ".ods" if kind == "ods" else ".xls (ancien format Excel)"
        soffice = shutil.which("soffice")
        if soffice is None:
            return _problem(
                "needs_conversion",
                origin,
                f"ce classeur est au format {what} : ouvrez-le dans LibreOffice ou Excel et "
                "enregistrez-le en .xlsx, ou installez LibreOffice pour que grille le convertisse.",
            )
        if kind == "ods":
            try:
                SafeZip(data, origin)
            except UnsafeFile as exc:
                return _unsafe(exc, origin)
        with tempfile.TemporaryDirectory(prefix="grille-") as tmp:
            source = Path(tmp) / f"retour.{kind}"
            source.write_bytes(data)
            profile = (Path(tmp) / "profile").as_uri()
            command = [soffice, "--headless", "--norestore", f"-env:UserInstallation={profile}"]
            command += ["--convert-to", "xlsx", "--outdir", str(Path(tmp) / "out"), str(source)]
            converted = _run_conversion(command, Path(tmp) / "out" / "retour.xlsx")
        if converted is None or sniff(converted) != "xlsx":
            return _problem(
                "conversion_failed",
                origin,
                f"LibreOffice n'a pas pu convertir ce classeur au format {what} : ouvrez-le et "
                f"enregistrez-le en .xlsx, ou {_RESEND} au format .xlsx.",
            )
        return Candidate(origin, name, converted, _sha256(data), data, converted_from=kind)

    def archive(self, data: bytes, origin: str, depth: int, zips: int) -> Iterator[Found]:
        if zips >= _MAX_ZIP_DEPTH or depth >= _MAX_DEPTH:
            yield self._too_deep(origin)
            return
        try:
            archive = SafeZip(data, origin, strict_names=False)
        except UnsafeFile as exc:
            yield _unsafe(exc, origin)
            return

        def members() -> Iterator[Found]:
            for member in sorted(set(archive.names())):
                parts = [
                    part for part in re.split(r"[\\/]+", member) if part not in ("", ".", "..")
                ]
                if not parts or member.endswith(("/", "\\")) or parts[0] == "__MACOSX":
                    continue
                if parts[-1].startswith((".", "~$")):
                    continue
                where = f"{origin} › {'/'.join(printable(part) for part in parts)}"
                try:
                    content = archive.read(member, self.max_file_size)
                except UnsafeFile as exc:
                    yield _unsafe(exc, where)
                    continue
                yield from self.blob(content, where, clean_name(parts[-1]), depth + 1, zips + 1)

        message = "archive sans aucun fichier : rien à lire."
        yield from _if_empty(members(), _problem("empty_archive", origin, message, "warning"))

    def _too_deep(self, origin: str) -> Problem:
        message = "trop d'archives ou de messages imbriqués les uns dans les autres : extrayez-les."
        return _problem("too_deep", origin, message)

    def message(
        self, data: bytes, origin: str, depth: int, *, alone: bool = True
    ) -> Iterator[Found]:
        if depth >= _MAX_DEPTH:
            yield self._too_deep(origin)
            return
        try:
            parsed = BytesParser(policy=email.policy.default).parsebytes(data)
            parts = [part for part in parsed.walk() if not part.is_multipart()]
        except Exception:  # the parser on hostile input: RecursionError, ValueError…
            yield _problem("damaged_mail", origin, "message illisible ou endommagé.")
            return
        found = (self.attachment(part, origin, depth) for part in parts)
        message = (
            "ce message n'a pas de classeur en pièce jointe : demandez au tuteur de le joindre."
        )
        no_book = _problem("no_workbook", origin, message, "warning") if alone else None
        yield from _if_empty((item for items in found for item in items), no_book)

    def attachment(self, part: Message, origin: str, depth: int) -> Iterator[Found]:
        filename = _safely(part.get_filename, None)
        payload = _safely(lambda: part.get_payload(decode=True), None)
        data = payload if isinstance(payload, bytes) else b""
        kind = sniff(data)
        by_name = str(filename or "").lower().endswith(_BOOK_SUFFIXES)
        if kind not in _WANTED_IN_MAIL and not by_name:
            return
        name = clean_name(filename, fallback="pièce jointe sans nom")
        where = f"{origin} › pièce jointe « {name} »"
        if any(isinstance(defect, _BASE64_DEFECTS) for defect in _safely(lambda: part.defects, [])):
            yield _problem(
                "damaged_attachment",
                where,
                f"pièce jointe incomplète ou endommagée (message tronqué ?) : {_RESEND}.",
            )
            return
        yield from self.blob(data, where, name, depth + 1)

    def outlook(self, data: bytes, origin: str, depth: int, zips: int) -> Iterator[Found]:
        try:
            extract_msg = importlib.import_module("extract_msg")
        except ImportError:
            message = (
                "message Outlook (.msg) : ouvrez-le dans Outlook, enregistrez la pièce jointe "
                "et donnez le classeur à grille (ou installez le module extract-msg)."
            )
            yield _problem("msg_unsupported", origin, message)
            return
        try:
            outlook = extract_msg.openMsg(data)
            attachments = [
                (
                    getattr(item, "longFilename", None) or getattr(item, "shortFilename", None),
                    item.data,
                )
                for item in outlook.attachments
            ]
        except Exception:  # extract_msg on hostile input
            yield _problem("damaged_mail", origin, "message Outlook illisible ou endommagé.")
            return
        for filename, content in attachments:
            if isinstance(content, bytes) and sniff(content) in _WANTED_IN_MAIL:
                name = clean_name(filename, fallback="pièce jointe sans nom")
                where = f"{origin} › pièce jointe « {name} »"
                yield from self.blob(content, where, name, depth + 1, zips)


def _run_conversion(command: list[str], result: Path) -> bytes | None:
    """Run LibreOffice within the time limit; the converted bytes, or None."""
    posix = os.name == "posix"
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=posix,
        )
    except OSError:
        return None
    try:
        process.wait(timeout=CONVERSION_TIMEOUT)
    except subprocess.TimeoutExpired:
        if posix:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()
        return None
    try:
        return _read_prefix(result, 100 * MiB, follow=False)
    except (OSError, _NotRegular):
        return None


def gather(
    paths: Sequence[Path], *, max_file_size: int = 25 * MiB, max_mailbox_size: int = 100 * MiB
) -> Iterator[Candidate | Problem]:
    """One Candidate per workbook found under `paths`, one Problem per unusable thing."""
    gatherer = _Gatherer(max_file_size, max_mailbox_size)
    for path in paths:
        yield from gatherer.path(Path(path), top=True)


_EXTENSIONS = {"xlsx": ".xlsx", "ods": ".ods", "xls": ".xls"}


def store_original(candidate: Candidate, returns_dir: Path) -> tuple[Path, bool]:
    """Keep the original bytes at `returns_dir/ab/abcd….ext`; (path, created)."""
    sha = _sha256(candidate.original)
    if sha != candidate.sha256:
        raise ValueError("store_original: sha256 does not match the original bytes")
    root = returns_dir.resolve()
    target = root / sha[:2] / f"{sha}{_EXTENSIONS.get(sniff(candidate.original), '.bin')}"
    if not target.resolve().is_relative_to(root):
        raise ValueError(f"store_original: {target} is outside {root}")
    try:
        existing = _read_prefix(target, len(candidate.original) + 1, follow=False)
    except (OSError, _NotRegular):
        existing = None
    if existing is not None and _sha256(existing) == sha:
        return target, False
    atomic_write_bytes(target, candidate.original)
    return target, True

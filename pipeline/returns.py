"""Gather returned workbooks from files, folders, mails, mailboxes and zip archives.

A file's type is decided from its bytes, never from its name. Gathering yields one
`Candidate` per workbook and one `Problem` per thing that cannot be used, and writes
nothing outside LibreOffice's own temporary folders (`office`) when it converts an
.ods/.xls/.fods/Excel 2003 XML file; those conversions run on every core, in the
background, while gathering goes on, and the results keep the order of the files.
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
import stat
import struct
import unicodedata
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, iterparse

from pipeline import office
from pipeline.errors import Problem, french_os_error
from pipeline.files import atomic_write_bytes, container_of
from pipeline.parallel import default_jobs
from pipeline.safe_zip import SafeZip, UnsafeFile, check_xml
from pipeline.xlsx import main_part

MiB = 1024 * 1024
CONVERSION_TIMEOUT = 60.0
CONVERSION_MEMORY_MB = 2048
_LOOKAHEAD = 16  # files read ahead of a conversion still running…
_LOOKAHEAD_BYTES = 100 * 1024 * 1024  # …and their bytes
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
_BOOKS = (
    ".xlsx", ".xlsm", ".xls", ".ods", ".fods", ".csv", ".zip", ".eml", ".msg", ".numbers",
)  # fmt: skip
_WANTED_IN_MAIL = {
    "xlsx", "ods", "xls", "biff", "fods", "xml2003", "xlsb", "zip", "encrypted", "msg", "apple",
}  # fmt: skip
_WORKBOOK_NAMES = (".xlsx", ".xlsm", ".xltx", ".xls", ".ods", ".fods")
# BIFF, the binary format of .xls: each record is (type, length) then data. A stream
# starts with a BOF record (Excel 2.x 0x0009, 3.0 0x0209, 4.0 0x0409, 5.0 and later 0x0809)
# whose data gives the substream type at offset 2; a FILEPASS record (0x002F) in the first
# substream means a password.
_BIFF_BOF = {0x0009: (4, 4), 0x0209: (6, 6), 0x0409: (6, 6), 0x0809: (8, 20)}
_BIFF_SUBSTREAMS = {0x0005, 0x0006, 0x0010, 0x0020, 0x0040, 0x0100}
_BIFF_FILEPASS = 0x002F
_BIFF_EOF = 0x000A
_ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
_OFFICE_NS = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_VALUE_TYPE = f"{{{_OFFICE_NS}}}value-type"
_EXCEL_2003 = re.compile(
    r"""<\?mso-application\s+progid\s*=\s*["']Excel\.Sheet["']|"""
    r"urn:schemas-microsoft-com:office:spreadsheet"
)
_FLAT_ODS = re.compile(
    r"""mimetype\s*=\s*["']application/vnd\.oasis\.opendocument\.spreadsheet["']"""
)
_APPLE_SUFFIXES = (".numbers", ".pages", ".key")
# LibreOffice expands repeated rows and cells up to its sheet size; past this many cells
# with content, a spreadsheet is a trap (a 1 KB .ods can announce 10^18 of them).
MAX_SHEET_ROWS = 1_048_576
MAX_SHEET_COLUMNS = 16_384
MAX_ANNOUNCED_CELLS = 2_000_000
_BASE64_DEFECTS = (
    email.errors.InvalidBase64PaddingDefect,
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64LengthDefect,
)
# Formats LibreOffice converts to .xlsx: the name shown, the suffix it is given under.
_FORMATS = {
    "ods": ".ods",
    "xls": ".xls (ancien format Excel)",
    "biff": ".xls d'Excel 4.0 ou plus ancien (ancien format Excel)",
    "fods": ".fods (OpenDocument en un seul fichier XML)",
    "xml2003": "XML Excel 2003 (« Feuille de calcul XML 2003 »)",
}
_SUFFIXES = {"ods": ".ods", "xls": ".xls", "biff": ".xls", "fods": ".fods", "xml2003": ".xml"}
_STORED_AS = {
    "xlsx": "xlsx", "ods": "ods", "xls": "xls", "biff": "xls", "fods": "fods", "xml2003": "xml",
}  # fmt: skip
_LOOKS_LIKE = {
    "text": "du texte (CSV ?)",
    "html": "une page web (HTML) ou du XML",
    "pdf": "un document PDF",
    "unknown": "des données d'un type inconnu",
    "package": "un document Office ou OpenDocument d'un type inconnu, pas un classeur .xlsx",
    "docx": "un document Word, pas un classeur",
    "pptx": "une présentation PowerPoint, pas un classeur",
    "odf": "un document OpenDocument (texte, présentation…), pas un classeur",
}
_CONVERSION_WHY = {
    "timeout": "conversion arrêtée au bout de {timeout:g} s",
    "memory": "LibreOffice a dépassé la mémoire permise",
    "failed": "LibreOffice n'a rien produit",
    "missing": "LibreOffice est introuvable",
    "not_xlsx": "le résultat n'est pas un classeur .xlsx",
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
    "conversion_failed": "LibreOffice n'a pas pu convertir ce classeur au format {what} ({why}) : "
    f"ouvrez-le et enregistrez-le en .xlsx, ou {_RESEND} au format .xlsx.",
    "too_many_cells": "ce classeur annonce plus de {limit} cellules remplies (lignes et cellules "
    "répétées) : fichier refusé par sécurité, il n'est pas converti. "
    f"{_RESEND.capitalize()} au format .xlsx.",
    "xlsb": "classeur Excel binaire (.xlsb), que grille ne lit pas : ouvrez-le dans Excel et "
    f"enregistrez-le en « Classeur Excel (*.xlsx) », ou {_RESEND} au format .xlsx.",
    "apple_document": "document Apple Numbers : ce n'est pas un classeur Excel. Exportez-le "
    "en .xlsx (Numbers › Fichier › Exporter vers › Excel), ou demandez au tuteur de le faire.",
    "empty_workbook": f"fichier « classeur » qui n'est qu'une archive zip vide : {_RESEND}.",
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
class Dates:
    """When a file was sent and last modified, as its container says (UTC; None: unknown).

    `mailed_at` is the Date of the e-mail that brought it, `file_time` the modification
    time of the file on disk or of its member in a .zip archive."""

    mailed_at: datetime | None = None
    file_time: datetime | None = None


@dataclass(frozen=True)
class Candidate:
    """One returned workbook: where it came from and its .xlsx bytes."""

    origin: str
    name: str
    data: bytes = field(repr=False)
    sha256: str
    original: bytes = field(repr=False)
    converted_from: str = ""
    dates: Dates = Dates()


@dataclass(frozen=True)
class FileProblem(Problem):
    """A problem with a file whose bytes were read: their SHA-256 identifies it later."""

    sha256: str = ""


Found = Candidate | Problem


def sniff(data: bytes) -> str:
    """The type of a file from its bytes: xlsx, ods, fods, xls, biff (Excel 2.x to 4.0),
    xml2003 (Excel 2003 XML), xlsb, encrypted, zip, docx, pptx, odf, package, apple
    (Numbers, Pages, Keynote), eml, mbox, msg, pdf, empty, text or unknown."""
    if not data:
        return "empty"
    container = container_of(data)
    if container == "zip":
        return _sniff_zip(data)
    if container == "ole2":
        return _sniff_ole(data)
    if _is_biff(data):
        return "encrypted" if _biff_encrypted(data) else "biff"
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"From "):
        return "mbox"
    if _looks_like_mail(data):
        return "eml"
    if not _looks_like_text(data):
        return "unknown"
    return _sniff_xml(data) or "text"


def _sniff_zip(data: bytes) -> str:
    try:
        archive = SafeZip(data, "", strict_names=False)
        names = {name.lower() for name in archive.names()}
        if "[content_types].xml" in names:
            return "xlsx" if "xl/workbook.xml" in names else _sniff_package(archive)
        mime = archive.read_optional("mimetype", max_size=200) or b""
        if mime.startswith(_ODS_MIME):
            manifest = archive.read_optional("META-INF/manifest.xml", max_size=MiB) or b""
            return "encrypted" if b"encryption-data" in manifest else "ods"
        if mime.startswith(b"application/vnd.oasis.opendocument."):
            return "odf"
    except (UnsafeFile, KeyError):
        return "zip"
    return "apple" if any(_is_apple_member(name) for name in names) else "zip"


def _sniff_package(archive: SafeZip) -> str:
    """An Office package whose parts have unusual names: its main part's content type."""
    try:
        main = main_part(archive)
    except (UnsafeFile, KeyError):
        return "package"
    content_type = main[1].lower() if main is not None else ""
    if "ms-excel" in content_type and "binary" in content_type:
        return "xlsb"
    if "spreadsheetml" in content_type or "ms-excel" in content_type:
        return "xlsx"
    if "wordprocessingml" in content_type or "ms-word" in content_type:
        return "docx"
    if "presentationml" in content_type or "ms-powerpoint" in content_type:
        return "pptx"
    return "package"


def _is_apple_member(name: str) -> bool:
    """A part of an iWork document (Numbers, Pages, Keynote), in the zip it is saved as."""
    return (name.startswith("index/") and name.endswith(".iwa")) or name in (
        "index.xml", "index.xml.gz", "index.apxl", "index.apxl.gz",
    )  # fmt: skip


def _sniff_ole(data: bytes) -> str:
    """Encrypted OOXML, Outlook message or .xls (Excel 5.0 to 2003), from the OLE2 streams."""
    head = b""
    try:
        with importlib.import_module("olefile").OleFileIO(io.BytesIO(data)) as ole:
            names = {entry[0].lower() for entry in ole.listdir(True, True)}
            stream = next((name for name in ("Workbook", "Book") if ole.exists(name)), None)
            if stream is not None:
                with ole.openstream(stream) as handle:
                    head = handle.read(256 * 1024)
    except Exception:  # no olefile, or a damaged directory: search the UTF-16 names
        names = {n.lower() for n in ("EncryptedPackage", "__substg1.0_", "Workbook", "Book")}
        names = {n for n in names if n.encode("utf-16-le") in data.lower()}
    if "encryptedpackage" in names:
        return "encrypted"
    if any(name.startswith("__substg1.0_") for name in names):
        return "msg"
    if not names & {"workbook", "book"}:
        return "unknown"
    return "encrypted" if _biff_encrypted(head) else "xls"


def _is_biff(data: bytes) -> bool:
    """Whether `data` starts like a bare BIFF stream (Excel 2.x to 4.0 files are one)."""
    if len(data) < 8:
        return False
    kind, length = struct.unpack_from("<HH", data)
    shortest, longest = _BIFF_BOF.get(kind, (0, -1))
    return shortest <= length <= longest and struct.unpack_from("<H", data, 6)[0] in (
        _BIFF_SUBSTREAMS
    )


def _biff_encrypted(stream: bytes) -> bool:
    """Whether the first substream of a BIFF stream has a FILEPASS record (a password)."""
    position = 0
    for count in range(10_000):
        if position + 4 > len(stream):
            break
        kind, length = struct.unpack_from("<HH", stream, position)
        if kind == _BIFF_FILEPASS:
            return True
        if kind == _BIFF_EOF and count:
            break
        position += 4 + length
    return False


def _sniff_xml(data: bytes) -> str | None:
    """xml2003 or fods when a text file is a whole spreadsheet in XML."""
    head = data[:16384]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="replace")
    else:
        text = head.decode("utf-8", errors="replace")
    if not text.lstrip("\ufeff \t\r\n").startswith("<"):
        return None
    if _EXCEL_2003.search(text):
        return "xml2003"
    if _OFFICE_NS in text and _FLAT_ODS.search(text):
        return "fods"
    return None


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


def _with_sha(problem: Problem, data: bytes) -> Problem:
    """`problem` with the SHA-256 of the bytes it is about."""
    if isinstance(problem, FileProblem) and problem.sha256:
        return problem
    fields = {name: getattr(problem, name) for name in Problem.__dataclass_fields__}
    return FileProblem(**fields, sha256=_sha256(data))


def _tagged(items: Iterable[_Item], origin: str, data: bytes) -> Iterator[_Item]:
    """`items`, the problems about `origin` itself carrying the SHA-256 of `data`."""
    for item in items:
        if isinstance(item, Problem) and item.file == origin:
            item = _with_sha(item, data)
        yield item


def _mail_date(parsed: Message) -> datetime | None:
    """The Date header of a message, in UTC, or None when absent or unreadable."""
    try:
        value = parsed.get("Date")
        moment = parsedate_to_datetime(str(value)) if value else None
    except Exception:  # hostile headers: ValueError, TypeError, IndexError…
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:  # « -0000 »: a UTC time whose zone is unknown
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _utc(timestamp: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _zip_time(data: bytes, member: str) -> datetime | None:
    """The modification time a zip archive gives `member` (local time, as written by the
    machine that made it), in UTC; None when unreadable."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            stamp = archive.getinfo(member).date_time
        return datetime(*stamp).astimezone(UTC)
    except (KeyError, ValueError, OverflowError, OSError, zipfile.BadZipFile):
        return None


def _or(found: Iterable[Iterable[_Item]], problem: Problem | None) -> Iterator[_Item]:
    """Everything `found` yields, or `problem` alone when that is nothing."""
    empty = True
    for items in found:
        for item in items:
            empty = False
            yield item
    if empty and problem is not None:
        yield problem


class _Pending:
    """A file LibreOffice converts in the background; `result()` gives what it became."""

    def __init__(self, data: bytes, kind: str, origin: str, name: str, dates: Dates) -> None:
        self.data, self.kind, self.origin, self.name = data, kind, origin, name
        self.dates = dates
        self.conversion: office.Conversion | None = None
        self.problem: Problem | None = None

    def _failed(self, why: str) -> Problem:
        what = _FORMATS[self.kind]
        return _with_sha(_problem("conversion_failed", self.origin, what=what, why=why), self.data)

    @property
    def started(self) -> bool:
        return self.conversion is not None or self.problem is not None

    def start(self) -> None:
        try:
            self.conversion = office.Conversion(
                [(f"retour{_SUFFIXES[self.kind]}", self.data)],
                "xlsx",
                timeout=CONVERSION_TIMEOUT,
                memory_mb=CONVERSION_MEMORY_MB,
            )
        except office.OfficeError as exc:
            self.problem = self._failed(_CONVERSION_WHY[exc.code].format(timeout=0))
        except OSError as exc:  # no room for the temporary folder…
            self.problem = self._failed(_why(exc))

    def finished(self) -> bool:
        return self.conversion is None or self.conversion.finished()

    def result(self) -> Found:
        """Wait for LibreOffice: the converted workbook, or the problem."""
        if not self.started:
            self.start()
        if self.conversion is None:
            assert self.problem is not None
            return self.problem
        try:
            [produced] = self.conversion.wait()
            converted = self.conversion.read(produced, 100 * MiB)
        except office.OfficeError as exc:
            why = _CONVERSION_WHY[exc.code].format(timeout=CONVERSION_TIMEOUT)
            return self._failed(why)
        except OSError as exc:
            return self._failed(_why(exc))
        finally:
            self.cancel()
        if sniff(converted) != "xlsx":
            return self._failed(_CONVERSION_WHY["not_xlsx"])
        data = self.data
        return Candidate(
            self.origin, self.name, converted, _sha256(data), data, self.kind, self.dates
        )

    def cancel(self) -> None:
        """Stop LibreOffice if it still runs; its temporary folder is removed."""
        if self.conversion is not None:
            self.conversion.close()


_Item = Candidate | Problem | _Pending


def announced_cells(stream: IO[bytes]) -> int:
    """Cells with content (a value, formula or text) an OpenDocument spreadsheet's XML
    announces, counting repeated rows and cells as LibreOffice expands them (up to its
    sheet size); stops counting past `MAX_ANNOUNCED_CELLS`. A DTD raises ValueError."""
    total = row_cells = 0
    row_repeat = 1
    rows_repeated, cells_repeated = (
        f"{_TABLE}number-rows-repeated", f"{_TABLE}number-columns-repeated",
    )  # fmt: skip
    cells = (f"{_TABLE}table-cell", f"{_TABLE}covered-table-cell")
    for event, element in iterparse(stream, events=("start", "end"), forbid_dtd=True):
        if element.tag == f"{_TABLE}table-row":
            if event == "start":
                row_repeat, row_cells = min(_repeat(element.get(rows_repeated)), MAX_SHEET_ROWS), 0
                continue
            total += row_repeat * row_cells
            element.clear()
            if total > MAX_ANNOUNCED_CELLS:
                break
        elif event == "end" and element.tag in cells:
            if len(element) or element.get(_VALUE_TYPE) or element.get(f"{_TABLE}formula"):
                row_cells = min(row_cells + _repeat(element.get(cells_repeated)), MAX_SHEET_COLUMNS)
            element.clear()
    return total


def _repeat(value: str | None) -> int:
    """A repeat count as LibreOffice reads it: absent or unreadable is 1; huge stays huge."""
    digits = (value or "").strip()
    if not digits.isascii() or not digits.isdigit():
        return 1
    return max(1, int(digits)) if len(digits) <= 12 else 10**12


def _conversion_refusal(data: bytes, kind: str, origin: str) -> Problem | None:
    """Why a file must not reach LibreOffice, from a cheap look at it, or None."""
    try:
        if kind == "ods":
            archive = SafeZip(data, origin)
            for member in archive.names():
                if member.lower().endswith(".xml"):
                    check_xml(archive.read(member), origin, member)
            content = io.BytesIO(archive.read("content.xml"))
        elif kind in ("fods", "xml2003"):
            check_xml(data, origin, "document")
            content = io.BytesIO(data)
        else:
            return None
        cells = announced_cells(content)
    except UnsafeFile as exc:
        return _unsafe(exc, origin)
    except KeyError:
        return _problem("damaged_file", origin, why="classeur .ods sans contenu (content.xml).")
    except (ParseError, DefusedXmlException, ValueError):
        return _problem("damaged_file", origin, why=f"XML illisible ou piégé : {_RESEND}.")
    if cells > MAX_ANNOUNCED_CELLS:
        return _problem(
            "too_many_cells", origin, limit=f"{MAX_ANNOUNCED_CELLS:,}".replace(",", " ")
        )
    return None


class _Gatherer:
    def __init__(self, max_file_size: int) -> None:
        self.limit = max_file_size

    def path(self, path: Path, *, top: bool = False, mail: bool = False) -> Iterator[_Item]:
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
        dates = Dates(file_time=_utc(info.st_mtime))
        if is_dir:
            yield from self.folder(path)
        elif data is None:
            yield _problem("skipped_special", origin)
        elif size > self.limit or len(data) > self.limit:
            yield _problem("too_large", origin, size=_size(size), limit=_size(self.limit))
        elif mail:
            yield from self.message(data, origin, 0, dates, alone=False)
        else:
            yield from self.blob(data, origin, clean_name(os.fsdecode(path.name)), dates)

    def folder(self, path: Path) -> Iterator[_Item]:
        """Every file, sorted; a Maildir (cur/ new/ tmp/) is read as messages."""
        if len(path.parts) > _MAX_FOLDERS:
            yield _problem("too_deep", _display(path))
            return
        if _is_apple_package(path):
            yield _apple_problem(_display(path), path.name)
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
        self, data: bytes, origin: str, name: str, dates: Dates, depth: int = 0, zips: int = 0
    ) -> Iterator[_Item]:
        """Bytes whose type is sniffed: a workbook, a container, or a problem (which
        carries the SHA-256 of the bytes when it is about them)."""
        yield from _tagged(self._sniffed(data, origin, name, dates, depth, zips), origin, data)

    def _sniffed(
        self, data: bytes, origin: str, name: str, dates: Dates, depth: int, zips: int
    ) -> Iterator[_Item]:
        kind = sniff(data)
        if kind == "xlsx":
            try:
                SafeZip(data, origin)
                yield Candidate(origin, name, data, _sha256(data), data, dates=dates)
            except UnsafeFile as exc:
                yield _unsafe(exc, origin)
        elif kind in _FORMATS:
            yield self.convert(data, kind, origin, name, dates)
        elif kind == "zip":
            yield from self.archive(data, origin, dates, depth, zips, name)
        elif kind == "eml":
            yield from self.message(data, origin, depth, dates)
        elif kind == "mbox":
            yield from self.mbox(data, origin, depth, dates)
        elif kind == "msg":
            yield from self.outlook(data, origin, depth, dates)
        elif kind in ("encrypted", "empty", "xlsb"):
            yield _problem({"empty": "empty_file"}.get(kind, kind), origin)
        elif kind == "apple":
            yield _apple_problem(origin, name)
        else:
            if kind == "text" and data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
                kind = "html"
            yield _problem("not_a_workbook", origin, what=_LOOKS_LIKE[kind])

    def convert(self, data: bytes, kind: str, origin: str, name: str, dates: Dates) -> _Item:
        """A file LibreOffice will convert to .xlsx, once checked; a problem when it
        is not installed or when a cheap look shows the file is a trap."""
        if office.find_soffice() is None:
            return _problem("needs_conversion", origin, what=_FORMATS[kind])
        refusal = _conversion_refusal(data, kind, origin)
        return refusal if refusal is not None else _Pending(data, kind, origin, name, dates)

    def archive(
        self, data: bytes, origin: str, dates: Dates, depth: int, zips: int, name: str = ""
    ) -> Iterator[_Item]:
        """Every member of a zip archive (names are display only: nothing is extracted);
        an iWork document folder inside is one problem, not one per part."""
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
        found: list[Iterable[_Item]] = []
        packages: set[str] = set()  # iWork documents saved as a folder, zipped
        for member in sorted(set(archive.names())):
            package = _apple_folder(member)
            if package is None:
                member_dates = replace(dates, file_time=_zip_time(data, member) or dates.file_time)
                found.append(self.member(archive, member, origin, member_dates, depth, zips))
            elif package not in packages:
                packages.add(package)
                where = f"{origin} › {printable(package)}"
                found.append([_apple_problem(where, package)])
        empty = _problem(
            "empty_workbook" if name.lower().endswith(_WORKBOOK_NAMES) else "empty_archive", origin
        )
        yield from _or(found, empty)

    def member(
        self, archive: SafeZip, member: str, origin: str, dates: Dates, depth: int, zips: int
    ) -> Iterator[_Item]:
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
        yield from self.blob(content, where, clean_name(parts[-1]), dates, depth + 1, zips + 1)

    def mbox(self, data: bytes, origin: str, depth: int, dates: Dates) -> Iterator[_Item]:
        """Every message of a mailbox file (mbox format)."""
        mails = enumerate(_MBOX_SEPARATOR.split(data)[1:], start=1)
        found = (
            self.message(mail, f"{origin} › message {i}", depth, dates, alone=False)
            for i, mail in mails
        )
        yield from _or(found, _problem("no_workbook", origin))

    def message(
        self, data: bytes, origin: str, depth: int, dates: Dates, *, alone: bool = True
    ) -> Iterator[_Item]:
        """The workbooks attached to a message, forwarded messages included; each carries
        the message's Date (a forwarded message's own Date when it has one)."""
        if depth >= _MAX_DEPTH:
            yield _with_sha(_problem("too_deep", origin), data)
            return
        try:
            parsed = BytesParser(policy=email.policy.default).parsebytes(data)
            parts = [part for part in parsed.walk() if not part.is_multipart()]
        except Exception:  # the parser on hostile input: RecursionError, ValueError…
            yield _with_sha(_problem("damaged_mail", origin), data)
            return
        dates = replace(dates, mailed_at=_mail_date(parsed) or dates.mailed_at)
        found = (self.part(part, origin, depth, dates) for part in parts)
        yield from _or(found, _problem("no_workbook", origin) if alone else None)

    def part(self, part: Message, origin: str, depth: int, dates: Dates) -> Iterator[_Item]:
        payload = _safely(lambda: part.get_payload(decode=True), None)
        defects: list[object] = _safely(lambda: list(part.defects), [])
        damaged = any(isinstance(defect, _BASE64_DEFECTS) for defect in defects)
        data = payload if isinstance(payload, bytes) else b""
        filename = _safely(part.get_filename, None)
        yield from self.attached(filename, data, damaged, origin, depth, dates)

    def attached(
        self,
        filename: str | None,
        data: bytes,
        damaged: bool,
        origin: str,
        depth: int,
        dates: Dates,
    ) -> Iterator[_Item]:
        """An attachment, kept when its bytes or its name say workbook or archive."""
        if data.startswith(_TNEF_MAGIC):  # Outlook's winmail.dat hides the real attachments
            yield _problem("outlook_attachment", f"{origin} › pièce jointe « winmail.dat »")
            return
        kind, lowered = sniff(data), (filename or "").lower()
        if kind not in _WANTED_IN_MAIL and not lowered.endswith(_BOOKS):
            return
        if kind == "apple" and lowered.endswith((".pages", ".key")):  # a document, not a return
            return
        name = clean_name(filename, fallback="pièce jointe sans nom")
        where = f"{origin} › pièce jointe « {name} »"
        if damaged:
            yield _with_sha(_problem("damaged_attachment", where), data)
        else:
            yield from self.blob(data, where, name, dates, depth + 1)

    def outlook(self, data: bytes, origin: str, depth: int, dates: Dates) -> Iterator[_Item]:
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
                yield from self.attached(filename, content, False, origin, depth, dates)


def _is_apple_package(path: Path) -> bool:
    """A folder that is an iWork document (macOS shows it as one file)."""
    if (path / "Index.zip").is_file() or (path / "Index" / "Document.iwa").is_file():
        return True
    return path.name.lower().endswith(_APPLE_SUFFIXES) and (path / "Metadata").is_dir()


def _apple_folder(member: str) -> str | None:
    """The iWork document folder (« Budget.numbers ») a zip member is part of, if any."""
    parts = [part for part in re.split(r"[\\/]+", member) if part]
    if parts[:1] == ["__MACOSX"]:
        return None
    for index, part in enumerate(parts[:-1]):
        if part.lower().endswith(_APPLE_SUFFIXES):
            return "/".join(parts[: index + 1])
    return None


def _apple_problem(origin: str, name: str) -> Problem:
    """An iWork document: a Numbers one (unless its name says Pages or Keynote) is a
    return the tutor must export to .xlsx."""
    for suffix, app in ((".pages", "Apple Pages"), (".key", "Apple Keynote")):
        if name.lower().endswith(suffix):
            return _problem("not_a_workbook", origin, what=f"un document {app}, pas un classeur")
    return _problem("apple_document", origin)


def _settle(queue: deque[_Item], jobs: int, *, flush: bool) -> Iterator[Found]:
    """Yield the items at the head of `queue` that are ready, in order, keeping up to
    `jobs` conversions running; with `flush`, wait for every one."""
    while queue:
        conversions = 0  # in the queue: the first `jobs` run, the others wait their turn
        for item in queue:
            if isinstance(item, _Pending):
                if not item.started and conversions < jobs:
                    item.start()
                conversions += 1
        head = queue[0]
        if isinstance(head, _Pending):
            held = sum(len(item.data) for item in queue if not isinstance(item, Problem))
            crowded = conversions > jobs or len(queue) > _LOOKAHEAD or held > _LOOKAHEAD_BYTES
            if not (flush or crowded or head.finished()):
                return
        queue.popleft()
        yield head.result() if isinstance(head, _Pending) else head


def gather(
    paths: Sequence[Path], *, max_file_size: int = 25 * MiB, jobs: int | None = None
) -> Iterator[Candidate | Problem]:
    """One Candidate per workbook found under `paths`, one Problem per unusable thing,
    in the order of the files; up to `jobs` (default: every core) conversions at once.

    While it runs, SIGTERM ends the process through SystemExit, so that on every way out
    the conversions still running are stopped and their folders removed."""
    gatherer = _Gatherer(max_file_size)
    jobs = max(1, jobs or default_jobs())
    queue: deque[_Item] = deque()
    with office.sigterm_as_exit():
        try:
            for path in paths:
                for item in gatherer.path(Path(path), top=True):
                    queue.append(item)
                    yield from _settle(queue, jobs, flush=False)
            yield from _settle(queue, jobs, flush=True)
        finally:
            for item in queue:
                if isinstance(item, _Pending):
                    item.cancel()


def store_original(candidate: Candidate, returns_dir: Path) -> tuple[Path, bool]:
    """Keep the original bytes at `returns_dir/ab/abcd….ext`; (path, created)."""
    sha = _sha256(candidate.original)
    if sha != candidate.sha256:
        raise ValueError("store_original: sha256 does not match the original bytes")
    kind = _STORED_AS.get(sniff(candidate.original), "bin")
    root = returns_dir.resolve()
    target = root / sha[:2] / f"{sha}.{kind}"
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

"""Roster spreadsheet or CSV → students, with row-precise problems.

`read_roster` takes a .xlsx or CSV file (type decided from its bytes), finds the header
row (`ROSTER_COLUMNS`, case/accents/spaces ignored), checks every line and returns a
`RosterResult`: the students of the lines without error, and every `Problem` located by
file, row (as Excel numbers it) and column (the template's header). `read_rosters` reads
several files, or folders of them, as one roster (duplicates are sought across files).
Files are streamed line by line, so memory grows with the students kept, not with the
file. Files that cannot be read at all raise `RosterError`. The template to fill is
written by `roster_template`.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from openpyxl import load_workbook
from openpyxl.utils.datetime import from_excel

from pipeline.errors import Problem, RosterError, french_os_error
from pipeline.files import container_of
from pipeline.text import display_name, fold, french_count, is_email

__all__ = [
    "DEMO_ROSTER",
    "EXAMPLE_LAST_NAME",
    "FIRST_YEAR",
    "INSTRUCTIONS_SHEET",
    "LAST_YEAR",
    "MAX_DATA_ROWS",
    "REQUIRED_HEADERS",
    "ROSTER_COLUMNS",
    "ROSTER_SUFFIXES",
    "TEMPLATE_SHEET",
    "Problem",
    "RosterColumn",
    "RosterError",
    "RosterResult",
    "Student",
    "derive_student_id",
    "read_roster",
    "read_rosters",
    "roster_files",
]


@dataclass(frozen=True)
class Student:
    """One student of the roster, with the company placement and the tutor."""

    student_id: str
    last_name: str
    first_name: str
    class_name: str
    company: str
    tutor_name: str
    tutor_email: str
    start: date
    end: date
    student_email: str = ""
    tutor_phone: str = ""
    referent: str = ""
    row: int = 0

    @property
    def display_name(self) -> str:
        """« DUPONT Jean », the way French school documents name a student."""
        return display_name(self.last_name, self.first_name)

    @property
    def label(self) -> str:
        """« DUPONT Jean (BTS MCO 2A) »: with the class, which tells two homonyms apart."""
        return f"{self.display_name} ({self.class_name})"

    def fingerprint(self) -> str:
        """Hash of every roster field (not the row): changes when the line changes."""
        text = "\x1f".join(f"{name}={getattr(self, name)}" for name in _FINGERPRINT_FIELDS)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


_FINGERPRINT_FIELDS = sorted(f.name for f in fields(Student) if f.name != "row")


# --------------------------------------------------------------------------- columns


@dataclass(frozen=True)
class RosterColumn:
    """One column of the roster.

    `header` is the French text of the template (and of problems' `column`); `aliases`
    are other headers accepted, compared like the header (case, accents and spaces
    ignored); `hint` completes « indiquez … » in messages; `single_line` columns have
    their spaces collapsed and are refused with line breaks or invisible characters.
    """

    key: str
    header: str
    required: bool
    hint: str
    example: str
    width: int
    aliases: tuple[str, ...] = ()
    single_line: bool = False


ROSTER_COLUMNS: tuple[RosterColumn, ...] = (
    RosterColumn(
        key="last_name",
        header="Nom",
        required=True,
        hint="le nom de famille de l'étudiant",
        example="DUPONT",
        width=18,
        aliases=("nom de famille", "nom etudiant", "nom de l'etudiant"),
        single_line=True,
    ),
    RosterColumn(
        key="first_name",
        header="Prénom",
        required=True,
        hint="le prénom de l'étudiant",
        example="Léa",
        width=16,
        aliases=("prenom etudiant", "prenom de l'etudiant"),
        single_line=True,
    ),
    RosterColumn(
        key="class_name",
        header="Classe",
        required=True,
        hint="la classe de l'étudiant",
        example="BTS MUC 2A",
        width=14,
        single_line=True,
    ),
    RosterColumn(
        key="company",
        header="Entreprise",
        required=True,
        hint="le nom de l'entreprise d'accueil",
        example="Agence Horizon Immobilier",
        width=28,
        aliases=("entreprise d'accueil",),
        single_line=True,
    ),
    RosterColumn(
        key="tutor_name",
        header="Tuteur",
        required=True,
        hint="le prénom et le nom du tuteur en entreprise",
        example="Claire Morel",
        width=22,
        aliases=("nom du tuteur", "tuteur entreprise"),
        single_line=True,
    ),
    RosterColumn(
        key="tutor_email",
        header="Email tuteur",
        required=True,
        hint="l'adresse e-mail du tuteur (exemple : prenom.nom@entreprise.fr)",
        example="claire.morel@agence-horizon.example",
        width=34,
        aliases=("e-mail tuteur", "mail tuteur", "courriel tuteur", "adresse e-mail tuteur"),
    ),
    RosterColumn(
        key="start",
        header="Début",
        required=True,
        hint="la date de début du stage (jj/mm/aaaa)",
        example="04/01/2027",
        width=12,
        aliases=("date de debut", "debut du stage", "debut stage"),
    ),
    RosterColumn(
        key="end",
        header="Fin",
        required=True,
        hint="la date de fin du stage (jj/mm/aaaa)",
        example="26/02/2027",
        width=12,
        aliases=("date de fin", "fin du stage", "fin stage"),
    ),
    RosterColumn(
        key="student_id",
        header="Identifiant",
        required=False,
        hint="un identifiant unique (utile seulement pour deux homonymes de la même classe)",
        example="MUC2A-07",
        width=14,
        aliases=("id", "identifiant etudiant"),
    ),
    RosterColumn(
        key="student_email",
        header="Email étudiant",
        required=False,
        hint="l'adresse e-mail de l'étudiant",
        example="lea.dupont@lycee.example",
        width=32,
        aliases=("e-mail etudiant", "mail etudiant", "courriel etudiant"),
    ),
    RosterColumn(
        key="tutor_phone",
        header="Téléphone tuteur",
        required=False,
        hint="le téléphone du tuteur",
        example="01 99 00 12 34",
        width=18,
        aliases=("tel tuteur", "tel. tuteur", "telephone du tuteur"),
        single_line=True,
    ),
    RosterColumn(
        key="referent",
        header="Professeur référent",
        required=False,
        hint="le nom du professeur qui suit le stage",
        example="Mme Lambert",
        width=22,
        aliases=("enseignant referent", "referent"),
        single_line=True,
    ),
)

REQUIRED_HEADERS: tuple[str, ...] = tuple(c.header for c in ROSTER_COLUMNS if c.required)
TEMPLATE_SHEET = "Stagiaires"
INSTRUCTIONS_SHEET = "Instructions"
EXAMPLE_LAST_NAME = "EXEMPLE"
MAX_DATA_ROWS = 100_000  # students of the whole roster, every file together
ROSTER_SUFFIXES = (".xlsx", ".csv")  # the files read from a roster folder
MAX_EMPTY_RUN = 50
HEADER_SEARCH_ROWS = 10
DEMO_ROSTER = Path(__file__).parent / "data" / "demo_roster.csv"
FIRST_YEAR, LAST_YEAR = 2000, 2100  # the dates a roster may hold

_T = TypeVar("_T")
_EXAMPLE_KEY = EXAMPLE_LAST_NAME.casefold()
_COLUMNS_BY_KEY = {c.key: c for c in ROSTER_COLUMNS}
_HEADER_SEARCH_COLUMNS = 100
_MAX_FILE_BYTES = 100 * 1024 * 1024  # 100,000 lines of every column fit in about 30 MB
_CHUNK_BYTES = 1024 * 1024
_CSV_SAMPLE_CHARS = 64 * 1024  # text searched for the header and the delimiter
_MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
_SHEET_NAMES = {"stagiaires", "stagiaire", "liste des stagiaires", "etudiants", "eleves"}

_MESSAGES = {
    "missing_column": (
        "colonne obligatoire absente : ajoutez une colonne « {header} » à la ligne d'en-tête "
        "(ligne {row})."
    ),
    "duplicate_column": (
        "la colonne « {header} » apparaît deux fois dans l'en-tête : renommez ou supprimez "
        "la seconde (seule la première est lue)."
    ),
    "missing_value": "valeur manquante : indiquez {hint}.",
    "bad_email": (
        "adresse e-mail invalide « {value} » : corrigez-la (exemple : prenom.nom@entreprise.fr)."
    ),
    "bad_email_invisible": (
        "l'adresse e-mail « {value} » contient un caractère invisible (copier-coller ?) : "
        "retapez-la au clavier."
    ),
    "multiple_emails": (
        "une seule adresse par cellule : « {value} » en contient plusieurs ; gardez-en une seule."
    ),
    "bad_date": (
        "date invalide « {value} » : écrivez-la au format jj/mm/aaaa (exemple : 04/01/2027)."
    ),
    "end_before_start": (
        "la date de fin ({end}) n'est pas après la date de début ({start}) : corrigez Début ou Fin."
    ),
    "control_character": (
        "{what} dans « {value} » : retapez la cellule sur une seule ligne, sans caractère spécial."
    ),
    "bad_identifier": (
        "identifiant invalide « {value} » : utilisez de 1 à 40 caractères parmi lettres sans "
        "accent, chiffres, « _ », « . » et « - » (exemple : MUC2A-07)."
    ),
    "duplicate": (
        "doublon de la ligne {first} (même classe, même nom, même prénom) : supprimez la "
        "ligne en double ; s'il s'agit de deux homonymes, ajoutez une colonne Identifiant "
        "pour distinguer deux homonymes de la même classe."
    ),
    "duplicate_identifier": (
        "identifiant « {value} » déjà utilisé à la ligne {first} : donnez à chaque stagiaire "
        "un identifiant différent."
    ),
    "example_row": (
        "ligne d'exemple du modèle (Nom « EXEMPLE ») ignorée : remplacez-la par un stagiaire "
        "ou supprimez-la."
    ),
    "extra_cells": (
        "cette ligne a plus de cellules que l'en-tête : une valeur contient sans doute le "
        "séparateur « {delimiter} » ; retirez-le ou mettez la valeur entre guillemets (s'il "
        "s'agit d'une colonne de notes, donnez-lui un en-tête)."
    ),
    "too_many_rows": (
        "plus de {limit} stagiaires dans la liste : la lecture s'arrête à cette ligne et aucun "
        "classeur n'est produit. Une liste de stagiaires n'atteint pas cette taille : "
        "vérifiez que c'est le bon fichier (pas un export de tout l'établissement, ni des "
        "lignes recopiées jusqu'en bas de la feuille)."
    ),
    "ignored_file": (
        "fichier ignoré : seuls les fichiers .xlsx et .csv du dossier « {folder} » sont lus ; "
        "enregistrez-le au format Excel (.xlsx) ou CSV pour qu'il soit lu."
    ),
    "ignored_folder": (
        "sous-dossier ignoré : seuls les fichiers placés directement dans « {folder} » sont "
        "lus ; indiquez aussi ce sous-dossier s'il contient des stagiaires."
    ),
}


# --------------------------------------------------------------------------- results


@dataclass
class RosterResult:
    """Students of the rows that passed every check, and every problem found."""

    students: list[Student] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # names of the files read, in order

    @property
    def valid(self) -> bool:
        """True when no problem blocks (warnings do not)."""
        return not any(p.severity == "error" for p in self.problems)


@dataclass(frozen=True)
class _Record:
    """One data line: `row` as the user sees it, values in the header's column order."""

    row: int
    values: list[Any]
    extra: bool = False


@dataclass
class _Table:
    """A located header and the data lines below it (read as they are asked for)."""

    sheet: str
    header_row: int
    columns: dict[str, int]
    problems: list[Problem]
    records: Iterator[_Record]
    delimiter: str = ""


# --------------------------------------------------------------------------- text helpers

_SPACE_CHARS = " \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_EDGE_SPACES = re.compile(f"\\A[{_SPACE_CHARS}]+|[{_SPACE_CHARS}]+\\Z")
_SPACE_RUN = re.compile(f"[{_SPACE_CHARS}]+")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_DMY = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(?:[ T]0{1,2}:00(?::00(?:\.0+)?)?)?")
_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]0{1,2}:00(?::00(?:\.0+)?)?)?")


def _strip(text: str) -> str:
    """Remove spaces (any Unicode space, not control characters) at both ends."""
    if text.isascii():  # the usual case, and the only ASCII space is " "
        return text.strip(" ")
    return _EDGE_SPACES.sub("", text)


def _header_key(text: str) -> str:
    """Normalised header: case, accents, spaces and a trailing « * » or « : » ignored."""
    return fold(text).rstrip("*: ").strip()


_HEADER_LOOKUP: dict[str, str] = {
    _header_key(name): column.key
    for column in ROSTER_COLUMNS
    for name in (column.header, *column.aliases)
}


def _is_invisible(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf")


def _has_invisible(text: str) -> bool:
    """True if `text` holds a control or format character (fast path: printable text)."""
    return not text.isprintable() and any(_is_invisible(ch) for ch in text)


def _show(text: str, limit: int = 60) -> str:
    """The value as quoted in a message: line breaks and tabs made visible, shortened."""
    shown = "".join(
        "↵" if ch in "\r\n" else "⇥" if ch == "\t" else "�" if _is_invisible(ch) else ch
        for ch in text
    )
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _cell_text(value: Any) -> str:
    """A cell as trimmed text, whatever type openpyxl or csv gave."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "VRAI" if value else "FAUX"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, datetime):
        text = value.strftime("%d/%m/%Y" if value.time() == time() else "%d/%m/%Y %H:%M")
    elif isinstance(value, date):
        text = value.strftime("%d/%m/%Y")
    else:
        text = str(value)
    return _strip(text)


def _french_date(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def derive_student_id(class_name: str, last_name: str, first_name: str) -> str:
    """Stable identifier from class, last and first name: « E » + 8 hex of a SHA-256.

    Case, accents, apostrophe style and repeated spaces do not change it; nor do the row
    order or the other columns.
    """
    key = "|".join(fold(part) for part in (class_name, last_name, first_name))
    return "E" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


# --------------------------------------------------------------------------- reading


def read_roster(path: Path) -> RosterResult:
    """Read a roster (.xlsx or CSV file, or a folder of them) into students and problems.

    The file type is decided from the file's first bytes, not its name. Raises
    `RosterError` (French) when the file cannot be read at all: empty, wrong format,
    damaged, or no header row; faults in rows are returned as problems.
    """
    return read_rosters([path])


def read_rosters(paths: Sequence[Path], *, max_rows: int = MAX_DATA_ROWS) -> RosterResult:
    """Read several roster files, or folders of them (`roster_files`), as ONE roster.

    Files are read in the given order, each located by its name in problems (by its
    path when two files share a name); a file given twice is read once. A student on
    two lines is a duplicate, in one file or across two. Past `max_rows` student lines,
    all files together, reading stops with a `too_many_rows` error. Raises `RosterError`
    on the first file that cannot be read at all.
    """
    files: list[Path] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    for path in paths:
        found, ignored = roster_files(Path(path))
        problems.extend(ignored)
        for file in found:
            key = _same_file_key(file)
            if key not in seen:
                seen.add(key)
                files.append(file)
    names = [file.name for file in files]
    shared = {name for name in names if names.count(name) > 1}
    checker = _RosterChecker(max_rows)
    checker.result.problems.extend(problems)
    for file in files:
        name = str(file) if file.name in shared else file.name
        checker.result.files.append(name)
        try:
            with _open_table(file, name) as table:
                checker.check(table, name)
        except OSError as exc:  # the file vanished or became unreadable while read
            raise RosterError(_unreadable(name, exc)) from None
        if checker.full:
            break
    return checker.result


def roster_files(path: Path) -> tuple[list[Path], list[Problem]]:
    """The files a roster path stands for, and warnings for what a folder holds besides.

    A file stands for itself. A folder stands for its .xlsx and .csv files (any case),
    sorted by name, leaving out hidden files and Excel's lock files (« ~$… »); its other
    files and its sub-folders are not read, with a warning each. Raises `RosterError`
    when the folder cannot be listed or holds no roster file.
    """
    path = Path(path)
    if not path.is_dir():
        return [path], []
    try:
        entries = sorted(path.iterdir(), key=lambda entry: (entry.name.casefold(), entry.name))
        kinds = [(entry, entry.is_dir()) for entry in entries]
    except OSError as exc:
        raise RosterError(
            f"{path} : lecture du dossier impossible ({french_os_error(exc)}) ; vérifiez le "
            "chemin et vos droits."
        ) from None
    files: list[Path] = []
    ignored: list[Problem] = []
    folder = path.name or str(path)
    for entry, is_dir in kinds:
        if entry.name.startswith((".", "~$")):
            continue
        if is_dir:
            message = _MESSAGES["ignored_folder"].format(folder=folder)
        elif entry.suffix.casefold() in ROSTER_SUFFIXES:
            files.append(entry)
            continue
        else:
            message = _MESSAGES["ignored_file"].format(folder=folder)
        ignored.append(Problem("ignored_file", message, file=entry.name, severity="warning"))
    if not files:
        raise RosterError(
            f"le dossier {path} ne contient aucune liste de stagiaires (fichier .xlsx ou "
            ".csv) : mettez-y la liste, ou indiquez le fichier lui-même."
        )
    return files, ignored


def _same_file_key(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


@contextmanager
def _open_table(path: Path, name: str) -> Iterator[_Table]:
    """The roster table of `path`, its lines read as they are asked for (then closed)."""
    head = _read_head(path, name)
    container = container_of(head)
    if container == "zip":
        with _open_xlsx(path, name) as table:
            yield table
    elif container == "ole2":
        raise RosterError(_ole2_message(path, name))
    else:
        with _open_csv(path, name, head) as table:
            yield table


def _read_head(path: Path, name: str) -> bytes:
    """The first bytes of the file, after checking it is a readable, non-empty file."""
    try:
        if path.is_dir():
            raise RosterError(f"{path} est un dossier : indiquez le fichier de la liste.")
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise RosterError(
                f"{name} pèse {size // (1024 * 1024)} Mo : même "
                f"{french_count(MAX_DATA_ROWS)} stagiaires tiennent en quelques dizaines de "
                "Mo ; vérifiez que c'est le bon fichier."
            )
        with path.open("rb") as handle:
            head = handle.read(8192)
            blank = not head.strip(_BLANK_BYTES)
            while blank and (chunk := handle.read(_CHUNK_BYTES)):
                blank = not chunk.strip(_BLANK_BYTES)
    except FileNotFoundError:
        raise RosterError(f"{path} : fichier introuvable ; vérifiez le chemin.") from None
    except OSError as exc:
        raise RosterError(_unreadable(name, exc)) from None
    if blank:
        raise RosterError(
            f"{name} : le fichier est vide. Remplissez la liste (une ligne par stagiaire) "
            "puis relancez."
        )
    return head


_BLANK_BYTES = b" \t\r\n\xef\xbb\xbf;,"


def _unreadable(name: str, exc: OSError) -> str:
    return (
        f"{name} : lecture impossible ({french_os_error(exc)}) ; fermez-le s'il est ouvert "
        "dans un autre programme et vérifiez vos droits."
    )


def _ole2_message(path: Path, name: str) -> str:
    if _file_contains(path, "EncryptionInfo".encode("utf-16-le")):
        return (
            f"{name} est protégé par un mot de passe : ouvrez-le dans Excel, retirez le mot "
            "de passe (Fichier › Informations › Protéger le classeur) puis enregistrez-le au "
            "format Excel (.xlsx)."
        )
    return (
        f"{name} est au format Excel 97-2003 (.xls) : ouvrez-le dans Excel ou LibreOffice et "
        "enregistrez-le au format Excel (.xlsx) (Fichier › Enregistrer sous)."
    )


def _file_contains(path: Path, needle: bytes) -> bool:
    """Whether `needle` occurs in the file, read by chunks."""
    tail = b""
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle) + 1 :]
    except OSError:
        return False
    return False


def _guarded(items: Iterable[_T], describe: Callable[[Exception], str]) -> Iterator[_T]:
    """`items`, a fault of the file being read turned into `RosterError(describe(fault))`."""
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except (RosterError, OSError):
            raise
        except Exception as exc:  # openpyxl, csv and codecs raise many types on a bad file
            raise RosterError(describe(exc)) from None
        yield item


@contextmanager
def _open_xlsx(path: Path, name: str) -> Iterator[_Table]:
    damaged = (
        f"{name} est un fichier compressé abîmé ou qui n'est pas un classeur Excel : "
        "ouvrez-le dans Excel et enregistrez-le à nouveau au format Excel (.xlsx)."
    )
    with path.open("rb") as handle:
        try:
            with zipfile.ZipFile(handle) as archive:
                _check_package(archive, name)
            handle.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                workbook = load_workbook(handle, read_only=True, data_only=True)
        except RosterError:
            raise
        except Exception:  # zipfile and openpyxl raise many types on a damaged file
            raise RosterError(damaged) from None
        try:
            with warnings.catch_warnings():  # read-only sheets are parsed while iterating
                warnings.simplefilter("ignore")
                try:
                    table = _workbook_table(workbook, name, damaged)
                except RosterError:
                    raise
                except Exception:  # openpyxl raises many types on a malformed sheet
                    raise RosterError(damaged) from None
                yield table
        finally:
            workbook.close()


def _check_package(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse, with what to do, packages that are not an .xlsx workbook."""
    members = archive.infolist()
    names = {m.filename for m in members}
    if "mimetype" in names:
        with archive.open("mimetype") as handle:
            mimetype = handle.read(200)
        if b"opendocument" in mimetype:
            raise RosterError(
                f"{name} est un classeur OpenDocument (.ods) : enregistrez-le au format Excel "
                "(.xlsx) ou CSV depuis LibreOffice (Fichier › Enregistrer sous)."
            )
    if "xl/workbook.bin" in names:
        raise RosterError(
            f"{name} est un classeur Excel binaire (.xlsb) : enregistrez-le au format Excel "
            "(.xlsx) (Fichier › Enregistrer sous)."
        )
    if not any(n.startswith("xl/") for n in names):
        raise RosterError(
            f"{name} n'est pas un classeur Excel (c'est une archive ou un autre type de "
            "document) : enregistrez la liste au format Excel (.xlsx) ou CSV."
        )
    if sum(m.file_size for m in members) > _MAX_UNZIPPED_BYTES:
        raise RosterError(
            f"{name} est anormalement volumineux une fois décompressé : enregistrez la liste "
            "seule dans un nouveau classeur (.xlsx)."
        )


def _workbook_table(workbook: Any, name: str, damaged: str) -> _Table:
    sheets = list(workbook.worksheets)
    if not sheets:
        raise RosterError(
            f"{name} ne contient aucune feuille de calcul : mettez la liste dans une feuille "
            f"nommée « {TEMPLATE_SHEET} »."
        )
    preferred = [s for s in sheets if _header_key(str(s.title)) in _SHEET_NAMES]
    ordered = preferred + [s for s in sheets if s not in preferred]
    first_failure: RosterError | None = None
    for sheet in ordered:
        top = [
            list(values)
            for values in sheet.iter_rows(
                min_row=1,
                max_row=HEADER_SEARCH_ROWS,
                max_col=_HEADER_SEARCH_COLUMNS,
                values_only=True,
            )
        ]
        try:
            header_index, columns, problems = _locate_header(top, name, str(sheet.title))
        except RosterError as exc:
            first_failure = first_failure or exc
            continue
        header_row = header_index + 1
        width = max(columns.values()) + 1
        rows = sheet.iter_rows(min_row=header_row + 1, max_col=width, values_only=True)
        numbered = ((number, list(values)) for number, values in enumerate(rows, header_row + 1))
        records = _records(_guarded(numbered, lambda _: damaged), width)
        return _Table(str(sheet.title), header_row, columns, problems, records)
    assert first_failure is not None
    raise first_failure


def _csv_encoding(path: Path, head: bytes) -> str:
    """UTF-16 (with its mark), else UTF-8, else Windows-1252, else Latin-1 (never fails)."""
    candidates = ["utf-8-sig", "cp1252"]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates.insert(0, "utf-16")
    for encoding in candidates:
        if _decodes(path, encoding):
            return encoding
    return "latin-1"


def _decodes(path: Path, encoding: str) -> bool:
    """Whether the whole file decodes with `encoding` (read by chunks)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _looks_binary(data: bytes) -> bool:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    head = data[:8192]
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 13))
    return b"\x00" in head or controls > 2 + len(head) // 50


@contextmanager
def _open_csv(path: Path, name: str, head: bytes) -> Iterator[_Table]:
    if _looks_binary(head):
        raise RosterError(
            f"{name} n'est ni un classeur Excel (.xlsx) ni un fichier CSV : enregistrez la "
            "liste au format Excel (.xlsx) ou CSV (séparateur « ; »)."
        )
    encoding = _csv_encoding(path, head)
    with path.open("r", encoding=encoding, newline="") as handle:
        sample: list[str] = []  # whole lines, enough to find the header and the delimiter
        size = 0
        while size < _CSV_SAMPLE_CHARS and (text_line := handle.readline()):
            sample.append(text_line)
            size += len(text_line)
        if sample:
            sample[0] = sample[0].lstrip("\ufeff")
        text = "".join(sample)
        if text.lstrip()[:1] == "<":
            raise RosterError(
                f"{name} est une page web (HTML/XML), pas un tableau : ouvrez-le dans Excel et "
                "enregistrez-le au format Excel (.xlsx)."
            )
        forced = re.fullmatch(r"\s*sep=(.)\s*", sample[0]) if sample else None
        if forced:  # Excel's « sep=; » first line: not shown by Excel, so not counted
            sample.pop(0)
            text = "".join(sample)
        try:
            delimiter = forced.group(1) if forced else _sniff_delimiter(text)
            lines = itertools.chain(sample, handle)
            reader = csv.reader(lines, delimiter=delimiter)
            top = [row for _, row in zip(range(HEADER_SEARCH_ROWS), reader, strict=False)]
        except csv.Error as exc:
            raise RosterError(_malformed_csv(name, exc)) from None
        header_index, columns, problems = _locate_header(top, name, "")
        header_row = header_index + 1
        header_width = len(top[header_index])
        width = max(columns.values()) + 1
        rest = _guarded(reader, lambda exc: _malformed_csv(name, exc))
        remaining = itertools.chain(top[header_index + 1 :], rest)
        numbered = ((number, values) for number, values in enumerate(remaining, header_row + 1))
        yield _Table(
            "", header_row, columns, problems, _records(numbered, width, header_width), delimiter
        )


def _malformed_csv(name: str, exc: Exception) -> str:
    return (
        f"{name} : fichier CSV mal formé ({exc}) ; ouvrez-le dans Excel et enregistrez-le à "
        "nouveau au format CSV (séparateur « ; »)."
    )


def _sniff_delimiter(text: str) -> str:
    """The delimiter under which a header row is found; else the most frequent one."""
    best, best_score = "", 0
    for delimiter in (";", ",", "\t"):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        top = [row for _, row in zip(range(HEADER_SEARCH_ROWS), reader, strict=False)]
        score = max((len(_match_headers(row)) for row in top), default=0)
        if score > best_score:
            best, best_score = delimiter, score
    if best:
        return best
    first_line = text.split("\n", 1)[0]
    return max((";", ",", "\t"), key=first_line.count)


def _match_headers(cells: Sequence[Any]) -> dict[str, list[int]]:
    """Recognised columns of a candidate header row: key → column indexes (0-based)."""
    found: dict[str, list[int]] = {}
    for index, cell in enumerate(cells):
        key = _HEADER_LOOKUP.get(_header_key(_cell_text(cell)))
        if key:
            found.setdefault(key, []).append(index)
    return found


def _locate_header(
    rows: list[list[Any]], name: str, sheet: str
) -> tuple[int, dict[str, int], list[Problem]]:
    """Find the header among the first rows; problems for missing or repeated columns."""
    best_index = -1
    best: dict[str, list[int]] = {}
    closest: dict[str, list[int]] = {}
    for index, cells in enumerate(rows[:HEADER_SEARCH_ROWS]):
        found = _match_headers(cells)
        if len(found) > len(closest):
            closest = found
        if "last_name" in found and "first_name" in found and len(found) > len(best):
            best_index, best = index, found
    if best_index < 0:
        missing = [c.header for c in ROSTER_COLUMNS if c.required and c.key not in closest]
        where = f"{name}, feuille « {sheet} »" if sheet else name
        listed = ", ".join(f"« {h} »" for h in missing)
        raise RosterError(
            f"{where} : ligne d'en-tête introuvable dans les {HEADER_SEARCH_ROWS} premières "
            f"lignes. Colonnes obligatoires absentes : {listed}. La ligne d'en-tête doit "
            f"contenir : {', '.join(REQUIRED_HEADERS)} (partez du modèle de liste)."
        )
    header_row = best_index + 1
    missing = [c.header for c in ROSTER_COLUMNS if c.required and c.key not in best]
    problems = [
        Problem(
            "missing_column",
            _MESSAGES["missing_column"].format(header=header, row=header_row),
            file=name,
            sheet=sheet,
            row=header_row,
            column=header,
        )
        for header in missing
    ]
    for column in ROSTER_COLUMNS:
        if len(best.get(column.key, [])) > 1:
            problems.append(
                Problem(
                    "duplicate_column",
                    _MESSAGES["duplicate_column"].format(header=column.header),
                    file=name,
                    sheet=sheet,
                    row=header_row,
                    column=column.header,
                )
            )
    return best_index, {key: indexes[0] for key, indexes in best.items()}, problems


def _records(
    rows: Iterable[tuple[int, list[Any]]], width: int, header_width: int = 0
) -> Iterator[_Record]:
    """The non-empty data lines, one at a time, until MAX_EMPTY_RUN empty lines in a row."""
    empty_run = 0
    for number, values in rows:
        cells = list(values[:width]) + [None] * (width - len(values))
        if all(_cell_text(v) == "" for v in cells):
            empty_run += 1
            if empty_run >= MAX_EMPTY_RUN:
                return
            continue
        empty_run = 0
        extra = bool(header_width) and any(_cell_text(v) for v in values[header_width:])
        yield _Record(number, cells, extra)


# --------------------------------------------------------------------------- checking


class _RowChecker:
    """Checks one data line; collects its problems."""

    def __init__(self, table: _Table, record: _Record, name: str) -> None:
        self.table = table
        self.record = record
        self.name = name
        self.problems: list[Problem] = []

    def problem(self, code: str, column: str, message: str, severity: str = "error") -> None:
        self.problems.append(
            Problem(
                code,
                message,
                file=self.name,
                sheet=self.table.sheet,
                row=self.record.row,
                column=column,
                severity=severity,
            )
        )

    def raw(self, key: str) -> Any:
        index = self.table.columns.get(key)
        return None if index is None else self.record.values[index]

    def text(self, key: str) -> str:
        column = _COLUMNS_BY_KEY[key]
        value = _cell_text(self.raw(key))
        if column.key == "tutor_phone" and isinstance(self.raw(key), int | float):
            digits = value
            if digits.isdigit() and len(digits) == 9:  # Excel dropped the leading 0
                value = "0" + digits
        if column.single_line:
            if not value.isascii() or "  " in value:  # the only ASCII space is " "
                value = _SPACE_RUN.sub(" ", value)
            if _has_invisible(value):
                what = (
                    "retour à la ligne"
                    if "\n" in value or "\r" in value
                    else "tabulation"
                    if "\t" in value
                    else "caractère invisible"
                )
                self.problem(
                    "control_character",
                    column.header,
                    _MESSAGES["control_character"].format(what=what, value=_show(value)),
                )
        return value

    def required(self, key: str, value: str) -> None:
        column = _COLUMNS_BY_KEY[key]
        if column.required and key in self.table.columns and not value:
            self.problem(
                "missing_value", column.header, _MESSAGES["missing_value"].format(hint=column.hint)
            )

    def email(self, key: str) -> str:
        column = _COLUMNS_BY_KEY[key]
        value = self.text(key)
        if value.casefold().startswith("mailto:"):
            value = _strip(value[len("mailto:") :])
        self.required(key, value)
        if not value:
            return ""
        if sum(1 for part in re.split(r"[,;\s]+", value) if "@" in part) > 1:
            self.problem(
                "multiple_emails",
                column.header,
                _MESSAGES["multiple_emails"].format(value=_show(value)),
            )
        elif _has_invisible(value):
            self.problem(
                "bad_email",
                column.header,
                _MESSAGES["bad_email_invisible"].format(value=_show(value)),
            )
        elif not is_email(value):
            self.problem(
                "bad_email", column.header, _MESSAGES["bad_email"].format(value=_show(value))
            )
        return value

    def date(self, key: str) -> date | None:
        column = _COLUMNS_BY_KEY[key]
        raw = self.raw(key)
        text = _cell_text(raw)
        self.required(key, text)
        if not text:
            return None
        parsed = _parse_date(raw)
        if parsed is None:
            self.problem("bad_date", column.header, _MESSAGES["bad_date"].format(value=_show(text)))
        return parsed


def _parse_date(value: Any) -> date | None:
    """A real date from xlsx, an Excel serial number, or French/ISO text; else None."""
    parsed: date | None = None
    if isinstance(value, datetime):
        parsed = value.date()
    elif isinstance(value, date):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            serial = from_excel(value)
        except (ValueError, OverflowError, TypeError):
            return None
        parsed = serial.date() if isinstance(serial, datetime) else None
    elif isinstance(value, str):
        text = _strip(value)
        try:
            if match := _DMY.fullmatch(text):
                parsed = date(int(match[4]), int(match[3]), int(match[1]))
            elif match := _ISO.fullmatch(text):
                parsed = date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return None
    if parsed is None or not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        return None
    return parsed


@dataclass(frozen=True)
class _Seen:
    """Where a student (or an identifier) was first met: file and row."""

    file: str
    row: int
    explicit_id: str = ""

    def where(self, name: str) -> str:
        """« 3 », or « 3 de « a.xlsx » » when first met in another file than `name`."""
        return str(self.row) if self.file == name else f"{self.row} de « {self.file} »"


class _RosterChecker:
    """Checks the lines of one or several tables as one roster; fills `result`."""

    def __init__(self, max_rows: int) -> None:
        self.result = RosterResult()
        self.names: dict[str, _Seen] = {}  # folded class|last name|first name → first line
        self.ids: dict[str, _Seen] = {}  # casefolded identifier → first line
        self.max_rows = max_rows
        self.rows_left = max_rows
        self.full = False  # max_rows reached: nothing more is read

    def check(self, table: _Table, name: str) -> None:
        """Check every line of `table` (from file `name`), until the roster is full."""
        self.result.problems.extend(table.problems)
        complete = all(c.key in table.columns for c in ROSTER_COLUMNS if c.required)
        for record in table.records:
            if self.rows_left == 0:
                self.full = True
                self.result.problems.append(
                    Problem(
                        "too_many_rows",
                        _MESSAGES["too_many_rows"].format(limit=french_count(self.max_rows)),
                        file=name,
                        sheet=table.sheet,
                        row=record.row,
                    )
                )
                return
            self.rows_left -= 1
            student = self._check_line(table, record, name, complete)
            if student is not None:
                self.result.students.append(student)

    def _check_line(
        self, table: _Table, record: _Record, name: str, complete: bool
    ) -> Student | None:
        """The student of one line, or None; the line's problems go to `result`."""
        result = self.result
        checker = _RowChecker(table, record, name)
        if fold(_cell_text(checker.raw("last_name"))) == _EXAMPLE_KEY:
            checker.problem("example_row", "Nom", _MESSAGES["example_row"], severity="warning")
            result.problems.extend(checker.problems)
            return None
        if record.extra:
            checker.problem(
                "extra_cells", "", _MESSAGES["extra_cells"].format(delimiter=table.delimiter)
            )
        values: dict[str, str] = {}
        for key in ("last_name", "first_name", "class_name", "company", "tutor_name"):
            values[key] = checker.text(key)
            checker.required(key, values[key])
        last_name = values["last_name"]
        values["tutor_email"] = checker.email("tutor_email")
        start = checker.date("start")
        end = checker.date("end")
        if start and end and end <= start:
            checker.problem(
                "end_before_start",
                "Fin",
                _MESSAGES["end_before_start"].format(
                    start=_french_date(start), end=_french_date(end)
                ),
            )
        explicit_id = _cell_text(checker.raw("student_id"))
        if explicit_id and not _IDENTIFIER.fullmatch(explicit_id):
            checker.problem(
                "bad_identifier",
                "Identifiant",
                _MESSAGES["bad_identifier"].format(value=_show(explicit_id)),
            )
        values["student_email"] = checker.email("student_email")
        values["tutor_phone"] = checker.text("tutor_phone")
        values["referent"] = checker.text("referent")

        identity = (values["class_name"], last_name, values["first_name"])
        student_id = explicit_id or (derive_student_id(*identity) if all(identity) else "")
        here = _Seen(name, record.row, explicit_id)
        if all(identity):
            name_key = "|".join(fold(part) for part in identity)
            first = self.names.get(name_key)
            first_id = self.ids.get(student_id.casefold()) if student_id else None
            if first and not (
                explicit_id
                and first.explicit_id
                and explicit_id.casefold() != first.explicit_id.casefold()
            ):
                checker.problem(
                    "duplicate", "Nom", _MESSAGES["duplicate"].format(first=first.where(name))
                )
            elif first_id:
                checker.problem(
                    "duplicate",
                    "Identifiant",
                    _MESSAGES["duplicate_identifier"].format(
                        value=_show(student_id), first=first_id.where(name)
                    ),
                )
            self.names.setdefault(name_key, here)
        if student_id:
            self.ids.setdefault(student_id.casefold(), here)

        result.problems.extend(checker.problems)
        if complete and start and end and not any(p.severity == "error" for p in checker.problems):
            return Student(
                student_id=student_id,
                last_name=last_name,
                first_name=values["first_name"],
                class_name=values["class_name"],
                company=values["company"],
                tutor_name=values["tutor_name"],
                tutor_email=values["tutor_email"],
                start=start,
                end=end,
                student_email=values["student_email"],
                tutor_phone=values["tutor_phone"],
                referent=values["referent"],
                row=record.row,
            )
        return None

"""`grille archive`: one archive per class and school year, and `grille archive verify`.

An archive is a folder `output/archive/<année>/<classe>/` and the same content zipped beside
it in `<classe>.zip`: the class's recorded bilans (and those of their PDFs that match their
.docx, see `report_files.pdf_fault`; with `--pdf` the missing or stale ones are made
first), the returned files as received, the class's tracking workbook, the grids, a French
readme, `manifeste.json` (SHA-256, size, student and date of every file) and
`manifeste.sig` (HMAC-SHA256 of the manifest with the campaign key). An archive is never
overwritten (`_v2`, `_v3`…) and never half written; it holds no database and never the
secret key. Each archive is recorded (zip's SHA-256, manifest's SHA-256) in the database.

`verify_archive` checks the files against the manifest anywhere, years later; in the
campaign's folder it also checks the signature and the zip's SHA-256 recorded at its
creation, says what it could not check, and records an intact archive as verified (which
`purge` requires).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import importlib.metadata
import io
import itertools
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.classes import select_classes
from pipeline.errors import GrilleError, french_os_error
from pipeline.files import atomic_write_with, safe_name, student_stem
from pipeline.report_files import (
    class_report_files,
    ensure_pdfs,
    file_sha256,
    named_status,
    outdated_report,
    pdf_fault,
    report_stem,
)
from pipeline.safe_zip import SafeZip, UnsafeFile, ZipLimits
from pipeline.settings import Workspace, default_school_year
from pipeline.text import display_name
from pipeline.tracking import (
    StudentStatus,
    build_tracking,
    read_teacher_columns,
    student_statuses,
    to_decide_in_a_document,
)

# ------------------------------------------------------------------ the archive

ARCHIVE_FORMAT = "grille-archive/1"
MANIFEST_NAME = "manifeste.json"
SIGNATURE_NAME = "manifeste.sig"
SIGNATURE_FORMAT = "grille-signature/1"
_SIGNATURE_CONTEXT = b"grille: archive manifest\n"  # this key signs workbooks too
README_NAME = "LISEZMOI.txt"
LEGACY_MANIFEST = "MANIFESTE.csv"  # archives made by grille before per-class archives
ARCHIVE_DIR = "archive"  # under output/
_VERIFY_LIMITS = ZipLimits(
    max_members=100_000, max_member_size=1024**3, max_total_size=8 * 1024**3, max_ratio=1000
)


@dataclass(frozen=True)
class _Entry:
    """One file to archive: its path in the archive, its source, who and what it is about."""

    path: str
    kind: str  # bilan, bilan_classe, pdf, retour, suivi, grille, lisezmoi
    source: Path | bytes
    student_id: str | None = None
    student: str | None = None
    date: str | None = None
    grid_id: str | None = None
    grid_version: str | None = None
    expected_sha256: str = ""  # a stored return must still be the file collected


@dataclass
class ArchivedClass:
    """One class archive written by `build_archives`."""

    class_name: str
    school_year: str
    folder: Path
    zip_path: Path
    sha256: str  # of the zip
    counts: dict[str, int]  # files per kind
    warnings: list[str] = field(default_factory=list)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _grille_version() -> str:
    try:
        return importlib.metadata.version("grille")
    except importlib.metadata.PackageNotFoundError:
        return "inconnue"


def _modified_at(path: Path) -> str:
    """When a file was last changed, as `state.now()`."""
    return datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0).isoformat(sep=" ")


def _report_entries(
    campaign: Campaign, class_name: str, statuses: list[StudentStatus], warnings: list[str]
) -> list[_Entry]:
    """The class's recorded reports and those of their PDFs that match them, each tied to
    its student when it has one; a PDF left out is said in `warnings`."""
    grid_of = {s.student_id: (s.grid_id or None, s.grid_version or None) for s in statuses}
    status_of = {s.student_id: s for s in statuses}
    students = state.students_by_id(campaign.db)
    entries: list[_Entry] = []
    used: set[str] = set()
    reports = class_report_files(campaign, class_name)
    names = {path.name for path, _ in reports}
    for path, record in reports:
        student_id = record.student_id
        status = status_of.get(student_id or "")
        if status is not None and outdated_report(path, status):
            # a bilan the status has changed since: a jury never reads it, nor two
            # contradictory bilans of one student side by side
            current = report_stem(status.student, status.status) + path.suffix
            todo = (
                f"le bilan à jour est {current} : reportez-y ce que vous aviez modifié à la "
                "main s'il le faut"
                if current in names
                else "refaites les bilans (« grille report »)"
            )
            warnings.append(
                f"{path.name} : écrit quand le retour était « {named_status(path)} », ce "
                f"qu'il n'est plus : laissé hors de l'archive ; {todo}, puis archivez de "
                "nouveau."
            )
            continue
        if path.suffix.lower() == ".pdf":
            kind = "pdf"
            fault = pdf_fault(campaign, record)
            if fault:
                remade = path.with_suffix(".docx").is_file()
                advice = " ; « grille archive --pdf » le refait" if remade else ""
                warnings.append(f"{fault} : laissé hors de l'archive{advice}.")
                continue
        elif student_id is None and path.stem.startswith("bilan_classe_"):
            kind = "bilan_classe"
        else:
            kind = "bilan"
        if student_id is not None:
            grid_id, grid_version = grid_of.get(student_id, (None, None))
        else:
            grid_id, grid_version = campaign.grid.id, campaign.grid.version
        archived = f"rapports/{path.name}"
        if archived in used:  # a report written before 007 in another folder
            archived = f"rapports/{path.parent.name}/{path.name}"
        used.add(archived)
        student = students.get(student_id) if student_id else None
        entries.append(
            _Entry(
                archived,
                kind,
                path,
                student_id,
                student.display_name if student else None,
                record.written_at or _modified_at(path),
                grid_id,
                grid_version,
            )
        )
    return entries


def _return_entries(campaign: Campaign, class_name: str) -> list[_Entry]:
    """Every return recorded for the class's students, earlier ones too, as collected."""
    entries = []
    for row in state.class_returns(campaign.db, class_name):
        stored = campaign.workspace.root / row["stored_file"]
        name = (
            f"{student_stem(row['last_name'], row['first_name'], row['student_id'])}_"
            f"{row['collected_at'][:10]}_{row['sha256'][:8]}"
        )
        entries.append(
            _Entry(
                f"retours/{name}{stored.suffix}",
                "retour",
                stored,
                row["student_id"],
                display_name(row["last_name"], row["first_name"]),
                row["collected_at"],
                row["grid_id"],
                row["grid_version"],
                expected_sha256=row["sha256"],
            )
        )
    return entries


def _grid_entries(campaign: Campaign, class_name: str) -> list[_Entry]:
    """The grids the class's workbooks and returns were made with (every grid if none)."""
    used = state.class_grid_versions(campaign.db, class_name)
    return [
        _Entry(
            f"grilles/{safe_name(grid_id, 60)}-v{safe_name(grid_version)}.toml",
            "grille",
            source.encode("utf-8"),
            grid_id=grid_id,
            grid_version=grid_version,
        )
        for grid_id, grid_version, source in state.grid_sources(campaign.db)
        if not used or (grid_id, grid_version) in used
    ]


def _tracking_bytes(
    campaign: Campaign, statuses: list[StudentStatus], returns: list[_Entry]
) -> bytes:
    """The tracking workbook of these students, with what the teacher wrote in suivi.xlsx;
    each returned file links to its copy in the archive (`returns`, beside suivi.xlsx)."""
    archived = {
        entry.source.relative_to(campaign.workspace.root).as_posix(): entry.path
        for entry in returns
        if isinstance(entry.source, Path)
    }
    links = {
        st.student_id: archived[st.return_file] for st in statuses if st.return_file in archived
    }
    workbook = build_tracking(
        statuses,
        read_teacher_columns(campaign.db, campaign.workspace.tracking_path),
        links=links,
    )
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _readme(campaign: Campaign, class_name: str, school_year: str, name: str, now: str) -> str:
    c = campaign.config
    return (
        f"Archive des évaluations de stage — classe {class_name} — année {school_year}\n"
        f"Établissement : {c.school or '—'}\nSession : {c.session or '—'}\n"
        f"Professeur : {c.teacher_name or '—'}\n"
        f"Archive créée le {now[8:10]}/{now[5:7]}/{now[:4]} à {now[11:16]} "
        f"par grille {_grille_version()}.\n\n"
        "Contenu :\n"
        "  rapports/       les bilans Word de chaque stagiaire et le bilan de la classe "
        "(et leurs PDF)\n"
        "  retours/        chaque classeur renvoyé par les tuteurs, tel que reçu, octet pour "
        "octet\n"
        "  suivi.xlsx      le tableau de suivi de la classe (statuts, notes et appréciations de "
        "l'équipe)\n"
        "  grilles/        la grille d'évaluation utilisée, au format texte (TOML)\n"
        f"  {MANIFEST_NAME}  la liste de ces fichiers : pour chacun son empreinte SHA-256, sa "
        "taille, le stagiaire et la date\n"
        f"  {SIGNATURE_NAME}   la signature du manifeste par la clé secrète de la campagne\n\n"
        "Vérifier l'archive :\n"
        f"  avec grille : grille archive verify {name}.zip\n"
        "    (signale chaque fichier absent, modifié ou ajouté depuis l'archivage ; lancé dans\n"
        "    le dossier de la campagne, contrôle aussi la signature et l'empreinte de l'archive\n"
        "    enregistrée à sa création)\n"
        "  sans grille : calculez l'empreinte SHA-256 d'un fichier et comparez-la à celle du "
        "manifeste\n"
        "    Windows : certutil -hashfile FICHIER SHA256\n"
        "    macOS, Linux : shasum -a 256 FICHIER\n"
    )


def _free_name(folder: Path, base: str) -> str:
    """`base`, else `base_v2`, `base_v3`…: the first name with neither folder nor zip."""
    for number in itertools.count(1):
        name = base if number == 1 else f"{base}_v{number}"
        if not os.path.lexists(folder / name) and not os.path.lexists(folder / f"{name}.zip"):
            return name
    raise AssertionError("unreachable")


def _manifest_item(entry: _Entry, copied: Path) -> dict[str, Any]:
    return {
        "path": entry.path,
        "sha256": file_sha256(copied),
        "size": copied.stat().st_size,
        "kind": entry.kind,
        "student_id": entry.student_id,
        "student": entry.student,
        "date": entry.date,
        "grid_id": entry.grid_id,
        "grid_version": entry.grid_version,
    }


def _copy_in(entry: _Entry, target: Path, root: Path) -> dict[str, Any]:
    """Copy one entry into the folder being built; its manifest line."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(entry.source, bytes):
        target.write_bytes(entry.source)
    else:
        shutil.copyfile(entry.source, target)
    item = _manifest_item(entry, target)
    if entry.expected_sha256 and item["sha256"] != entry.expected_sha256:
        where = entry.source.relative_to(root) if isinstance(entry.source, Path) else entry.path
        raise GrilleError(
            f"{where} : ce retour a changé depuis sa collecte (empreinte différente) ; "
            "aucune archive n'est écrite. Restaurez le fichier d'origine depuis une sauvegarde."
        )
    return item


def _zip_folder(handle: IO[bytes], folder: Path, names: list[str]) -> None:
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as package:
        for name in names:
            package.write(folder / name, arcname=name)


def manifest_signature(key: bytes, manifest: bytes) -> str:
    """HMAC-SHA256 of a manifest's bytes with the campaign key (hex), for this use only."""
    return hmac.new(key, _SIGNATURE_CONTEXT + manifest, hashlib.sha256).hexdigest()


def _signature_file(key: bytes, campaign_id: str, manifest: bytes) -> bytes:
    """The text of `manifeste.sig`: who signed the manifest, how, and the signature."""
    signature = {
        "format": SIGNATURE_FORMAT,
        "note": "Signature du manifeste par la clé secrète de la campagne : seule la campagne "
        "peut la vérifier (grille archive verify, lancé dans le dossier de la campagne).",
        "campaign_id": campaign_id,
        "algorithm": "HMAC-SHA256",
        "signed_file": MANIFEST_NAME,
        "signature": manifest_signature(key, manifest),
    }
    return (json.dumps(signature, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _write_archive(
    year_dir: Path,
    name: str,
    entries: list[_Entry],
    header: dict[str, Any],
    root: Path,
    key: bytes,
) -> tuple[Path, Path, str]:
    """Build `year_dir/name/` and `name.zip` atomically, the manifest signed with `key`; on any
    failure nothing is left. (folder, zip, SHA-256 of the manifest)."""
    year_dir.mkdir(parents=True, exist_ok=True)
    folder, zip_path = year_dir / name, year_dir / f"{name}.zip"
    building = Path(tempfile.mkdtemp(dir=year_dir, prefix=f".{name}.", suffix=".tmp"))
    placed = False
    try:
        files = [_copy_in(entry, building / entry.path, root) for entry in entries]
        manifest = {**header, "files": files}
        manifest_bytes = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode()
        (building / MANIFEST_NAME).write_bytes(manifest_bytes)
        (building / SIGNATURE_NAME).write_bytes(
            _signature_file(key, header["campaign_id"], manifest_bytes)
        )
        if os.name == "posix":
            os.chmod(building, 0o755)  # mkdtemp makes it private; an archive is for the jury
        os.rename(building, folder)
        placed = True
        names = [MANIFEST_NAME, SIGNATURE_NAME, *(entry.path for entry in entries)]
        atomic_write_with(zip_path, lambda handle: _zip_folder(handle, folder, names))
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if placed:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, zip_path, _sha(manifest_bytes)


def _archive_class(
    campaign: Campaign, class_name: str, school_year: str, statuses: list[StudentStatus]
) -> ArchivedClass:
    ws = campaign.workspace
    year_dir = ws.output_dir / ARCHIVE_DIR / safe_name(school_year, 20)
    name = _free_name(year_dir, state.class_folder(campaign.db, class_name))
    now = state.now()
    readme = _readme(campaign, class_name, school_year, name, now).encode("utf-8")
    warnings: list[str] = []
    returns = _return_entries(campaign, class_name)
    entries = [
        _Entry(README_NAME, "lisezmoi", readme, date=now),
        *_report_entries(campaign, class_name, statuses, warnings),
        *returns,
        _Entry("suivi.xlsx", "suivi", _tracking_bytes(campaign, statuses, returns), date=now),
        *_grid_entries(campaign, class_name),
    ]
    grids = [{"id": e.grid_id, "version": e.grid_version} for e in entries if e.kind == "grille"]
    header = {
        "format": ARCHIVE_FORMAT,
        "grille_version": _grille_version(),
        "campaign_id": campaign.config.campaign_id,
        "created_at": now,
        "school": campaign.config.school,
        "session": campaign.config.session,
        "school_year": school_year,
        "class": class_name,
        "grids": grids,
    }
    folder, zip_path, manifest_digest = _write_archive(
        year_dir, name, entries, header, ws.root, campaign.key
    )
    digest = file_sha256(zip_path)
    state.record_archive(
        campaign.db,
        zip_path.relative_to(ws.root).as_posix(),
        digest,
        class_name,
        school_year,
        now,
        manifest_digest,
    )
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.kind] = counts.get(entry.kind, 0) + 1
    return ArchivedClass(class_name, school_year, folder, zip_path, digest, counts, warnings)


@dataclass
class ArchiveResult:
    """What `build_archives` wrote: one archive per class, and what the teacher should know
    (each warning once)."""

    archives: list[ArchivedClass] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self, root: Path) -> list[tuple[str, str]]:
        """What `grille archive` says of this result, in order: (kind, French line), kind
        "ok" or "attention" (a warning: the command prints it on its error output)."""
        lines: list[tuple[str, str]] = []
        for item in self.archives:
            counts = ", ".join(
                f"{item.counts[kind]} {label}"
                for kind, label in ARCHIVED_KINDS
                if item.counts.get(kind)
            )
            lines += [
                ("ok", f"Classe {item.class_name}, année {item.school_year} :"),
                ("ok", f"  dossier : {item.folder.relative_to(root).as_posix()}"),
                ("ok", f"  archive : {item.zip_path.relative_to(root).as_posix()}"),
                ("ok", f"  empreinte SHA-256 de l'archive : {item.sha256}"),
                ("ok", f"  {counts} ; {sum(item.counts.values())} fichier(s) au manifeste."),
            ]
        lines += [("attention", f"Attention — {warning}") for warning in self.warnings]
        return lines


ARCHIVED_KINDS = (  # the kinds of file an archive holds, and how the teacher reads them
    ("bilan", "bilan(s)"),
    ("bilan_classe", "bilan(s) de classe"),
    ("pdf", "PDF"),
    ("retour", "retour(s)"),
    ("suivi", "tableau de suivi"),
    ("grille", "grille(s)"),
)


def build_archives(
    campaign: Campaign,
    *,
    class_name: str | None = None,
    school_year: str | None = None,
    pdf: bool = False,
    today: date | None = None,
) -> ArchiveResult:
    """One archive per class with reports (or only the class `class_name` names, see
    `select_classes`), for `school_year`; with `pdf`, the missing or stale PDFs are made
    first."""
    year = school_year or campaign.config.school_year or default_school_year(today or date.today())
    classes = select_classes(campaign, class_name)

    def has_reports(klass: str) -> bool:
        return any(p.suffix.lower() == ".docx" for p, _ in class_report_files(campaign, klass))

    ready = [klass for klass in classes if has_reports(klass)]
    if not ready:
        if class_name is not None:
            raise GrilleError(
                f"Aucun bilan à archiver pour la classe « {classes[0]} » : lancez d'abord "
                f'« grille report --class "{classes[0]}" ».'
            )
        raise GrilleError("Aucun bilan à archiver : lancez d'abord « grille report ».")
    statuses = student_statuses(campaign.db, how_to_decide=to_decide_in_a_document)
    result = ArchiveResult()
    for klass in ready:
        problem = ensure_pdfs(campaign, klass) if pdf else ""
        archived = _archive_class(
            campaign, klass, year, [s for s in statuses if s.class_name == klass]
        )
        if problem:
            archived.warnings.insert(0, f"{problem} L'archive est faite sans ces PDF.")
        result.archives.append(archived)
        result.warnings += [w for w in archived.warnings if w not in result.warnings]
    return result


# ------------------------------------------------------------------ verification


class _Members:
    """The files of an archive, zipped or unpacked in a folder, by path inside it.

    In a folder, only regular files are members: a symbolic link (or any other special
    file) is never followed, only reported in `anomalies`.
    """

    def __init__(self, path: Path) -> None:
        self._folder: Path | None = None
        self._zip: SafeZip | None = None
        self.anomalies: list[str] = []
        self.sha256 = ""  # of the zip
        if path.is_dir():
            self._folder = path
            self.names = self._walk(path)
        else:
            data = path.read_bytes()
            self.sha256 = _sha(data)
            self._zip = SafeZip(data, path.name, _VERIFY_LIMITS)
            self.names = [n for n in self._zip.names() if not n.endswith("/")]

    @property
    def zipped(self) -> bool:
        return self._zip is not None

    def _walk(self, folder: Path) -> list[str]:
        def unreadable(exc: OSError) -> None:
            where = Path(exc.filename or folder).relative_to(folder).as_posix()
            self.anomalies.append(f"{where} : dossier illisible ({french_os_error(exc)}).")

        names = []
        for top, dirs, files in os.walk(folder, onerror=unreadable):  # links never followed
            for name in sorted(dirs + files):
                full = Path(top, name)
                relative = full.relative_to(folder).as_posix()
                mode = full.lstat().st_mode
                if stat.S_ISLNK(mode):
                    self.anomalies.append(
                        f"{relative} : lien symbolique, non suivi ; une archive n'en contient "
                        "pas : remplacez-le par le fichier d'origine."
                    )
                elif stat.S_ISREG(mode):
                    names.append(relative)
                elif not stat.S_ISDIR(mode):
                    self.anomalies.append(f"{relative} : fichier spécial, non lu.")
        self.anomalies.sort()
        return sorted(names)

    def read(self, name: str) -> bytes | None:
        """The bytes of `name`, or None when it is missing."""
        if name not in self.names:
            return None
        if self._zip is not None:
            return self._zip.read(name)
        assert self._folder is not None
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        with os.fdopen(os.open(self._folder / name, flags), "rb") as handle:
            return handle.read()


@dataclass
class Verification:
    """What `verify_archive` found, what it could and could not check, and whether the
    campaign recorded the archive as verified."""

    name: str
    problems: list[str] = field(default_factory=list)
    zip_sha256: str = ""  # "" for an unpacked folder
    files: int | None = None  # files checked against the manifest; None: manifest unread
    signature: str = "non vérifiée (hors de la campagne)"
    fingerprint: str = "non comparée (hors de la campagne)"
    verified_classes: list[str] = field(default_factory=list)  # recorded as verified
    record_problem: str = ""  # why an intact archive could not be recorded as verified

    def lines(self) -> list[tuple[str, str]]:
        """What `grille archive verify` says, in order, except its verdict when the archive is
        not intact (`verdict`): (kind, French line), kind "ok" or "attention" (printed by
        the command on its error output)."""
        lines = []
        if self.zip_sha256:
            lines.append(
                ("ok", f"{self.name} : empreinte SHA-256 de l'archive : {self.zip_sha256}")
            )
        lines += [("attention", f"  Erreur — {problem}") for problem in self.problems]
        if self.summary():
            lines.append(("ok", self.summary()))
        if self.problems:
            return lines
        lines.append(
            ("ok", f"{self.name} : archive intègre, chaque fichier correspond au manifeste.")
        )
        if self.record_problem:
            lines.append(
                (
                    "attention",
                    "Attention — vérification non enregistrée dans la campagne : "
                    f"{self.record_problem}",
                )
            )
        elif self.verified_classes:
            lines.append(
                (
                    "ok",
                    f"Vérification enregistrée pour {', '.join(self.verified_classes)} : "
                    "« grille purge » est possible.",
                )
            )
        return lines

    @property
    def verdict(self) -> str:
        """Why the archive is not intact, in one French sentence ("" when it is)."""
        if not self.problems:
            return ""
        return f"{self.name} : {len(self.problems)} problème(s) ; l'archive n'est pas intègre."

    def summary(self) -> str:
        """One French line: what was checked and what could not be ("" if nothing was)."""
        if self.files is None:
            return ""
        label = "empreinte de l'archive" if self.zip_sha256 else "empreinte du manifeste"
        return (
            f"Vérifié : {self.files} fichier(s), empreintes et tailles ; signature de la "
            f"campagne : {self.signature} ; {label} : {self.fingerprint}."
        )


@dataclass
class _CampaignView:
    """What the campaign in whose folder `verify` runs knows: its id, key and archives."""

    root: Path
    campaign_id: str
    key: bytes | None
    archives: list[sqlite3.Row]
    unreadable: str = ""  # why its database could not be read


def _campaign_view(workspace: Workspace | None) -> _CampaignView | None:
    if workspace is None or not workspace.config_path.is_file():
        return None
    try:
        campaign_id = workspace.load_config().campaign_id
    except GrilleError:
        return None
    try:
        key: bytes | None = workspace.load_key()
    except GrilleError:
        key = None
    view = _CampaignView(workspace.root, campaign_id, key, [])
    if not workspace.db_path.is_file():
        view.unreadable = "base de la campagne absente"
        return view
    try:
        db = state.connect(workspace.db_path)
        try:
            view.archives = state.archives(db)
        finally:
            db.close()
    except (GrilleError, sqlite3.Error, OSError):
        view.unreadable = "base de la campagne illisible"
    return view


def _compare_recorded(
    result: Verification,
    view: _CampaignView | None,
    path: Path,
    members: _Members,
    manifest: bytes | None,
) -> sqlite3.Row | None:
    """Compare the archive with the one the campaign recorded at its creation (the zip's
    SHA-256, or the manifest's for a folder); the recorded archive it is, if any."""
    if view is None:
        return None
    if view.unreadable:
        result.fingerprint = f"non comparée ({view.unreadable})"
        return None
    target = path.resolve()

    def located(row: sqlite3.Row) -> Path:
        zip_path = (view.root / str(row["path"])).resolve()
        return zip_path if members.zipped else zip_path.with_suffix("")

    manifest_sha = _sha(manifest) if manifest is not None else None
    recorded = next((row for row in reversed(view.archives) if located(row) == target), None)
    if recorded is not None:
        expected: str | None = recorded["sha256" if members.zipped else "manifest_sha256"]
        actual = members.sha256 if members.zipped else manifest_sha
        what = path.name if members.zipped else MANIFEST_NAME
        if expected is None or actual is None:
            result.fingerprint = "non comparée (aucune empreinte enregistrée ou lisible)"
        elif expected == actual:
            result.fingerprint = "identique à celle enregistrée à sa création"
        else:
            result.fingerprint = "DIFFÉRENTE de celle enregistrée à sa création"
            result.problems.append(
                f"{what} : empreinte différente de celle enregistrée à la création de "
                f"l'archive ({expected}) : modifié ou remplacé depuis."
            )
        return recorded
    same_zip = next(
        (r for r in view.archives if members.zipped and r["sha256"] == members.sha256), None
    )
    if same_zip is not None:
        result.fingerprint = f"identique à celle enregistrée pour {same_zip['path']}"
        return same_zip
    same_manifest = next(
        (r for r in view.archives if manifest_sha and r["manifest_sha256"] == manifest_sha), None
    )
    if same_manifest is not None:
        result.fingerprint = f"manifeste identique à celui enregistré pour {same_manifest['path']}"
        return same_manifest
    result.fingerprint = "non comparée (archive inconnue de cette campagne)"
    return None


def _manifest_campaign(manifest: bytes) -> str | None:
    """The campaign id written in a JSON manifest (archives made since they are signed)."""
    try:
        header = json.loads(manifest.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    value = header.get("campaign_id") if isinstance(header, dict) else None
    return value if isinstance(value, str) else None


def _check_signature(
    result: Verification,
    view: _CampaignView | None,
    members: _Members,
    manifest: bytes,
    recorded: sqlite3.Row | None,
) -> None:
    """Check `manifeste.sig` with the campaign key, when the archive is this campaign's."""
    try:
        signed = members.read(SIGNATURE_NAME)
    except (UnsafeFile, OSError) as exc:
        reason = _zip_reason(exc) if isinstance(exc, UnsafeFile) else french_os_error(exc)
        result.problems.append(f"{SIGNATURE_NAME} : illisible ({reason}).")
        result.signature = "illisible"
        return
    signature: dict[str, Any] = {}
    if signed is not None:
        try:
            loaded = json.loads(signed.decode("utf-8"))
            signature = loaded if isinstance(loaded, dict) else {}
        except (ValueError, UnicodeDecodeError):
            pass
    written_for = _manifest_campaign(manifest)
    if view is None:
        result.signature = "non vérifiée (hors de la campagne)" if signed else "absente"
        return
    ours = recorded is not None or view.campaign_id in (signature.get("campaign_id"), written_for)
    if not ours:
        result.signature = "non vérifiée (archive d'une autre campagne)" if signed else "absente"
        return
    if view.key is None:
        result.signature = "non vérifiée (clé de la campagne absente)"
        return
    if signed is None:
        if written_for is None and (recorded is None or recorded["manifest_sha256"] is None):
            result.signature = "absente (archive faite avant la signature des manifestes)"
            return
        result.signature = "ABSENTE"
        result.problems.append(
            f"{SIGNATURE_NAME} : absente, alors que cette archive a été signée à sa création : "
            "le manifeste a pu être remplacé."
        )
        return
    value = signature.get("signature")
    if signature.get("format") != SIGNATURE_FORMAT or not isinstance(value, str):
        result.signature = "INVALIDE"
        result.problems.append(f"{SIGNATURE_NAME} : signature illisible ou mal formée.")
    elif hmac.compare_digest(value, manifest_signature(view.key, manifest)):
        result.signature = "valide"
    else:
        result.signature = "INVALIDE"
        result.problems.append(
            f"{SIGNATURE_NAME} : signature invalide : le manifeste a été modifié après "
            "l'archivage (ou signé sans la clé de cette campagne)."
        )


def _listed_files(data: bytes) -> list[tuple[str, str, int]]:
    """(path, sha256, size) of each file of a JSON manifest; ValueError if malformed."""
    manifest = json.loads(data.decode("utf-8"))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise ValueError("liste « files » absente")
    if manifest.get("format") != ARCHIVE_FORMAT:
        raise ValueError(f"format « {manifest.get('format')} » inconnu, {ARCHIVE_FORMAT} attendu")
    listed = []
    for item in manifest["files"]:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("path"), str)
            and isinstance(item.get("sha256"), str)
            and isinstance(item.get("size"), int)
        ):
            raise ValueError(f"entrée sans chemin, empreinte ou taille : {item!r:.80}")
        listed.append((item["path"], item["sha256"], item["size"]))
    return listed


def _legacy_listed_files(data: bytes) -> list[tuple[str, str, int]]:
    """(path, sha256, size) of each file of a MANIFESTE.csv (archives before per-class ones)."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8")), delimiter=";"))[1:]
    return [(name, digest, int(size)) for name, digest, size in rows]


def _zip_reason(exc: UnsafeFile) -> str:
    """SafeZip's reason, without its advice to ask a tutor again (meant for returns)."""
    return "zip endommagé ou incomplet" if exc.damaged else exc.reason.rstrip(".")


def verify_archive(path: Path, workspace: Workspace | None = None) -> Verification:
    """Check every file of an archive (zip or folder) against its manifest: missing, altered
    or added files, unreadable or empty manifest, links in a folder. In the folder of the
    campaign that made it (`workspace`), also the manifest's signature with the campaign key
    and the SHA-256 recorded when the archive was made. No problem: intact, and the
    campaign's archives identical to that zip are recorded as verified."""
    result = _check_archive(path, workspace)
    if not result.problems and workspace is not None:
        try:
            result.verified_classes = _record_verification(workspace, path)
        except (GrilleError, OSError, sqlite3.Error) as exc:
            result.record_problem = str(exc)
    return result


def _check_archive(path: Path, workspace: Workspace | None) -> Verification:
    """What `verify_archive` checks; nothing is recorded."""
    result = Verification(path.name)
    try:
        members = _Members(path)
    except UnsafeFile as exc:
        result.problems.append(f"{path.name} : archive illisible ({_zip_reason(exc)}).")
        return result
    except OSError as exc:
        result.problems.append(f"{path.name} : archive illisible ({french_os_error(exc)}).")
        return result
    result.zip_sha256 = members.sha256
    result.problems += members.anomalies
    view = _campaign_view(workspace)
    extra_allowed = {MANIFEST_NAME, SIGNATURE_NAME}
    manifest_name = MANIFEST_NAME
    if MANIFEST_NAME not in members.names and LEGACY_MANIFEST in members.names:
        manifest_name = LEGACY_MANIFEST
        extra_allowed = {LEGACY_MANIFEST, README_NAME}
    try:
        data = members.read(manifest_name)
    except (UnsafeFile, OSError) as exc:
        reason = _zip_reason(exc) if isinstance(exc, UnsafeFile) else french_os_error(exc)
        result.problems.append(f"{manifest_name} : illisible ({reason}).")
        _compare_recorded(result, view, path, members, None)
        return result
    recorded = _compare_recorded(result, view, path, members, data)
    if data is None:
        result.problems.append(
            f"{MANIFEST_NAME} : manifeste absent de {path.name} ; ce n'est pas une archive "
            "grille, ou le manifeste a été supprimé : l'archive ne peut pas être vérifiée."
        )
        return result
    try:
        reader = _legacy_listed_files if manifest_name == LEGACY_MANIFEST else _listed_files
        listed = reader(data)
    except (ValueError, UnicodeDecodeError) as exc:
        result.problems.append(
            f"{manifest_name} : manifeste illisible ou mal formé ({exc}) ; l'archive ne peut "
            "pas être vérifiée."
        )
        return result
    if not listed:
        result.problems.append(
            f"{manifest_name} : manifeste vide, il ne liste aucun fichier ; l'archive ne peut "
            "pas être vérifiée."
        )
        return result
    result.files = len(listed)
    for name, digest, size in listed:
        try:
            content = members.read(name)
        except (UnsafeFile, OSError) as exc:
            reason = _zip_reason(exc) if isinstance(exc, UnsafeFile) else french_os_error(exc)
            result.problems.append(f"{name} : illisible ({reason}).")
            continue
        if content is None:
            result.problems.append(f"{name} : absent de l'archive (supprimé après l'archivage).")
        elif _sha(content) != digest or len(content) != size:
            sizes = f", {len(content)} octets au lieu de {size}" if len(content) != size else ""
            result.problems.append(
                f"{name} : contenu modifié depuis l'archivage (empreinte différente{sizes})."
            )
    for name in sorted(set(members.names) - {n for n, _, _ in listed} - extra_allowed):
        result.problems.append(f"{name} : ajouté après l'archivage (absent du manifeste).")
    if manifest_name == MANIFEST_NAME:
        _check_signature(result, view, members, data, recorded)
    else:
        result.signature = "absente (archive faite avant la signature des manifestes)"
    return result


def _record_verification(workspace: Workspace, path: Path) -> list[str]:
    """Mark the campaign's archives identical to the zip `path` as verified; their classes.

    Does nothing (returns []) without a campaign in `workspace`: verifying needs none.
    """
    if not path.is_file() or not workspace.config_path.is_file() or not workspace.db_path.is_file():
        return []
    digest = file_sha256(path)
    db = state.connect(workspace.db_path)
    try:
        return state.mark_archives_verified(db, digest)
    finally:
        db.close()

"""Reports of the campaign → files under `output/rapports/<classe>/`, PDF, and the archive.

Each written report is recorded (path and sha256) in the database. A report that the
teacher edited by hand since grille wrote it is never overwritten: the new version is
written beside it and the teacher is told. `--pdf` converts through LibreOffice.

The archive (`grille archive`) is made per class and school year: a folder
`output/archive/<année>/<classe>/` and the same content zipped beside it in `<classe>.zip`:
the class's reports, the returned files as received, the class's tracking workbook, the
grid, a French readme and `manifeste.json` (SHA-256, size, student and date of every file),
which `grille archive verify` checks, years later, without the campaign. An archive is never
overwritten (`_v2`, `_v3`…) and never half written. It holds no database and never the
secret key. `grille purge` then deletes the class's personal data from the campaign, once
its latest archive has been verified.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import io
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.errors import GrilleError, french_os_error
from pipeline.files import atomic_write_bytes, atomic_write_with, safe_name
from pipeline.report import (
    StudentReportData,
    build_class_report,
    build_student_report,
    document_bytes,
)
from pipeline.roster import Student
from pipeline.safe_zip import SafeZip, UnsafeFile, ZipLimits
from pipeline.settings import Workspace, default_school_year
from pipeline.tracking import (
    StudentStatus,
    build_tracking,
    read_teacher_columns,
    student_statuses,
    team_appreciations,
)
from pipeline.validation import Evaluation


@dataclass
class ReportResult:
    """What `write_reports` wrote, kept or skipped."""

    written: list[Path] = field(default_factory=list)
    kept_edited: list[tuple[Path, Path]] = field(default_factory=list)  # (teacher's, new one)
    without_return: list[str] = field(default_factory=list)
    pdfs: list[Path] = field(default_factory=list)
    pdf_problem: str = ""


def report_data(
    campaign: Campaign, statuses: list[StudentStatus]
) -> tuple[list[StudentReportData], list[StudentStatus]]:
    """(data of every student with a recognised return, students without one)."""
    team = team_appreciations(campaign.db, campaign.workspace.tracking_path)
    with_return, without = [], []
    for status in statuses:
        if status.evaluation is None or status.status not in ("complete", "incomplete", "invalid"):
            without.append(status)
            continue
        problems = [*status.missing, *status.invalid]
        if status.match == "visible":
            problems.insert(0, status.match_note)
        with_return.append(
            StudentReportData(
                student=status.student,
                evaluation=Evaluation.from_json(status.evaluation),
                status=status.status,
                problems=tuple(problems),
                team_appreciation=team.get(status.student_id, ""),
                returned_on=date.fromisoformat(status.returned_at[:10])
                if status.returned_at
                else None,
            )
        )
    return with_return, without


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def report_stem(student: Student) -> str:
    """File name of a student's report, without extension: `bilan_NOM_Prenom_id`."""
    return (
        f"bilan_{safe_name(student.last_name).upper()}_"
        f"{safe_name(student.first_name)}_{safe_name(student.student_id)}"
    )


def _write_report(campaign: Campaign, path: Path, data: bytes, result: ReportResult) -> Path:
    """Write a report unless the teacher edited the previous one; record it."""
    root = campaign.workspace.root
    relative = path.relative_to(root).as_posix()
    target = path
    if path.exists():
        row = campaign.db.execute(
            "SELECT sha256 FROM reports WHERE file = ?", (relative,)
        ).fetchone()
        on_disk = _sha(path.read_bytes())
        if row is None or row["sha256"] != on_disk:  # not the file grille wrote last
            target = path.with_name(f"{path.stem}_nouveau{path.suffix}")
            result.kept_edited.append((path, target))
    atomic_write_bytes(target, data)
    with state.transaction(campaign.db) as db:
        db.execute(
            "INSERT INTO reports (file, sha256, written_at) VALUES (?, ?, ?) "
            "ON CONFLICT(file) DO UPDATE SET sha256 = excluded.sha256, "
            "written_at = excluded.written_at",
            (target.relative_to(root).as_posix(), _sha(data), state.now()),
        )
    result.written.append(target)
    return target


def write_reports(
    campaign: Campaign,
    *,
    student_ids: set[str] | None = None,
    class_name: str | None = None,
    pdf: bool = False,
    today: date | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReportResult:
    """Write the per-student and per-class reports of the latest returns."""
    ws = campaign.workspace
    template = ws.report_template_path if ws.report_template_path.is_file() else None
    grids = campaign.grids()
    result = ReportResult()
    statuses = student_statuses(campaign.db)  # read once: the query parses every return
    data, without = report_data(campaign, statuses)
    by_class: dict[str, list[StudentReportData]] = {}
    grid_of = {s.student_id: (s.grid_id, s.grid_version) for s in statuses}
    for item in data:
        if class_name and item.student.class_name != class_name:
            continue
        by_class.setdefault(item.student.class_name, []).append(item)
    for status in without:
        if class_name and status.class_name != class_name:
            continue
        if student_ids and status.student_id not in student_ids:
            continue
        result.without_return.append(f"{status.student.display_name} ({status.class_name})")
    for klass, items in sorted(by_class.items()):
        folder = ws.reports_dir / safe_name(klass, 60)
        for item in items:
            if student_ids and item.student.student_id not in student_ids:
                continue
            grid = grids.get(grid_of[item.student.student_id], campaign.grid)
            doc = build_student_report(grid, campaign.config, item, template)
            name = f"{report_stem(item.student)}.docx"
            _write_report(campaign, folder / name, document_bytes(doc), result)
            if progress:
                progress(1)
        if not student_ids:
            late = [st.student for st in without if st.class_name == klass and st.in_roster]
            doc = build_class_report(
                campaign.grid, campaign.config, klass, items, template, today=today,
                without_return=late,
            )  # fmt: skip
            name = f"bilan_classe_{safe_name(klass, 60)}.docx"
            _write_report(campaign, folder / name, document_bytes(doc), result)
    if pdf and result.written:
        result.pdf_problem = convert_to_pdf(result.written, result.pdfs)
    return result


def convert_to_pdf(documents: Sequence[Path], written: list[Path]) -> str:
    """PDF beside each document through LibreOffice; a French problem text, or ""."""
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        return (
            "PDF non produits : LibreOffice (soffice) n'est pas installé. Installez-le "
            "(https://fr.libreoffice.org) ou ouvrez les bilans dans Word › Enregistrer en PDF."
        )
    by_folder: dict[Path, list[Path]] = {}
    for document in documents:
        by_folder.setdefault(document.parent, []).append(document)
    for files in by_folder.values():
        with tempfile.TemporaryDirectory() as tmp:
            profile = Path(tmp, "profil").as_uri()
            try:
                subprocess.run(
                    [soffice, "--headless", "--norestore", f"-env:UserInstallation={profile}",
                     "--convert-to", "pdf", "--outdir", tmp, *map(str, files)],
                    check=True, capture_output=True, timeout=120 + 10 * len(files),
                )  # fmt: skip
            except (subprocess.SubprocessError, OSError) as exc:
                return f"PDF non produits : LibreOffice a échoué ({exc})."
            for document in files:
                produced = Path(tmp, document.stem + ".pdf")
                if not produced.is_file():
                    return f"PDF non produit pour {document.name} : LibreOffice n'a rien écrit."
                target = document.with_suffix(".pdf")
                atomic_write_bytes(target, produced.read_bytes())
                written.append(target)
    return ""


# ------------------------------------------------------------------ the archive

ARCHIVE_FORMAT = "grille-archive/1"
MANIFEST_NAME = "manifeste.json"
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


def _file_sha(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _grille_version() -> str:
    try:
        return importlib.metadata.version("grille")
    except importlib.metadata.PackageNotFoundError:
        return "inconnue"


def _report_files(folder: Path) -> list[Path]:
    """Reports (.docx, .pdf) of a class folder; Word's lock files and hidden files left out."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in (".docx", ".pdf") and not path.name.startswith((".", "~$"))
    )


def _modified_at(path: Path) -> str:
    """When a file was last changed (a PDF, a file put there by hand), as `state.now()`."""
    return datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0).isoformat(sep=" ")


def _class_students(campaign: Campaign, class_name: str) -> list[Student]:
    rows = campaign.db.execute("SELECT * FROM students WHERE class_name = ?", (class_name,))
    return [state.student_from_row(row) for row in rows]


def _ensure_pdfs(folder: Path) -> str:
    """PDF of each report that has none or an older one; a French problem text, or ""."""
    stale = []
    for document in _report_files(folder):
        pdf = document.with_suffix(".pdf")
        if document.suffix.lower() == ".docx" and (
            not pdf.is_file() or pdf.stat().st_mtime < document.stat().st_mtime
        ):
            stale.append(document)
    return convert_to_pdf(stale, []) if stale else ""


def _report_entries(
    campaign: Campaign, class_name: str, students: list[Student], statuses: list[StudentStatus]
) -> list[_Entry]:
    """The class's reports and their PDF, each tied to its student when it has one."""
    ws = campaign.workspace
    written = dict(campaign.db.execute("SELECT file, written_at FROM reports").fetchall())
    grid_of = {s.student_id: (s.grid_id or None, s.grid_version or None) for s in statuses}
    by_stem = {report_stem(s): s for s in students}
    entries = []
    for path in _report_files(ws.reports_dir / safe_name(class_name, 60)):
        student = next(
            (
                s
                for stem, s in by_stem.items()
                if path.stem == stem or path.stem.startswith(stem + "_")
            ),
            None,
        )
        if path.suffix.lower() == ".pdf":
            kind = "pdf"
        elif student is None and path.stem.startswith("bilan_classe_"):
            kind = "bilan_classe"
        else:
            kind = "bilan"
        day = written.get(path.relative_to(ws.root).as_posix()) or _modified_at(path)
        if student is not None:
            grid_id, grid_version = grid_of.get(student.student_id, (None, None))
        else:
            grid_id, grid_version = campaign.grid.id, campaign.grid.version
        entries.append(
            _Entry(
                f"rapports/{path.name}",
                kind,
                path,
                student.student_id if student else None,
                student.display_name if student else None,
                day,
                grid_id,
                grid_version,
            )
        )
    return entries


def _return_entries(campaign: Campaign, class_name: str) -> list[_Entry]:
    """Every return recorded for the class's students, earlier ones too, as collected."""
    rows = campaign.db.execute(
        "SELECT r.*, s.last_name, s.first_name FROM returns r "
        "JOIN students s ON s.student_id = r.student_id WHERE s.class_name = ? ORDER BY r.id",
        (class_name,),
    )
    entries = []
    for row in rows:
        stored = campaign.workspace.root / row["stored_file"]
        name = (
            f"{safe_name(row['last_name']).upper()}_{safe_name(row['first_name'])}_"
            f"{safe_name(row['student_id'])}_{row['collected_at'][:10]}_{row['sha256'][:8]}"
        )
        entries.append(
            _Entry(
                f"retours/{name}{stored.suffix}",
                "retour",
                stored,
                row["student_id"],
                f"{row['last_name'].upper()} {row['first_name']}",
                row["collected_at"],
                row["grid_id"],
                row["grid_version"],
                expected_sha256=row["sha256"],
            )
        )
    return entries


def _grid_entries(campaign: Campaign, class_name: str) -> list[_Entry]:
    """The grids the class's workbooks and returns were made with (every grid if none)."""
    used = {
        (row[0], row[1])
        for row in campaign.db.execute(
            "SELECT grid_id, grid_version FROM workbooks WHERE student_id IN "
            "(SELECT student_id FROM students WHERE class_name = ?) UNION "
            "SELECT grid_id, grid_version FROM returns WHERE student_id IN "
            "(SELECT student_id FROM students WHERE class_name = ?)",
            (class_name, class_name),
        )
    }
    rows = campaign.db.execute(
        "SELECT grid_id, grid_version, source FROM grids ORDER BY grid_id, grid_version"
    ).fetchall()
    return [
        _Entry(
            f"grilles/{safe_name(row['grid_id'], 60)}-v{safe_name(row['grid_version'])}.toml",
            "grille",
            row["source"].encode("utf-8"),
            grid_id=row["grid_id"],
            grid_version=row["grid_version"],
        )
        for row in rows
        if not used or (row["grid_id"], row["grid_version"]) in used
    ]


def _tracking_bytes(campaign: Campaign, statuses: list[StudentStatus]) -> bytes:
    """The tracking workbook of these students, with what the teacher wrote in suivi.xlsx."""
    workbook = build_tracking(
        statuses, read_teacher_columns(campaign.db, campaign.workspace.tracking_path)
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
        "taille, le stagiaire et la date\n\n"
        "Vérifier l'archive :\n"
        f"  avec grille : grille archive verify {name}.zip\n"
        "    (signale chaque fichier absent, modifié ou ajouté depuis l'archivage)\n"
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
        "sha256": _file_sha(copied),
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


def _write_archive(
    year_dir: Path, name: str, entries: list[_Entry], header: dict[str, Any], root: Path
) -> tuple[Path, Path]:
    """Build `year_dir/name/` and `name.zip` atomically; on any failure nothing is left."""
    year_dir.mkdir(parents=True, exist_ok=True)
    folder, zip_path = year_dir / name, year_dir / f"{name}.zip"
    building = Path(tempfile.mkdtemp(dir=year_dir, prefix=f".{name}.", suffix=".tmp"))
    placed = False
    try:
        files = [_copy_in(entry, building / entry.path, root) for entry in entries]
        manifest = {**header, "files": files}
        (building / MANIFEST_NAME).write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        if os.name == "posix":
            os.chmod(building, 0o755)  # mkdtemp makes it private; an archive is for the jury
        os.rename(building, folder)
        placed = True
        names = [MANIFEST_NAME, *(entry.path for entry in entries)]
        atomic_write_with(zip_path, lambda handle: _zip_folder(handle, folder, names))
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if placed:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, zip_path


def _archive_class(
    campaign: Campaign, class_name: str, school_year: str, statuses: list[StudentStatus]
) -> ArchivedClass:
    ws = campaign.workspace
    year_dir = ws.output_dir / ARCHIVE_DIR / safe_name(school_year, 20)
    name = _free_name(year_dir, safe_name(class_name, 60))
    now = state.now()
    students = _class_students(campaign, class_name)
    readme = _readme(campaign, class_name, school_year, name, now).encode("utf-8")
    entries = [
        _Entry(README_NAME, "lisezmoi", readme, date=now),
        *_report_entries(campaign, class_name, students, statuses),
        *_return_entries(campaign, class_name),
        _Entry("suivi.xlsx", "suivi", _tracking_bytes(campaign, statuses), date=now),
        *_grid_entries(campaign, class_name),
    ]
    grids = [{"id": e.grid_id, "version": e.grid_version} for e in entries if e.kind == "grille"]
    header = {
        "format": ARCHIVE_FORMAT,
        "grille_version": _grille_version(),
        "created_at": now,
        "school": campaign.config.school,
        "session": campaign.config.session,
        "school_year": school_year,
        "class": class_name,
        "grids": grids,
    }
    folder, zip_path = _write_archive(year_dir, name, entries, header, ws.root)
    digest = _file_sha(zip_path)
    with state.transaction(campaign.db) as db:
        db.execute(
            "INSERT INTO archives (path, sha256, class_name, school_year, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (zip_path.relative_to(ws.root).as_posix(), digest, class_name, school_year, now),
        )
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.kind] = counts.get(entry.kind, 0) + 1
    return ArchivedClass(class_name, school_year, folder, zip_path, digest, counts)


def _classes(campaign: Campaign, class_name: str | None, unknown: str) -> list[str]:
    """The campaign's classes, or only `class_name`; a French error when it has no such class."""
    classes = sorted(
        row[0] for row in campaign.db.execute("SELECT DISTINCT class_name FROM students")
    )
    if class_name is None:
        return classes
    if class_name not in classes:
        raise GrilleError(
            f"Classe « {class_name} » {unknown}. Classes de la campagne : "
            f"{', '.join(classes) or 'aucune'}."
        )
    return [class_name]


def build_archives(
    campaign: Campaign,
    *,
    class_name: str | None = None,
    school_year: str | None = None,
    pdf: bool = False,
    today: date | None = None,
) -> list[ArchivedClass]:
    """One archive per class with reports (or only `class_name`), for `school_year`."""
    ws = campaign.workspace
    year = school_year or campaign.config.school_year or default_school_year(today or date.today())
    classes = _classes(campaign, class_name, "inconnue")

    def has_reports(klass: str) -> bool:
        folder = ws.reports_dir / safe_name(klass, 60)
        return any(p.suffix.lower() == ".docx" for p in _report_files(folder))

    ready = [klass for klass in classes if has_reports(klass)]
    if not ready:
        if class_name is not None:
            raise GrilleError(
                f"Aucun bilan à archiver pour la classe « {class_name} » : lancez d'abord "
                f'« grille report --class "{class_name}" ».'
            )
        raise GrilleError("Aucun bilan à archiver : lancez d'abord « grille report ».")
    statuses = student_statuses(campaign.db)
    archived = []
    for klass in ready:
        warning = _ensure_pdfs(ws.reports_dir / safe_name(klass, 60)) if pdf else ""
        result = _archive_class(
            campaign, klass, year, [s for s in statuses if s.class_name == klass]
        )
        if warning:
            result.warnings.append(f"{warning} L'archive est faite sans ces PDF.")
        archived.append(result)
    return archived


# ------------------------------------------------------------------ verification


class _Members:
    """The files of an archive, zipped or unpacked in a folder, by path inside it."""

    def __init__(self, path: Path) -> None:
        self._folder: Path | None = None
        self._zip: SafeZip | None = None
        if path.is_dir():
            self._folder = path
            self.names = [
                p.relative_to(path).as_posix() for p in sorted(path.rglob("*")) if p.is_file()
            ]
        else:
            self._zip = SafeZip(path.read_bytes(), path.name, _VERIFY_LIMITS)
            self.names = [n for n in self._zip.names() if not n.endswith("/")]

    def read(self, name: str) -> bytes | None:
        """The bytes of `name`, or None when it is missing."""
        if name not in self.names:
            return None
        if self._zip is not None:
            return self._zip.read(name)
        assert self._folder is not None
        return (self._folder / name).read_bytes()


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


def verify_archive(path: Path) -> list[str]:
    """French problems found by checking every file of an archive (zip or folder) against
    its manifest: missing, altered or added files, unreadable manifest. Empty: intact."""
    try:
        members = _Members(path)
    except UnsafeFile as exc:
        return [f"{path.name} : archive illisible ({_zip_reason(exc)})."]
    except OSError as exc:
        return [f"{path.name} : archive illisible ({french_os_error(exc)})."]
    extra_allowed = {MANIFEST_NAME}
    manifest_name = MANIFEST_NAME
    if MANIFEST_NAME not in members.names and LEGACY_MANIFEST in members.names:
        manifest_name = LEGACY_MANIFEST
        extra_allowed = {LEGACY_MANIFEST, README_NAME}
    try:
        data = members.read(manifest_name)
        if data is None:
            return [
                f"{MANIFEST_NAME} : manifeste absent de {path.name} ; ce n'est pas une archive "
                "grille, ou le manifeste a été supprimé : l'archive ne peut pas être vérifiée."
            ]
        reader = _legacy_listed_files if manifest_name == LEGACY_MANIFEST else _listed_files
        listed = reader(data)
    except UnsafeFile as exc:
        return [f"{manifest_name} : illisible ({_zip_reason(exc)})."]
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"{manifest_name} : manifeste illisible ou mal formé ({exc}) ; l'archive ne peut "
                "pas être vérifiée."]  # fmt: skip
    problems = []
    for name, digest, size in listed:
        try:
            content = members.read(name)
        except (UnsafeFile, OSError) as exc:
            reason = _zip_reason(exc) if isinstance(exc, UnsafeFile) else french_os_error(exc)
            problems.append(f"{name} : illisible ({reason}).")
            continue
        if content is None:
            problems.append(f"{name} : absent de l'archive (supprimé après l'archivage).")
        elif _sha(content) != digest or len(content) != size:
            sizes = f", {len(content)} octets au lieu de {size}" if len(content) != size else ""
            problems.append(
                f"{name} : contenu modifié depuis l'archivage (empreinte différente{sizes})."
            )
    for name in sorted(set(members.names) - {n for n, _, _ in listed} - extra_allowed):
        problems.append(f"{name} : ajouté après l'archivage (absent du manifeste).")
    return problems


def record_verification(workspace: Workspace, path: Path) -> list[str]:
    """Mark the campaign's archives identical to the zip `path` as verified; their classes.

    Does nothing (returns []) without a campaign in `workspace`: verifying needs none.
    """
    if not path.is_file() or not workspace.config_path.is_file() or not workspace.db_path.is_file():
        return []
    digest = _file_sha(path)
    db = state.connect(workspace.db_path)
    try:
        with state.transaction(db):
            classes = [
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT class_name FROM archives WHERE sha256 = ?", (digest,)
                )
            ]
            db.execute(
                "UPDATE archives SET verified_at = ? WHERE sha256 = ?", (state.now(), digest)
            )
    finally:
        db.close()
    return classes


# ------------------------------------------------------------------ purge


@dataclass
class PurgePlan:
    """What `purge` deletes: the classes whose latest archive is verified, and their files."""

    classes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # French: a class and why not
    archives: list[str] = field(default_factory=list)  # the verified archives, kept
    students: int = 0
    workbooks: set[Path] = field(default_factory=set)
    returns: set[Path] = field(default_factory=set)
    reports: set[Path] = field(default_factory=set)
    messages: set[Path] = field(default_factory=set)  # .eml written or fetched: theirs only
    folders: list[Path] = field(default_factory=list)  # emptied, then removed


def _purge_refusal(campaign: Campaign, class_name: str) -> tuple[str, str]:
    """(why the class cannot be purged yet, "") or ("", its latest verified archive)."""
    db = campaign.db
    latest = db.execute(
        "SELECT * FROM archives WHERE class_name = ? ORDER BY id DESC LIMIT 1", (class_name,)
    ).fetchone()
    if latest is None:
        return (
            f'{class_name} : aucune archive. Lancez « grille archive --class "{class_name}" » '
            "puis « grille archive verify <archive.zip> ».",
            "",
        )
    zip_path = latest["path"]
    if latest["verified_at"] is None:
        return (
            f"{class_name} : sa dernière archive n'a pas été vérifiée. Lancez d'abord "
            f"« grille archive verify {zip_path} ».",
            "",
        )
    if not (campaign.workspace.root / zip_path).is_file():
        return f"{class_name} : sa dernière archive {zip_path} est introuvable.", ""
    newer = db.execute(
        "SELECT COUNT(*) FROM returns WHERE collected_at > ? AND student_id IN "
        "(SELECT student_id FROM students WHERE class_name = ?)",
        (latest["created_at"], class_name),
    ).fetchone()[0]
    if newer:
        return (
            f"{class_name} : {newer} retour(s) collecté(s) après sa dernière archive ({zip_path}). "
            f'Archivez de nouveau (« grille archive --class "{class_name}" ») et vérifiez.',
            "",
        )
    return "", zip_path


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def plan_purge(campaign: Campaign, class_name: str | None = None) -> PurgePlan:
    """What purging `class_name` (or every class) would delete; nothing is deleted."""
    ws = campaign.workspace
    db = campaign.db
    classes = _classes(campaign, class_name, "inconnue ou déjà purgée")
    if not classes:
        raise GrilleError("Aucune donnée personnelle à purger : la campagne n'a aucun stagiaire.")
    plan = PurgePlan()
    protected = ws.output_dir / ARCHIVE_DIR
    for klass in classes:
        refusal, archive_path = _purge_refusal(campaign, klass)
        if refusal:
            plan.refused.append(refusal)
            continue
        plan.classes.append(klass)
        plan.archives.append(archive_path)
        ids = "SELECT student_id FROM students WHERE class_name = ?"
        plan.students += db.execute(f"SELECT COUNT(*) FROM ({ids})", (klass,)).fetchone()[0]
        workbooks_dir = ws.workbooks_dir / safe_name(klass, 60)
        reports_dir = ws.reports_dir / safe_name(klass, 60)
        listed = [
            ws.root / row[0]
            for row in db.execute(
                f"SELECT file FROM workbooks WHERE student_id IN ({ids})", (klass,)
            )
        ]
        plan.workbooks |= {p for p in listed if p.is_file()}
        plan.workbooks |= {p for p in workbooks_dir.rglob("*") if p.is_file()}
        plan.returns |= {
            ws.root / row[0]
            for row in db.execute(
                f"SELECT stored_file FROM returns WHERE student_id IN ({ids})", (klass,)
            )
            if (ws.root / row[0]).is_file()
        }
        plan.reports |= {p for p in reports_dir.rglob("*") if p.is_file()}
        plan.folders += [f for f in (workbooks_dir, reports_dir) if f.is_dir()]
    plan.messages = _messages_of(campaign, plan.classes)
    for files in (plan.workbooks, plan.returns, plan.reports, plan.messages):  # output/ only
        files -= {p for p in files if not _inside(p, ws.output_dir) or _inside(p, protected)}
    return plan


def _messages_of(campaign: Campaign, classes: list[str]) -> set[Path]:
    """The .eml files (outbox, fetched mail) about students of `classes` only.

    A message that also concerns a student of another class is kept.
    """
    db, root = campaign.db, campaign.workspace.root
    marks = ", ".join("?" for _ in classes)
    leaving = {
        row[0]
        for row in db.execute(
            f"SELECT student_id FROM students WHERE class_name IN ({marks})", classes
        )
    }
    concerned: dict[str, set[str | None]] = {}
    for file, student in db.execute("SELECT file, student_id FROM sendings WHERE file != ''"):
        concerned.setdefault(file, set()).add(student)
    fetched = [r[0] for r in db.execute("SELECT stored_file FROM fetched_messages")]
    for file in filter(None, fetched):
        concerned[file] = {
            row[0] for row in db.execute("SELECT student_id, origin FROM returns") if file in row[1]
        }
    return {
        root / file
        for file, students in concerned.items()
        if students and students <= leaving and (root / file).is_file()
    }


def purge(campaign: Campaign, plan: PurgePlan) -> None:
    """Delete the files, then the database rows, of the classes of `plan` (archives kept)."""
    ws = campaign.workspace
    for path in sorted(plan.workbooks | plan.returns | plan.reports | plan.messages):
        path.unlink(missing_ok=True)
    for path in plan.returns:  # output/retours/ab/ folders left empty
        if (
            path.parent != ws.returns_dir
            and path.parent.is_dir()
            and not any(path.parent.iterdir())
        ):
            path.parent.rmdir()
    for folder in plan.folders:  # a file open in Word stops here: the database is untouched
        shutil.rmtree(folder)
    ids = "SELECT student_id FROM students WHERE class_name = ?"
    with state.transaction(campaign.db) as db:
        for klass in plan.classes:
            prefix = (ws.reports_dir / safe_name(klass, 60)).relative_to(ws.root).as_posix() + "/"
            db.execute(
                "DELETE FROM answers WHERE return_id IN "
                f"(SELECT id FROM returns WHERE student_id IN ({ids}))",
                (klass,),
            )
            for table in ("returns", "sendings", "workbooks"):
                db.execute(f"DELETE FROM {table} WHERE student_id IN ({ids})", (klass,))
            db.execute("DELETE FROM reports WHERE substr(file, 1, ?) = ?", (len(prefix), prefix))
            db.execute("DELETE FROM students WHERE class_name = ?", (klass,))

"""Reports of the campaign → files under `output/rapports/<classe>/`, PDF, and the archive.

`<classe>` is the class's own folder name (`state.class_folder`): two classes never share
one. Each written report is recorded (path, SHA-256, class, student) in the database; its
SHA-256 is recorded before the file is renamed into place, so that a crash in between
leaves a file grille still knows as its own. A report that the teacher edited by hand
since grille wrote it is never overwritten: the new version is written beside it and the
teacher is told. `--pdf` converts through LibreOffice.

The archive (`grille archive`) is made per class and school year: a folder
`output/archive/<année>/<classe>/` and the same content zipped beside it in `<classe>.zip`:
the class's recorded reports, the returned files as received, the class's tracking
workbook, the grid, a French readme, `manifeste.json` (SHA-256, size, student and date of
every file) and `manifeste.sig` (HMAC-SHA256 of the manifest with the campaign key).
`grille archive verify` checks the files against the manifest anywhere, years later; in
the campaign's folder it also checks the signature and the zip's SHA-256 recorded at its
creation, and it says what it could not check. An archive is never overwritten (`_v2`,
`_v3`…) and never half written. It holds no database and never the secret key.
`grille purge` then deletes the class's personal data from the campaign, once its latest
archive has been verified: only the files the database records for that class.
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
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
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
        if status.to_confirm:
            problems.insert(0, status.match_note)
        with_return.append(
            StudentReportData(
                student=status.student,
                evaluation=Evaluation.from_json(status.evaluation),
                status=status.status,
                problems=tuple(problems),
                team_appreciation=team.get(status.student_id, ""),
                to_confirm=status.to_confirm,
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


def _grille_wrote(campaign: Campaign, path: Path) -> bool:
    """True when `path` holds bytes grille wrote there: the last ones recorded, or the ones
    it was writing when it was stopped (recorded before the file is renamed into place)."""
    relative = path.relative_to(campaign.workspace.root).as_posix()
    row = campaign.db.execute(
        "SELECT sha256, pending_sha256 FROM reports WHERE file = ?", (relative,)
    ).fetchone()
    return row is not None and _file_sha(path) in (row["sha256"], row["pending_sha256"])


def _report_target(campaign: Campaign, path: Path) -> Path:
    """`path`, unless the teacher edited it: then the first of `<nom>_nouveau`,
    `<nom>_nouveau_2`… that is free or still holds grille's own bytes."""
    for number in itertools.count(1):
        suffix = "" if number == 1 else "_nouveau" + ("" if number == 2 else f"_{number - 1}")
        candidate = path.with_name(f"{path.stem}{suffix}{path.suffix}")
        if not os.path.lexists(candidate) or (
            candidate.is_file() and _grille_wrote(campaign, candidate)
        ):
            return candidate
    raise AssertionError("unreachable")


def _write_report(
    campaign: Campaign,
    path: Path,
    data: bytes,
    result: ReportResult,
    class_name: str,
    student_id: str | None,
) -> Path:
    """Write a report unless the teacher edited the previous one; record it.

    The bytes' SHA-256 is recorded as pending before the file is renamed into place, so a
    crash in between leaves a file grille still recognises as its own.
    """
    target = _report_target(campaign, path)
    if target != path:
        result.kept_edited.append((path, target))
    relative = target.relative_to(campaign.workspace.root).as_posix()
    with state.transaction(campaign.db) as db:
        db.execute(
            "INSERT INTO reports (file, sha256, written_at, class_name, student_id, "
            "pending_sha256) VALUES (?, '', ?, ?, ?, ?) ON CONFLICT(file) DO UPDATE SET "
            "class_name = excluded.class_name, student_id = excluded.student_id, "
            "pending_sha256 = excluded.pending_sha256",
            (relative, state.now(), class_name, student_id, _sha(data)),
        )
    atomic_write_bytes(target, data)
    with state.transaction(campaign.db) as db:
        db.execute(
            "UPDATE reports SET sha256 = pending_sha256, pending_sha256 = NULL, written_at = ? "
            "WHERE file = ?",
            (state.now(), relative),
        )
    result.written.append(target)
    return target


def _record_pdfs(campaign: Campaign, pdfs: Sequence[Path]) -> None:
    """Record the PDFs made beside reports, each with the class and student of its report."""
    root = campaign.workspace.root
    with state.transaction(campaign.db) as db:
        for pdf in pdfs:
            source = pdf.with_suffix(".docx").relative_to(root).as_posix()
            owner = db.execute(
                "SELECT class_name, student_id FROM reports WHERE file = ?", (source,)
            ).fetchone()
            db.execute(
                "INSERT INTO reports (file, sha256, written_at, class_name, student_id) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(file) DO UPDATE SET sha256 = "
                "excluded.sha256, written_at = excluded.written_at, class_name = "
                "excluded.class_name, student_id = excluded.student_id, pending_sha256 = NULL",
                (
                    pdf.relative_to(root).as_posix(),
                    _file_sha(pdf),
                    state.now(),
                    owner["class_name"] if owner else None,
                    owner["student_id"] if owner else None,
                ),
            )


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
        folder_name = state.class_folder(campaign.db, klass)
        folder = ws.reports_dir / folder_name
        for item in items:
            student_id = item.student.student_id
            if student_ids and student_id not in student_ids:
                continue
            grid = grids.get(grid_of[student_id], campaign.grid)
            doc = build_student_report(grid, campaign.config, item, template)
            name = f"{report_stem(item.student)}.docx"
            _write_report(campaign, folder / name, document_bytes(doc), result, klass, student_id)
            if progress:
                progress(1)
        if not student_ids:
            late = [st.student for st in without if st.class_name == klass and st.in_roster]
            doc = build_class_report(
                campaign.grid, campaign.config, klass, items, template, today=today,
                without_return=late,
            )  # fmt: skip
            name = f"bilan_classe_{folder_name}.docx"
            _write_report(campaign, folder / name, document_bytes(doc), result, klass, None)
    if pdf and result.written:
        result.pdf_problem = convert_to_pdf(result.written, result.pdfs)
        _record_pdfs(campaign, result.pdfs)
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


def _file_sha(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _grille_version() -> str:
    try:
        return importlib.metadata.version("grille")
    except importlib.metadata.PackageNotFoundError:
        return "inconnue"


def _class_reports(campaign: Campaign, class_name: str) -> list[tuple[Path, sqlite3.Row]]:
    """The reports (.docx, .pdf) recorded for the class that are still on disk, with their
    row; a file grille did not write is never taken."""
    root = campaign.workspace.root
    rows = campaign.db.execute(
        "SELECT file, written_at, student_id FROM reports WHERE class_name = ? ORDER BY file",
        (class_name,),
    )
    return [
        (root / row["file"], row)
        for row in rows
        if os.path.lexists(root / row["file"])
        and PurePosixPath(row["file"]).suffix.lower() in (".docx", ".pdf")
    ]


def _modified_at(path: Path) -> str:
    """When a file was last changed, as `state.now()`."""
    return datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0).isoformat(sep=" ")


def _ensure_pdfs(campaign: Campaign, class_name: str) -> str:
    """PDF of each report of the class that has no recorded PDF or an older one; a French
    problem text, or ""."""
    reports = _class_reports(campaign, class_name)
    recorded = {path for path, _ in reports}
    stale = []
    for document, _ in reports:
        pdf = document.with_suffix(".pdf")
        if document.suffix.lower() == ".docx" and (
            pdf not in recorded
            or not pdf.is_file()
            or pdf.stat().st_mtime < document.stat().st_mtime
        ):
            stale.append(document)
    if not stale:
        return ""
    made: list[Path] = []
    problem = convert_to_pdf(stale, made)
    _record_pdfs(campaign, made)
    return problem


def _report_entries(
    campaign: Campaign, class_name: str, statuses: list[StudentStatus]
) -> list[_Entry]:
    """The class's recorded reports and their PDF, each tied to its student when it has one."""
    grid_of = {s.student_id: (s.grid_id or None, s.grid_version or None) for s in statuses}
    names = {
        row["student_id"]: state.student_from_row(row).display_name
        for row in campaign.db.execute("SELECT * FROM students")
    }
    entries: list[_Entry] = []
    used: set[str] = set()
    for path, row in _class_reports(campaign, class_name):
        student_id = row["student_id"]
        if path.suffix.lower() == ".pdf":
            kind = "pdf"
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
        entries.append(
            _Entry(
                archived,
                kind,
                path,
                student_id,
                names.get(student_id) if student_id else None,
                row["written_at"] or _modified_at(path),
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
    entries = [
        _Entry(README_NAME, "lisezmoi", readme, date=now),
        *_report_entries(campaign, class_name, statuses),
        *_return_entries(campaign, class_name),
        _Entry("suivi.xlsx", "suivi", _tracking_bytes(campaign, statuses), date=now),
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
    digest = _file_sha(zip_path)
    with state.transaction(campaign.db) as db:
        db.execute(
            "INSERT INTO archives (path, sha256, class_name, school_year, created_at, "
            "manifest_sha256) VALUES (?, ?, ?, ?, ?, ?)",
            (
                zip_path.relative_to(ws.root).as_posix(),
                digest,
                class_name,
                school_year,
                now,
                manifest_digest,
            ),
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
    year = school_year or campaign.config.school_year or default_school_year(today or date.today())
    classes = _classes(campaign, class_name, "inconnue")

    def has_reports(klass: str) -> bool:
        return any(p.suffix.lower() == ".docx" for p, _ in _class_reports(campaign, klass))

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
        warning = _ensure_pdfs(campaign, klass) if pdf else ""
        result = _archive_class(
            campaign, klass, year, [s for s in statuses if s.class_name == klass]
        )
        if warning:
            result.warnings.append(f"{warning} L'archive est faite sans ces PDF.")
        archived.append(result)
    return archived


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
    """What `verify_archive` found, and what it could and could not check."""

    name: str
    problems: list[str] = field(default_factory=list)
    zip_sha256: str = ""  # "" for an unpacked folder
    files: int | None = None  # files checked against the manifest; None: manifest unread
    signature: str = "non vérifiée (hors de la campagne)"
    fingerprint: str = "non comparée (hors de la campagne)"

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
            view.archives = db.execute("SELECT * FROM archives ORDER BY id").fetchall()
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
    and the SHA-256 recorded when the archive was made. No problem: intact."""
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
    folders: list[Path] = field(default_factory=list)  # removed once empty
    unknown: list[Path] = field(default_factory=list)  # in their folders, not grille's: kept


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
        folder = state.class_folder(db, klass)
        workbooks_dir, reports_dir = ws.workbooks_dir / folder, ws.reports_dir / folder
        plan.workbooks |= {
            ws.root / row[0]
            for row in db.execute(
                f"SELECT file FROM workbooks WHERE student_id IN ({ids})", (klass,)
            )
            if (ws.root / row[0]).is_file()
        }
        plan.returns |= {
            ws.root / row[0]
            for row in db.execute(
                f"SELECT stored_file FROM returns WHERE student_id IN ({ids})", (klass,)
            )
            if (ws.root / row[0]).is_file()
        }
        plan.reports |= {
            ws.root / row[0]
            for row in db.execute("SELECT file FROM reports WHERE class_name = ?", (klass,))
            if (ws.root / row[0]).is_file()
        }
        plan.folders += [f for f in (workbooks_dir, reports_dir) if f.is_dir()]
    plan.messages = _messages_of(campaign, plan.classes)
    for files in (plan.workbooks, plan.returns, plan.reports, plan.messages):  # output/ only
        files -= {p for p in files if not _inside(p, ws.output_dir) or _inside(p, protected)}
    leaving = plan.workbooks | plan.reports
    plan.unknown = sorted(
        Path(top, name)
        for folder in plan.folders
        for top, dirs, files in os.walk(folder)
        for name in [*files, *(d for d in dirs if Path(top, d).is_symlink())]
        if Path(top, name) not in leaving
    )
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
    for folder in plan.folders:  # only the emptied ones: files grille did not write stay
        for top, _, _ in sorted(os.walk(folder), key=lambda walked: -len(walked[0])):
            if not any(Path(top).iterdir()):
                Path(top).rmdir()
    ids = "SELECT student_id FROM students WHERE class_name = ?"
    with state.transaction(campaign.db) as db:
        for klass in plan.classes:
            db.execute(
                "DELETE FROM answers WHERE return_id IN "
                f"(SELECT id FROM returns WHERE student_id IN ({ids}))",
                (klass,),
            )
            for table in ("returns", "sendings", "workbooks"):
                db.execute(f"DELETE FROM {table} WHERE student_id IN ({ids})", (klass,))
            db.execute("DELETE FROM reports WHERE class_name = ?", (klass,))
            db.execute("DELETE FROM students WHERE class_name = ?", (klass,))

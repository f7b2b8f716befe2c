"""Reports of the campaign → files under `output/rapports/<classe>/`, PDF, and the archive.

Each written report is recorded (path and sha256) in the database. A report that the
teacher edited by hand since grille wrote it is never overwritten: the new version is
written beside it and the teacher is told. `--pdf` converts through LibreOffice.

The archive (`grille archive`) is one zip with the reports, the returned files as
received, the tracking workbook, the grid and the state, plus a manifest of SHA-256
digests that `grille archive --verify` checks, years later. The secret key is never in it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import sqlite3
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.errors import GrilleError
from pipeline.files import atomic_write_bytes, safe_name
from pipeline.report import (
    StudentReportData,
    build_class_report,
    build_student_report,
    document_bytes,
)
from pipeline.safe_zip import SafeZip, UnsafeFile, ZipLimits
from pipeline.tracking import StudentStatus, student_statuses, team_appreciations
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
    team = team_appreciations(campaign.workspace.tracking_path)
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
        result.without_return.append(
            f"{status.last_name.upper()} {status.first_name} ({status.class_name})"
        )
    for klass, items in sorted(by_class.items()):
        folder = ws.reports_dir / safe_name(klass, 60)
        for item in items:
            if student_ids and item.student.student_id not in student_ids:
                continue
            grid = grids.get(grid_of[item.student.student_id], campaign.grid)
            doc = build_student_report(grid, campaign.config, item, template)
            name = (
                f"bilan_{safe_name(item.student.last_name).upper()}_"
                f"{safe_name(item.student.first_name)}_{safe_name(item.student.student_id)}.docx"
            )
            _write_report(campaign, folder / name, document_bytes(doc), result)
            if progress:
                progress(1)
        if not student_ids:
            doc = build_class_report(
                campaign.grid, campaign.config, klass, items, template, today=today
            )
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

MANIFEST = "MANIFESTE.csv"
README_NAME = "LISEZMOI.txt"


def _archive_readme(campaign: Campaign, today: date) -> str:
    c = campaign.config
    return (
        "Archive de la campagne d'évaluation des stages (grille)\n"
        f"Établissement : {c.school or '—'}\nSession : {c.session or '—'}\n"
        f"Année scolaire : {c.school_year or '—'}\nProfesseur : {c.teacher_name or '—'}\n"
        f"Archive créée le {today:%d/%m/%Y}.\n\n"
        "Contenu :\n"
        "  rapports/   les bilans Word (et PDF) par classe\n"
        "  retours/    chaque classeur retourné par les tuteurs, tel que reçu\n"
        "  suivi.xlsx  le tableau de suivi (statuts, appréciations de l'équipe)\n"
        "  grilles/    la grille d'évaluation utilisée, au format texte (TOML)\n"
        "  etat/       la base de données de la campagne (SQLite)\n"
        f"  {MANIFEST} l'empreinte SHA-256 de chaque fichier : "
        "« grille archive --verify » la contrôle.\n"
    )


def build_archive(campaign: Campaign, *, today: date | None = None) -> Path:
    """Zip reports, returns, tracking, grids and state with a manifest; return its path."""
    ws = campaign.workspace
    day = today or date.today()
    entries: list[tuple[str, bytes]] = []
    for folder, prefix in ((ws.reports_dir, "rapports"), (ws.returns_dir, "retours")):
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                    entries.append(
                        (f"{prefix}/{path.relative_to(folder).as_posix()}", path.read_bytes())
                    )
    if ws.tracking_path.is_file():
        entries.append(("suivi.xlsx", ws.tracking_path.read_bytes()))
    for row in campaign.db.execute("SELECT grid_id, grid_version, source FROM grids"):
        name = f"grilles/{safe_name(row['grid_id'], 60)}-v{safe_name(row['grid_version'])}.toml"
        entries.append((name, row["source"].encode("utf-8")))
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp, "grille.sqlite")
        target_db = sqlite3.connect(snapshot)
        campaign.db.backup(target_db)  # a consistent copy, even while in use
        target_db.close()
        entries.append(("etat/grille.sqlite", snapshot.read_bytes()))
    if not any(name.startswith("rapports/") for name, _ in entries):
        raise GrilleError("Aucun bilan à archiver : lancez d'abord « grille report ».")
    manifest = io.StringIO()
    writer = csv.writer(manifest, delimiter=";", lineterminator="\n")
    writer.writerow(["fichier", "sha256", "octets"])
    for name, data in entries:
        writer.writerow([name, _sha(data), len(data)])
    label = safe_name(campaign.config.session or campaign.config.campaign_id, 60)
    path = ws.output_dir / "archives" / f"archive_{label}_{day:%Y-%m-%d}.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(README_NAME, _archive_readme(campaign, day))
        archive.writestr(MANIFEST, manifest.getvalue())
        for name, data in entries:
            archive.writestr(name, data)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def verify_archive(path: Path) -> list[str]:
    """French problems found by checking every file of an archive against its manifest."""
    problems: list[str] = []
    try:
        package = SafeZip(
            path.read_bytes(),
            path.name,
            ZipLimits(max_total_size=4 * 1024**3, max_member_size=1024**3),
        )
        listed = package.read(MANIFEST).decode("utf-8")
    except (UnsafeFile, KeyError, UnicodeDecodeError, OSError):
        return [f"{path.name} : ce n'est pas une archive grille lisible (zip avec {MANIFEST})."]
    rows = list(csv.reader(io.StringIO(listed), delimiter=";"))[1:]
    names = set(package.names()) - {MANIFEST, README_NAME}
    for name, digest, _size in rows:
        if name not in names:
            problems.append(f"{name} : absent de l'archive.")
            continue
        names.discard(name)
        try:
            ok = _sha(package.read(name)) == digest
        except UnsafeFile as exc:
            problems.append(f"{name} : illisible ({exc.reason}).")
            continue
        if not ok:
            problems.append(f"{name} : contenu modifié depuis l'archivage (empreinte différente).")
    for name in sorted(names):
        problems.append(f"{name} : ajouté après l'archivage (absent du manifeste).")
    return problems

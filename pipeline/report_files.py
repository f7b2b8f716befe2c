"""The bilans as files: written under `output/rapports/<classe>/`, recorded, and their PDF.

`report` builds the Word documents; this module writes and records them (`grille report`).
`<classe>` is the class's own folder name (`state.class_folder`): two classes never share
one. Each written bilan is recorded (path, SHA-256, class, student) in the database; its
SHA-256 is recorded before the file is renamed into place, so that a crash in between
leaves a file grille still knows as its own. A bilan that the teacher edited by hand since
grille wrote it is never overwritten: the new version is written beside it and the teacher
is told.

PDFs are made through `office` (the one LibreOffice runner) and recorded with the SHA-256
of the .docx they were made from, so that a PDF is never older than its Word file: a
bilan rewritten without `--pdf` loses the PDF it made stale, and `pdf_fault` tells the
archive which recorded PDF no longer matches its .docx.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pipeline import office, state
from pipeline.campaign import Campaign
from pipeline.classes import select_classes
from pipeline.errors import french_os_error
from pipeline.files import atomic_write_bytes, student_stem
from pipeline.kinds import RETURNED, ReturnStatus
from pipeline.report import (
    StudentReportData,
    build_class_report,
    build_student_report,
    document_bytes,
    report_file_suffix,
)
from pipeline.roster import Student
from pipeline.settings import Workspace
from pipeline.tracking import (
    StudentStatus,
    student_statuses,
    team_appreciations,
    to_decide_in_a_document,
)
from pipeline.validation import STATUS_LABELS, Evaluation

_CORE_PROPERTIES = "docProps/core.xml"  # creation and modification times
PDF_TIMEOUT = 120.0  # seconds for LibreOffice to convert a folder's bilans…
PDF_TIMEOUT_PER_FILE = 10.0  # … plus this per bilan
NO_LIBREOFFICE = (
    "PDF non produits : LibreOffice (soffice) n'est pas installé. Installez-le "
    "(https://fr.libreoffice.org) ou ouvrez les bilans dans Word › Enregistrer en PDF."
)


@dataclass
class ReportResult:
    """What `write_reports` wrote, kept, removed or skipped."""

    written: list[Path] = field(default_factory=list)
    kept_edited: list[tuple[Path, Path]] = field(default_factory=list)  # (teacher's, new one)
    without_return: list[str] = field(default_factory=list)
    pdfs: list[Path] = field(default_factory=list)
    pdf_problem: str = ""
    stale_pdfs: list[Path] = field(default_factory=list)  # made stale by a rewrite: deleted
    stale_kept: list[Path] = field(default_factory=list)  # stale, not grille's bytes: kept
    # a student's bilan under the name of an earlier status (« _INCOMPLET »…):
    renamed: list[tuple[Path, Path]] = field(default_factory=list)  # (grille's, deleted; new)
    outdated_kept: list[tuple[Path, Path, str]] = field(default_factory=list)  # edited, kept

    @property
    def matched_nobody(self) -> bool:
        """True when no student matched the criteria (--student, --class)."""
        return not self.written and not self.without_return

    def lines(self, workspace: Workspace) -> list[tuple[str, str]]:
        """What `grille report` says of this result, in order: (kind, French line), kind "ok"
        or "attention" (a warning: the command prints it on its error output)."""
        root = workspace.root

        def shown(path: Path) -> str:
            return path.relative_to(root).as_posix()

        lines = [("ok", f"  écrit : {shown(path)}") for path in self.written]
        lines += [
            (
                "attention",
                f"  Attention — {shown(edited)} a été modifié à la main : conservé ; nouvelle "
                f"version dans {new.name}.",
            )
            for edited, new in self.kept_edited
        ]
        lines += [
            (
                "ok",
                f"  remplacé : {shown(old)} (et son PDF) par {new.name} : le statut du "
                "stagiaire a changé.",
            )
            for old, new in self.renamed
        ]
        lines += [
            (
                "attention",
                f"  Attention — {shown(old)} a été modifié à la main : conservé, mais il ne "
                f"correspond plus au statut du stagiaire ({label}) ; le bilan à jour est "
                f"{new.name}. Supprimez l'ancien s'il ne sert plus.",
            )
            for old, new, status in self.outdated_kept
            for label in [STATUS_LABELS.get(status, status)]
        ]
        lines += [
            ("ok", f"  Pas de bilan pour {name} : aucun retour du tuteur.")
            for name in self.without_return
        ]
        lines += [("ok", f"  PDF : {shown(path)}") for path in self.pdfs]
        lines += [
            (
                "ok",
                f"  PDF supprimé : {shown(path)} : il ne correspond plus au bilan Word réécrit ; "
                "« grille report --pdf » le refait.",
            )
            for path in self.stale_pdfs
        ]
        lines += [
            (
                "attention",
                f"  Attention — {shown(path)} ne correspond plus au bilan Word réécrit et a été "
                "modifié hors de grille : conservé tel quel, mais plus archivé ; « grille report "
                "--pdf » le remplacerait par le PDF du bilan Word.",
            )
            for path in self.stale_kept
        ]
        if self.pdf_problem:
            lines.append(("attention", f"Attention — {self.pdf_problem}"))
        lines.append(
            ("ok", f"{len(self.written)} bilan(s) écrit(s) dans {shown(workspace.reports_dir)}.")
        )
        return lines


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def report_data(
    campaign: Campaign, statuses: list[StudentStatus]
) -> tuple[list[StudentReportData], list[StudentStatus]]:
    """(data of every student with a recognised return, students without one)."""
    team = team_appreciations(campaign.db, campaign.workspace.tracking_path)
    with_return, without = [], []
    for status in statuses:
        if status.evaluation is None or status.status not in RETURNED:
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
                return_file_name=status.return_name,
                return_sha256=status.return_sha256,
            )
        )
    return with_return, without


def report_stem(student: Student, status: str = "complete") -> str:
    """File name of a student's report, without extension: `bilan_NOM_Prenom_id`, ending
    with the status when the bilan is not complete (`bilan_NOM_Prenom_id_INCOMPLET`)."""
    stem = student_stem(student.last_name, student.first_name, student.student_id)
    return f"bilan_{stem}{report_file_suffix(status)}"


_BESIDE = re.compile(r"_nouveau(?:_\d+)?$")  # written beside a bilan the teacher edited
_STATUS_SUFFIX = re.compile(r"_(?:INCOMPLET|INVALIDE)$")


def bare_report_stem(stem: str) -> str:
    """The `bilan_NOM_Prenom_id` a report file's stem was made from: without the status
    (« _INCOMPLET ») nor the « _nouveau_2 » of a version written beside an edited one."""
    return _STATUS_SUFFIX.sub("", _BESIDE.sub("", stem))


def named_status(path: Path) -> str:
    """The status a student's bilan (or its PDF) says in its name, as the teacher reads it:
    « incomplet », « invalide », else « complet » (`report_file_suffix`)."""
    stem = _BESIDE.sub("", path.stem)
    for status in (ReturnStatus.INCOMPLETE, ReturnStatus.INVALID):
        if stem.endswith(report_file_suffix(status)):
            return STATUS_LABELS[status]
    return STATUS_LABELS[ReturnStatus.COMPLETE]


def outdated_report(path: Path, status: StudentStatus) -> bool:
    """True when `path`, a bilan of the student of `status` or its PDF, was written under
    another status than the student's current one (« _INCOMPLET » when now complete…)."""
    return status.status in RETURNED and _BESIDE.sub("", path.stem) != report_stem(
        status.student, status.status
    )


def _relative(campaign: Campaign, path: Path) -> str:
    return path.relative_to(campaign.workspace.root).as_posix()


def _grille_wrote(campaign: Campaign, path: Path) -> bool:
    """True when `path` holds bytes grille wrote there: the last ones recorded, or the ones
    it was writing when it was stopped (recorded before the file is renamed into place)."""
    record = state.report_record(campaign.db, _relative(campaign, path))
    return record is not None and file_sha256(path) in (record.sha256, record.pending_sha256)


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
    """Write a report unless the teacher edited the previous one; record it; drop the PDF
    this rewrite made stale.

    The bytes' SHA-256 is recorded as pending before the file is renamed into place, so a
    crash in between leaves a file grille still recognises as its own.
    """
    target = _report_target(campaign, path)
    if target != path:
        result.kept_edited.append((path, target))
    if target.is_file() and _same_document(previous := target.read_bytes(), data):
        data = previous  # the same bilan: its bytes, and so its PDF, stay valid
    relative = _relative(campaign, target)
    digest = hashlib.sha256(data).hexdigest()
    state.begin_report_write(campaign.db, relative, digest, class_name, student_id)
    atomic_write_bytes(target, data)
    state.finish_report_write(campaign.db, relative)
    result.written.append(target)
    _drop_stale_pdf(campaign, target, digest, result)
    return target


def _same_document(old: bytes, new: bytes) -> bool:
    """Whether two .docx hold the same document: the same parts with the same bytes, the
    time stamps aside (of the zip entries and of `docProps/core.xml`, set on every write)."""
    try:
        with zipfile.ZipFile(io.BytesIO(old)) as first, zipfile.ZipFile(io.BytesIO(new)) as second:
            names = first.namelist()
            return names == second.namelist() and all(
                name == _CORE_PROPERTIES or first.read(name) == second.read(name) for name in names
            )
    except (zipfile.BadZipFile, OSError, KeyError):
        return False


def _drop_stale_pdf(
    campaign: Campaign, document: Path, digest: str, result: ReportResult, *, listed: bool = True
) -> None:
    """Delete the recorded PDF of `document` unless it was made from these bytes (`digest`);
    a PDF whose bytes are not grille's is kept, but no longer recorded (never archived).
    Without `listed`, a deleted PDF is not listed in `result.stale_pdfs` (its bilan went)."""
    pdf = document.with_suffix(".pdf")
    record = state.report_record(campaign.db, _relative(campaign, pdf))
    if record is None or record.source_sha256 == digest:
        return
    if pdf.is_file() and file_sha256(pdf) != record.sha256:
        result.stale_kept.append(pdf)
    elif os.path.lexists(pdf):
        pdf.unlink()
        if listed:
            result.stale_pdfs.append(pdf)
    state.forget_report(campaign.db, record.file)


def _drop_outdated(
    campaign: Campaign,
    class_name: str,
    student_id: str,
    current: Path,
    status: str,
    result: ReportResult,
) -> None:
    """Delete the student's bilans recorded under another name than `current`'s (written
    when the status was another: « _INCOMPLET » became complete…), and their PDFs, so
    that two contradictory bilans never stay side by side; one the teacher edited is
    kept (and said in `result.outdated_kept`)."""
    root = campaign.workspace.root
    current_stem = _BESIDE.sub("", current.stem)
    for record in state.class_reports(campaign.db, class_name):
        path = root / record.file
        if (
            record.student_id != student_id
            or path.suffix.lower() != ".docx"
            or _BESIDE.sub("", path.stem) == current_stem
        ):
            continue
        if not os.path.lexists(path):
            state.forget_report(campaign.db, record.file)
        elif path.is_file() and _grille_wrote(campaign, path):
            path.unlink()
            state.forget_report(campaign.db, record.file)
            result.renamed.append((path, current))
        else:
            result.outdated_kept.append((path, current, status))
            continue
        _drop_stale_pdf(campaign, path, "", result, listed=False)


def write_reports(
    campaign: Campaign,
    *,
    student_ids: set[str] | None = None,
    class_name: str | None = None,
    pdf: bool = False,
    today: date | None = None,
    progress: Callable[[int], None] | None = None,
    announce: Callable[[int], None] | None = None,
) -> ReportResult:
    """Write the per-student and per-class reports of the latest returns (only the class
    `class_name` names, see `select_classes`), and their PDF with `pdf`; `announce` is told
    the number of student bilans before they are written, `progress` each one written."""
    ws = campaign.workspace
    wanted = set(select_classes(campaign, class_name)) if class_name is not None else None
    template = ws.report_template_path if ws.report_template_path.is_file() else None
    grids = campaign.grids()
    result = ReportResult()
    # read once: the query parses every return; a bilan « à confirmer » says what the
    # teacher must decide, not the command (it is archived and read by juries)
    statuses = student_statuses(campaign.db, how_to_decide=to_decide_in_a_document)
    data, without = report_data(campaign, statuses)
    by_class: dict[str, list[StudentReportData]] = {}
    grid_of = {s.student_id: (s.grid_id, s.grid_version) for s in statuses}
    for item in data:
        if wanted is None or item.student.class_name in wanted:
            by_class.setdefault(item.student.class_name, []).append(item)
    for status in without:
        if wanted is not None and status.class_name not in wanted:
            continue
        if student_ids and status.student_id not in student_ids:
            continue
        result.without_return.append(f"{status.student.display_name} ({status.class_name})")
    if announce:
        announce(
            sum(
                not student_ids or item.student.student_id in student_ids
                for items in by_class.values()
                for item in items
            )
        )
    for klass, items in sorted(by_class.items()):
        folder_name = state.class_folder(campaign.db, klass)
        folder = ws.reports_dir / folder_name
        for item in items:
            student_id = item.student.student_id
            if student_ids and student_id not in student_ids:
                continue
            grid = grids.get(grid_of[student_id], campaign.grid)
            doc = build_student_report(grid, campaign.config, item, template)
            name = f"{report_stem(item.student, item.status)}.docx"
            written = _write_report(
                campaign, folder / name, document_bytes(doc), result, klass, student_id
            )
            _drop_outdated(campaign, klass, student_id, written, item.status, result)
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
        result.pdfs, result.pdf_problem = convert_to_pdf(campaign, result.written)
        result.stale_pdfs = [path for path in result.stale_pdfs if path not in result.pdfs]
    return result


def convert_to_pdf(campaign: Campaign, documents: Sequence[Path]) -> tuple[list[Path], str]:
    """A PDF beside each .docx through LibreOffice, each recorded with the SHA-256 of the
    .docx it was made from: (the PDFs made, a French problem text or "")."""
    by_folder: dict[Path, list[Path]] = {}
    for document in documents:
        by_folder.setdefault(document.parent, []).append(document)
    made: list[Path] = []
    for folder, files in by_folder.items():
        sources = {document: file_sha256(document) for document in files}  # before converting
        try:
            timeout = PDF_TIMEOUT + PDF_TIMEOUT_PER_FILE * len(files)
            pdfs = office.convert_all(files, "pdf", folder, timeout=timeout)
        except office.OfficeError as exc:
            if exc.code == "missing":
                return made, NO_LIBREOFFICE
            return made, f"PDF non produits : {exc.reason}"
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            return made, f"PDF non produits{where} : {french_os_error(exc)}."
        for document, produced in zip(files, pdfs, strict=True):
            state.record_pdf(
                campaign.db,
                _relative(campaign, produced),
                file_sha256(produced),
                _relative(campaign, document),
                sources[document],
            )
            made.append(produced)
    return made, ""


def pdf_fault(campaign: Campaign, record: state.ReportRecord) -> str:
    """Why the recorded PDF `record` does not match the .docx beside it (French, naming the
    files), or "" when it was made from that .docx as it is now."""
    root = campaign.workspace.root
    pdf = root / record.file
    document = pdf.with_suffix(".docx")
    if not document.is_file():
        return f"{pdf.name} : son bilan Word {document.name} est introuvable"
    if not pdf.is_file() or file_sha256(pdf) != record.sha256:
        return f"{pdf.name} : PDF modifié ou remplacé depuis que grille l'a écrit"
    if record.source_sha256 != file_sha256(document):
        return f"{pdf.name} : PDF plus ancien que son bilan Word ({document.name} a changé depuis)"
    return ""


def class_report_files(
    campaign: Campaign, class_name: str
) -> list[tuple[Path, state.ReportRecord]]:
    """The reports (.docx, .pdf) recorded for the class that are still on disk, with their
    record; a file grille did not write is never taken."""
    root = campaign.workspace.root
    return [
        (root / record.file, record)
        for record in state.class_reports(campaign.db, class_name)
        if os.path.lexists(root / record.file)
        and Path(record.file).suffix.lower() in (".docx", ".pdf")
    ]


def ensure_pdfs(campaign: Campaign, class_name: str) -> str:
    """A PDF of each bilan of the class that has none, or one that does not match it
    (`pdf_fault`); a French problem text, or ""."""
    reports = class_report_files(campaign, class_name)
    current = {
        path
        for path, record in reports
        if path.suffix.lower() == ".pdf" and not pdf_fault(campaign, record)
    }
    stale = [
        document
        for document, _ in reports
        if document.suffix.lower() == ".docx" and document.with_suffix(".pdf") not in current
    ]
    if not stale:
        return ""
    return convert_to_pdf(campaign, stale)[1]

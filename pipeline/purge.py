"""`grille purge`: delete a class's personal data from the campaign, once archived.

A class can be purged once its latest archive (`archive`) has been verified and no return
of its students was collected since. `plan_purge` says what would go, deleting nothing;
`purge` then deletes exactly that: the files the database records for the class (its
workbooks, stored returns, bilans and the .eml messages that concern it alone) under
`output/`, the folders they leave empty, and its rows of the database. A file grille did
not write is only listed (`PurgePlan.unknown`), never deleted; the archives stay.

The records of files `collect` refused hold file names, which can be personal data, and
no class: those about the class go (`_refused_of`): a name holding a student's last
name, the bytes of one of its returns, or a file no longer where it came from (an
absolute path that is gone); every one of them once no student is left.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import state
from pipeline.archive import ARCHIVE_DIR
from pipeline.campaign import Campaign
from pipeline.classes import select_classes
from pipeline.errors import GrilleError
from pipeline.text import fold


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
    refused_files: list[state.RefusedFile] = field(default_factory=list)  # records forgotten

    def lines(self, root: Path) -> list[tuple[str, str]]:
        """What `grille purge` says before asking for confirmation: (kind, French line), kind
        "ok" or "attention" (a refusal: printed by the command on its error output)."""
        lines = [("attention", f"  Refusé — {reason}") for reason in self.refused]
        if not self.classes:
            return lines
        lines += [
            (
                "ok",
                f"Données personnelles à supprimer définitivement ({', '.join(self.classes)}) :",
            ),
            (
                "ok",
                f"  {self.students} stagiaire(s) de la base, avec leurs envois, retours et "
                "réponses",
            ),
            ("ok", f"  {len(self.workbooks)} classeur(s) dans output/classeurs"),
            ("ok", f"  {len(self.returns)} fichier(s) retourné(s) dans output/retours"),
            ("ok", f"  {len(self.reports)} bilan(s) dans output/rapports"),
            ("ok", f"  {len(self.messages)} message(s) .eml (envoyés ou relevés) à leur sujet"),
        ]
        if self.refused_files:
            lines.append(
                (
                    "ok",
                    f"  {len(self.refused_files)} fichier(s) refusé(s) noté(s) à la collecte "
                    "(nom au sujet de la classe, ou fichier disparu)",
                )
            )
        lines += [
            ("ok", f"Conservées : {', '.join(self.archives)} et la configuration."),
        ]
        lines += [
            (
                "ok",
                f"  Conservé — {path.relative_to(root).as_posix()} : grille ne l'a pas écrit ; "
                "supprimez-le vous-même s'il contient des données personnelles.",
            )
            for path in self.unknown
        ]
        return lines


@dataclass
class PurgeResult:
    """What `purge` deleted."""

    classes: list[str]
    files: int  # files deleted
    folders: int  # folders removed, left empty


def _purge_refusal(campaign: Campaign, class_name: str) -> tuple[str, str]:
    """(why the class cannot be purged yet, "") or ("", its latest verified archive)."""
    latest = state.latest_archive(campaign.db, class_name)
    if latest is None:
        return (
            f'{class_name} : aucune archive. Lancez « grille archive --class "{class_name}" » '
            "puis « grille archive verify <archive.zip> ».",
            "",
        )
    zip_path: str = latest["path"]
    if latest["verified_at"] is None:
        return (
            f"{class_name} : sa dernière archive n'a pas été vérifiée. Lancez d'abord "
            f"« grille archive verify {zip_path} ».",
            "",
        )
    if not (campaign.workspace.root / zip_path).is_file():
        return f"{class_name} : sa dernière archive {zip_path} est introuvable.", ""
    newer = state.returns_collected_since(campaign.db, class_name, latest["created_at"])
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
    classes = select_classes(campaign, class_name)
    if not classes:
        raise GrilleError("Aucune donnée personnelle à purger : la campagne n'a aucun stagiaire.")
    plan = PurgePlan()
    protected = ws.output_dir / ARCHIVE_DIR

    def on_disk(files: list[str]) -> set[Path]:
        return {ws.root / file for file in files if (ws.root / file).is_file()}

    for klass in classes:
        refusal, archive_path = _purge_refusal(campaign, klass)
        if refusal:
            plan.refused.append(refusal)
            continue
        plan.classes.append(klass)
        plan.archives.append(archive_path)
        plan.students += len(state.class_student_ids(db, [klass]))
        folder = state.class_folder(db, klass)
        workbooks_dir, reports_dir = ws.workbooks_dir / folder, ws.reports_dir / folder
        plan.workbooks |= on_disk(state.class_workbook_files(db, klass))
        plan.returns |= on_disk(state.class_return_files(db, klass))
        plan.reports |= on_disk([record.file for record in state.class_reports(db, klass)])
        plan.folders += [f for f in (workbooks_dir, reports_dir) if f.is_dir()]
    plan.messages = _messages_of(campaign, plan.classes)
    plan.refused_files = _refused_of(campaign, plan.classes)
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
    root = campaign.workspace.root
    leaving = state.class_student_ids(campaign.db, classes)
    return {
        root / file
        for file, students in state.message_students(campaign.db).items()
        if students and students <= leaving and (root / file).is_file()
    }


def _letters(text: str) -> str:
    """Only the letters and digits of `text`, accents and case left out."""
    return re.sub(r"[^a-z0-9]", "", fold(text).casefold())


def _source_gone(origin: str) -> bool:
    """Whether the file an origin names (its absolute path, before any « › ») is gone."""
    source = Path(origin.split(" › ", 1)[0])
    return source.is_absolute() and not os.path.lexists(source)


def _refused_of(campaign: Campaign, classes: list[str]) -> list[state.RefusedFile]:
    """The refused files whose record goes with `classes`: every one when no student is
    left; else those named after one of their students (last name, 3 letters or more),
    holding the bytes of one of their returns, or whose source file is gone."""
    if not classes:
        return []
    db = campaign.db
    students = state.students_by_id(db)
    leaving = state.class_student_ids(db, classes)
    refused = state.refused_files(db)
    if set(students) <= leaving:
        return refused
    names = {_letters(students[i].last_name) for i in leaving if i in students}
    names = {name for name in names if len(name) >= 3}
    digests = {row["sha256"] for klass in classes for row in state.class_returns(db, klass)}
    return [
        item
        for item in refused
        if (item.sha256 and item.sha256 in digests)
        or any(name in _letters(item.file_name) for name in names)
        or _source_gone(item.origin)
    ]


def purge(campaign: Campaign, plan: PurgePlan) -> PurgeResult:
    """Delete the files, then the database rows, of the classes of `plan` (archives kept)."""
    ws = campaign.workspace
    files = sorted(plan.workbooks | plan.returns | plan.reports | plan.messages)
    for path in files:
        path.unlink(missing_ok=True)
    removed = 0
    for path in plan.returns:  # output/retours/ab/ folders left empty
        if (
            path.parent != ws.returns_dir
            and path.parent.is_dir()
            and not any(path.parent.iterdir())
        ):
            path.parent.rmdir()
            removed += 1
    for folder in plan.folders:  # only the emptied ones: files grille did not write stay
        for top, _, _ in sorted(os.walk(folder), key=lambda walked: -len(walked[0])):
            if not any(Path(top).iterdir()):
                Path(top).rmdir()
                removed += 1
    state.delete_classes(campaign.db, plan.classes)
    state.forget_refused_files(campaign.db, plan.refused_files)
    state.forget_backups(campaign.db, ws.backups_dir)  # the copies still hold the purged data
    return PurgeResult(list(plan.classes), len(files), removed)

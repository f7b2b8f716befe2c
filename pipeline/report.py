"""Evaluations → Word documents: a « bilan de stage » per student, a report per class.

Both documents start from a Word template (styles, margins, header, footer; see
`pipeline.report_template`): the teacher's `modele_rapport.docx` when it exists, the
default one otherwise. The body is built with lxml and inserted in one pass, so the class
report stays linear in the number of students. Functions return documents; the caller
saves them with `save_document` (atomic) or turns them into bytes (`document_bytes`).
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from docx.document import Document

from pipeline.files import atomic_save
from pipeline.grid import Grid, Section
from pipeline.report_template import (
    MARKERS,
    BodyBuilder,
    ReportError,
    add_header_banner,
    build_default_template,
    clean_text,
    enable_update_fields,
    new_document,
)
from pipeline.roster import Student
from pipeline.settings import CampaignConfig
from pipeline.validation import STATUS_LABELS, Evaluation

__all__ = [
    "ReportError",
    "StudentReportData",
    "build_class_report",
    "build_student_report",
    "clean_text",
    "document_bytes",
    "save_document",
    "write_default_template",
]

TOC_INSTRUCTION = 'TOC \\o "1-3" \\h \\z \\u'

HEAD, SUBHEAD, LABEL, MARK, ZEBRA = "D9E2F3", "EDEDED", "F2F2F2", "BDD7EE", "F7F9FC"
GREY = "595959"
_STATUS_FILL = {"complete": "E2EFDA", "incomplete": "FFF2CC", "invalid": "F8D7DA"}
NO_RETURN, _NO_RETURN_FILL = "sans retour", "EDEDED"
TO_CONFIRM_BANNER = "RETOUR À CONFIRMER — identité du classeur non vérifiée"
_TO_CONFIRM_TEXT = (
    "ce classeur est revenu sans son identité cachée ; grille l’a rattaché à l’élève par le "
    "nom écrit dessus. Vérifiez qu’il s’agit bien de la grille de cet élève, puis "
    "confirmez-la (« grille confirm ») et refaites ce bilan."
)
_BANNER_TEXT = {
    "incomplete": "la grille du tuteur n’est pas entièrement renseignée ; "
    "ce bilan n’est pas définitif.",
    "invalid": "la grille retournée contient des réponses non valables ; "
    "ce bilan ne peut pas être utilisé en l’état.",
}


@dataclass(frozen=True)
class StudentReportData:
    """Everything one student's report shows."""

    student: Student
    evaluation: Evaluation
    status: str  # "complete" | "incomplete" | "invalid"
    problems: tuple[str, ...]
    team_appreciation: str
    returned_on: date | None
    to_confirm: bool = False  # from a return matched on its visible identity, not confirmed


def _fmt_date(value: date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else ""


def _fmt_number(value: float) -> str:
    return f"{value:.2f}".replace(".", ",")


def _blend(color: str, share: float) -> str:
    """`color` mixed with white: share 0 → white, share 1 → 85 % of the colour."""
    channels = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return "".join(f"{round(255 - (255 - c) * share * 0.85):02X}" for c in channels)


def _finish(doc: Document, b: BodyBuilder, title: str, config: CampaignConfig, grid: Grid) -> None:
    b.insert_into(doc)
    props = doc.core_properties
    props.title = clean_text(title)[:255]
    props.subject = clean_text(grid.diploma)[:255]
    props.author = clean_text(config.teacher_name or config.school or "grille")[:255]
    props.last_modified_by, props.comments, props.language = "grille", "", "fr-FR"
    props.created = props.modified = datetime.now(UTC).replace(tzinfo=None)
    props.revision = 1


def document_bytes(doc: Document) -> bytes:
    """The .docx file of `doc`, as bytes."""
    buffer = io.BytesIO()
    doc.save(buffer)
    return buffer.getvalue()


def save_document(doc: Document, path: Path) -> None:
    """Save `doc` to `path` atomically (a crash never leaves a truncated file)."""
    atomic_save(path, lambda tmp: doc.save(str(tmp)))


def write_default_template(path: Path) -> None:
    """Write the default template (`modele_rapport.docx`) the teacher may restyle."""
    save_document(build_default_template(), path)


# --- the per-student report -------------------------------------------------------------


def build_student_report(
    grid: Grid,
    config: CampaignConfig,
    data: StudentReportData,
    template: Path | None = None,
) -> Document:
    """One student's « bilan de stage »: identity, ratings, global evaluation, appreciations."""
    student, evaluation = data.student, data.evaluation
    title = f"Bilan de stage — {student.display_name}"
    doc = new_document(template, _markers(config, student.class_name, title))
    if data.to_confirm:
        add_header_banner(doc, TO_CONFIRM_BANNER, "C00000")
    b = BodyBuilder(doc)
    b.para("Bilan de stage", "Title")
    b.para(grid.diploma, "Subtitle")
    if data.to_confirm:
        _to_confirm_banner(b, data.problems if data.status == "complete" else ())
    if data.status != "complete":
        _banner(b, data.status, data.problems)
    _identity(b, config, data)
    scale = " · ".join(f"{level.code} = {level.label}" for level in grid.scale)
    b.para(
        f"Échelle de notation : {scale}.", "Normal", italic=True, size=16, color=GREY, before=160
    )
    for section in grid.sections:
        _section_table(b, grid, section, evaluation.ratings)
    _global_table(b, grid, evaluation)
    b.para("Appréciations", "Heading 1")
    b.para(grid.closing.tutor_appreciation, "Heading 3")
    b.box(evaluation.tutor_appreciation, 1700)
    b.para(grid.closing.team_appreciation, "Heading 3")
    b.box(data.team_appreciation, 2300)
    half = b.width // 2
    tbl = b.table([half, b.width - half], border="")
    tr = b.row(tbl)
    b.cell(tr, half, f"{grid.closing.date} : {_fmt_date(evaluation.date) or '—'}", before=240)
    b.cell(tr, b.width - half, f"{grid.closing.signature} : {evaluation.signature or '—'}",
           before=240)  # fmt: skip
    _finish(doc, b, title, config, grid)
    return doc


def _markers(config: CampaignConfig, class_name: str, title: str) -> dict[str, str]:
    values = (config.school, class_name, config.school_year, title)
    return {marker: clean_text(value) for marker, value in zip(MARKERS, values, strict=True)}


def _banner(b: BodyBuilder, status: str, problems: Sequence[str]) -> None:
    label = STATUS_LABELS.get(status, status).upper()
    explanation = _BANNER_TEXT.get(status, "ce bilan n’est pas définitif.")
    border, fill = ("C00000", "F8D7DA") if status == "invalid" else ("BF8F00", "FFF2CC")
    tbl = b.table([b.width], border=border, size=12)
    tc = b.cell(b.row(tbl, split=True), b.width, f"BILAN {label} — {explanation}", fill=fill,
                style="Normal", bold=True, color=border)  # fmt: skip
    for problem in problems:
        b.para(f"•\t{problem}", parent=tc, indent=284)


def _to_confirm_banner(b: BodyBuilder, problems: Sequence[str]) -> None:
    border, fill = "C00000", "F8D7DA"
    tbl = b.table([b.width], border=border, size=12)
    tc = b.cell(b.row(tbl, split=True), b.width, f"{TO_CONFIRM_BANNER} : {_TO_CONFIRM_TEXT}",
                fill=fill, style="Normal", bold=True, color=border)  # fmt: skip
    for problem in problems:
        b.para(f"•\t{problem}", parent=tc, indent=284)


def _status_text(data: StudentReportData) -> str:
    label = STATUS_LABELS.get(data.status, data.status)
    return f"{label} (à confirmer)" if data.to_confirm else label


def _identity(b: BodyBuilder, config: CampaignConfig, data: StudentReportData) -> None:
    s = data.student
    label, value = b.width * 19 // 100, b.width * 31 // 100
    widths = [label, value, label, b.width - 2 * label - value]
    pairs = [
        ("Élève", s.display_name), ("Classe", s.class_name),
        ("Entreprise", s.company), ("Tuteur", s.tutor_name),
        ("Établissement", config.school), ("Année scolaire", config.school_year),
        ("Période de stage", f"du {_fmt_date(s.start)} au {_fmt_date(s.end)}"),
        ("Grille reçue le", _fmt_date(data.returned_on) or "—"),
    ]  # fmt: skip
    tbl = b.table(widths)
    for i in range(0, len(pairs), 2):
        tr = b.row(tbl)
        for j, (name, text) in enumerate(pairs[i : i + 2]):
            b.cell(tr, widths[2 * j], name, fill=LABEL, bold=True)
            b.cell(tr, widths[2 * j + 1], text)


def _section_table(
    b: BodyBuilder, grid: Grid, section: Section, ratings: dict[str, str | None]
) -> None:
    codes = grid.scale_codes
    column = 680
    first = b.width - column * len(codes)
    b.para(section.title, "Heading 1")
    tbl = b.table([first, *[column] * len(codes)])
    tr = b.row(tbl, header=True)
    b.cell(tr, first, "Critère", fill=HEAD, bold=True)
    for code in codes:
        b.cell(tr, column, code, fill=HEAD, bold=True, align="center")
    heading = ""
    for criterion in section.criteria:
        if criterion.heading and criterion.heading != heading:
            heading = criterion.heading
            b.heading_row(tbl, heading, len(codes) + 1, SUBHEAD, bold=True)
        tr = b.row(tbl)
        b.cell(tr, first, criterion.label)
        rating = ratings.get(criterion.id)
        for code in codes:
            if code == rating:
                b.cell(tr, column, "X", fill=MARK, bold=True, align="center")
            else:
                b.cell(tr, column)


def _global_table(b: BodyBuilder, grid: Grid, evaluation: Evaluation) -> None:
    ge = grid.global_evaluation
    b.para(ge.title, "Heading 1")
    widths = [b.width * 28 // 100, b.width * 12 // 100]
    widths.append(b.width - sum(widths))
    tbl = b.table(widths)
    tr = b.row(tbl, header=True)
    for width, text in zip(widths, ("Dimension", "Niveau", "Appréciation retenue"), strict=True):
        b.cell(tr, width, text, fill=HEAD, bold=True, align="center" if text == "Niveau" else "")
    for dimension in ge.dimensions:
        level = evaluation.levels.get(dimension.id)
        tr = b.row(tbl)
        b.cell(tr, widths[0], dimension.label, bold=True)
        if level is None or level not in dimension.values:
            b.cell(tr, widths[1], "—", align="center")
            b.cell(tr, widths[2], "Non renseigné", italic=True, color=GREY)
        else:
            b.cell(tr, widths[1], f"{level} / {dimension.maximum}", fill=MARK, align="center")
            b.cell(tr, widths[2], dimension.descriptor(level))
    total = f"Total : {evaluation.total(grid)} / {ge.maximum}"
    b.cell(b.row(tbl), b.width, total, span=3, fill=HEAD, bold=True, align="right", size=20)


# --- the class report ---------------------------------------------------------------------


def build_class_report(
    grid: Grid,
    config: CampaignConfig,
    class_name: str,
    students: Sequence[StudentReportData],
    template: Path | None = None,
    *,
    today: date | None = None,
    without_return: Sequence[Student] = (),
) -> Document:
    """The class report: cover, contents, summary, statistics per criterion, appreciations.

    Students are listed in alphabetical order of their names; those in `without_return`
    (no grid came back) are listed too, so the report covers the whole class.
    """
    title = f"Bilan des stages — {class_name}"
    doc = new_document(template, _markers(config, class_name, title))
    doc.sections[-1].different_first_page_header_footer = True  # a bare cover page
    b = BodyBuilder(doc)
    ordered = sorted(students, key=_sort_key)
    missing = sorted(without_return, key=_student_key)
    _cover(b, grid, config, class_name, ordered, missing, today or date.today())
    b.para("Sommaire", "TOC Heading", page_break=True)
    contents = b.para("", "Normal")
    _summary(b, grid, ordered, missing)
    _statistics(b, grid, ordered)
    _appreciations(b, grid, ordered, missing)
    b.contents(contents, TOC_INSTRUCTION, b.headings())
    _finish(doc, b, title, config, grid)
    enable_update_fields(doc)
    return doc


def _student_key(s: Student) -> tuple[str, str, str]:
    def fold(text: str) -> str:
        return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()

    return fold(s.last_name), fold(s.first_name), s.student_id


def _sort_key(data: StudentReportData) -> tuple[str, str, str]:
    return _student_key(data.student)


def _status_counts(students: Sequence[StudentReportData], missing: Sequence[Student]) -> str:
    counts = {status: 0 for status in _STATUS_FILL}
    for data in students:
        counts[data.status] = counts.get(data.status, 0) + 1
    parts = [f"{n} {STATUS_LABELS.get(s, s)}{'s' if n > 1 else ''}" for s, n in counts.items()]
    if missing:
        parts.append(f"{len(missing)} sans retour du tuteur")
    total = len(students) + len(missing)
    return f"{total} élève{'s' if total > 1 else ''} : {', '.join(parts)}"


def _cover(
    b: BodyBuilder, grid: Grid, config: CampaignConfig, class_name: str,
    students: Sequence[StudentReportData], missing: Sequence[Student], today: date,
) -> None:  # fmt: skip
    b.para(config.school, "Subtitle", align="center", before=2600)
    b.para(f"Bilan des stages — {class_name}", "Title", align="center", before=1400)
    b.para(grid.diploma, "Subtitle", align="center")
    facts = [
        ("Classe", class_name),
        ("Année scolaire", config.school_year),
        ("Élèves", _status_counts(students, missing)),
        ("Professeur", config.teacher_name),
        ("Document généré le", _fmt_date(today)),
    ]
    b.para("", "Normal", before=1400)  # white space under the title
    widths = [2600, 4600]
    tbl = b.table(widths, border="", center=True)
    for name, value in facts:
        if value:
            tr = b.row(tbl)
            b.cell(tr, widths[0], name, style="Normal", bold=True, color=GREY, align="right")
            b.cell(tr, widths[1], value, style="Normal")


def _summary(
    b: BodyBuilder, grid: Grid, students: Sequence[StudentReportData], missing: Sequence[Student]
) -> None:
    b.para("Synthèse de la classe", "Heading 1", page_break=True)
    maximum = grid.global_evaluation.maximum
    complete = [d.evaluation.total(grid) for d in students if d.status == "complete"]
    text = _status_counts(students, missing) + "."
    if complete:
        mean = _fmt_number(sum(complete) / len(complete)).rstrip("0").rstrip(",")
        text += f" Moyenne de l’évaluation globale (bilans complets) : {mean} / {maximum}."
    b.para(text, "Normal")
    codes = tuple(reversed(grid.scale_codes))
    headers = ["Élève", "Entreprise", "Tuteur", "Statut", "Total", *codes]
    shares = [22, 20, 17, 11, 10] + [5] * len(codes)
    widths = [b.width * share // sum(shares) for share in shares]
    widths[0] += b.width - sum(widths)
    tbl = b.table(widths)
    tr = b.row(tbl, header=True)
    for width, header in zip(widths, headers, strict=True):
        b.cell(tr, width, header, fill=HEAD, bold=True, align="" if width > 1600 else "center")
    rows: list[tuple[tuple[str, str, str], Student, StudentReportData | None]] = [
        *((_sort_key(d), d.student, d) for d in students),
        *((_student_key(s), s, None) for s in missing),
    ]
    for index, (_, s, data) in enumerate(sorted(rows, key=lambda row: row[0])):
        zebra = ZEBRA if index % 2 else ""
        tr = b.row(tbl)
        for width, text in zip(widths[:3], (s.display_name, s.company, s.tutor_name), strict=True):
            b.cell(tr, width, text, fill=zebra)
        if data is None:
            b.cell(tr, widths[3], NO_RETURN, fill=_NO_RETURN_FILL, align="center")
            for width in widths[4:]:
                b.cell(tr, width, "—", fill=zebra, align="center")
            continue
        counts = data.evaluation.rating_counts(grid)
        status = _status_text(data)
        b.cell(tr, widths[3], status, fill=_STATUS_FILL.get(data.status, zebra), align="center")
        total = f"{data.evaluation.total(grid)} / {maximum}"
        b.cell(tr, widths[4], total, fill=zebra, align="center")
        for width, code in zip(widths[5:], codes, strict=True):
            b.cell(tr, width, str(counts[code]), fill=zebra, align="center")


def _statistics(b: BodyBuilder, grid: Grid, students: Sequence[StudentReportData]) -> None:
    codes = grid.scale_codes
    score = {code: i for i, code in enumerate(codes, start=1)}
    counts = {c.id: dict.fromkeys(codes, 0) for c in grid.criteria}
    for data in students:
        for criterion_id, rating in data.evaluation.ratings.items():
            if criterion_id in counts and rating in score:
                counts[criterion_id][rating] += 1
    b.para("Statistiques par critère", "Heading 1", page_break=True)
    values = ", ".join(f"{code} = {value}" for code, value in score.items())
    b.para(
        "Nombre de réponses du tuteur par niveau ; la teinte s’intensifie avec la part des "
        f"réponses. Moyenne sur les seules réponses données, avec {values}.",
        "Normal", italic=True, size=16, color=GREY,
    )  # fmt: skip
    column, mean_column = 620, 1000
    first = b.width - column * len(codes) - mean_column
    widths = [first, *[column] * len(codes), mean_column]
    tbl = b.table(widths)
    tr = b.row(tbl, header=True)
    for width, header in zip(widths, ["Critère", *codes, "Moyenne"], strict=True):
        b.cell(tr, width, header, fill=HEAD, bold=True, align="" if width == first else "center")
    means: list[tuple[float, int, str, str, int]] = []
    half = len(codes) / 2
    for section in grid.sections:
        b.heading_row(tbl, section.title, len(widths), HEAD, bold=True)
        heading = ""
        for criterion in section.criteria:
            if criterion.heading and criterion.heading != heading:
                heading = criterion.heading
                b.heading_row(tbl, heading, len(widths), SUBHEAD, italic=True)
            tr = b.row(tbl)
            b.cell(tr, first, criterion.label)
            given = counts[criterion.id]
            answered = sum(given.values())
            for i, code in enumerate(codes):
                share = given[code] / answered if answered else 0.0
                fill = _blend("C0504D" if i < half else "2E75B6", share)
                white = "FFFFFF" if share > 0.55 else ""
                b.cell(tr, column, str(given[code]), fill=fill, align="center", color=white)
            if answered:
                mean = sum(score[code] * n for code, n in given.items()) / answered
                means.append((mean, len(means), criterion.label, section.title, answered))
            b.cell(tr, mean_column, _fmt_number(mean) if answered else "—", align="center",
                   bold=True)  # fmt: skip
    if not means:
        b.para("Aucune réponse notée : pas de statistique par critère.", "Normal", before=200)
        return
    for title, chosen in (
        ("Les critères les moins bien réussis", sorted(means)[:3]),
        ("Les critères les mieux réussis", sorted(means, key=lambda m: (-m[0], m[1]))[:3]),
    ):
        b.para(title, "Heading 2")
        for mean, _, label, section_title, answered in chosen:
            p = b.para("•\t", "Normal", indent=284)
            b.run(p, label, bold=True)
            b.run(p, f" ({section_title}) — moyenne {_fmt_number(mean)} / {len(codes)}, "
                  f"{answered} réponse{'s' if answered > 1 else ''}")  # fmt: skip


def _appreciations(
    b: BodyBuilder, grid: Grid, students: Sequence[StudentReportData], missing: Sequence[Student]
) -> None:
    b.para("Appréciations", "Heading 1", page_break=True)
    closing = grid.closing
    for data in students:
        s, evaluation = data.student, data.evaluation
        b.para(f"{s.display_name} — {s.company}" if s.company else s.display_name, "Heading 2")
        status = _status_text(data)
        b.para(
            f"Tuteur : {s.tutor_name} · Stage du {_fmt_date(s.start)} au {_fmt_date(s.end)} · "
            f"Total : {evaluation.total(grid)} / {grid.global_evaluation.maximum} · "
            f"Statut : {status}",
            "Normal", size=16,
            color="C00000" if data.status == "invalid" or data.to_confirm else GREY,
            keep_next=True,
        )  # fmt: skip
        b.para(closing.tutor_appreciation, "Normal", bold=True, keep_next=True, before=120)
        tutor_text = evaluation.tutor_appreciation or "Aucune appréciation du tuteur."
        b.para(tutor_text, "Normal", frame=True, keep_next=True)
        b.para(closing.team_appreciation, "Normal", bold=True, keep_next=True, before=120)
        b.para(data.team_appreciation or "\n\n\n", "Normal", frame=True)
    if missing:
        b.para("Élèves sans retour du tuteur", "Heading 2")
        for s in missing:
            b.para(
                f"•\t{s.display_name} — {s.company} (tuteur : {s.tutor_name}) : aucune grille "
                "retournée à la date de ce bilan.",
                "Normal", indent=284,
            )  # fmt: skip

"""Evaluations → Word documents: a « bilan de stage » per student, a report per class.

Both documents start from a Word template (styles, margins, header, footer; see
`pipeline.report_template`): the teacher's `modele_rapport.docx` when it exists, the
default one otherwise. The body is built with lxml and inserted in one pass, so the class
report stays linear in the number of students. Functions return documents; the caller
saves them with `save_document` (atomic) or turns them into bytes (`document_bytes`).

Everything is written to be read on paper, photocopied: dark text, tints that keep black
text readable, charts in grey levels and hatching (`pipeline.report_charts`), no field
that Word would ask to update on opening.
"""

from __future__ import annotations

import io
import re
import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from docx.document import Document

from pipeline.files import atomic_save
from pipeline.grid import Grid, Section
from pipeline.kinds import ReturnStatus
from pipeline.report_template import (
    MARKERS,
    BodyBuilder,
    Element,
    ReportError,
    add_header_banner,
    build_default_template,
    clean_text,
    new_document,
)
from pipeline.roster import Student
from pipeline.settings import CampaignConfig
from pipeline.validation import STATUS_LABELS, Evaluation
from pipeline.workbook import plan_layout

__all__ = [
    "ReportError",
    "StudentReportData",
    "build_class_report",
    "build_student_report",
    "clean_text",
    "document_bytes",
    "report_file_suffix",
    "save_document",
    "write_default_template",
]

HEAD, SUBHEAD, LABEL, MARK, ZEBRA = "D9E2F3", "EDEDED", "F2F2F2", "BDD7EE", "F7F9FC"
GREY = "404040"  # secondary text: still dark enough for a photocopy
DARK_RED, DARK_YELLOW = "C00000", "7F6000"
_STATUS_FILL = {"complete": "E2EFDA", "incomplete": "FFF2CC", "invalid": "F8D7DA"}
NO_RETURN, _NO_RETURN_FILL = "sans retour", "EDEDED"
TO_CONFIRM_BANNER = "RETOUR À CONFIRMER — identité du classeur non vérifiée"
_TO_CONFIRM_TEXT = (
    "ce classeur est revenu sans son identité cachée ; grille l’a rattaché à l’élève par le "
    "nom écrit dessus. Vérifiez qu’il s’agit bien de la grille de cet élève, puis "
    "confirmez-la (page de l’élève dans « grille ui », ou « grille confirm ») et refaites ce "
    "bilan."
)
_BANNER_TEXT = {
    "incomplete": "la grille du tuteur n’est pas entièrement renseignée ; "
    "ce bilan n’est pas définitif.",
    "invalid": "la grille retournée contient des réponses non valables ; "
    "ce bilan ne peut pas être utilisé en l’état.",
}
# (text, colour) at the top of every page of a bilan that is not complete
HEADER_BANNERS = {
    "incomplete": (
        "BILAN INCOMPLET — grille du tuteur incomplète, bilan non définitif",
        DARK_YELLOW,
    ),
    "invalid": ("BILAN INVALIDE — réponses non valables, bilan inutilisable en l’état", DARK_RED),
}
_FILE_SUFFIXES = {"incomplete": "_INCOMPLET", "invalid": "_INVALIDE"}
_SIGNATURE_NOTE = "nom écrit par le tuteur dans son classeur"
# « Section › Label (cellule D12) : what is wrong. », as `validation.validate` words it
_PROBLEM = re.compile(r"^(.*?) \(cellule ([A-Z]{1,3}[0-9]+)\) : (.*?)\.?$", re.S)
CONTENTS = (
    "Synthèse de la classe",
    "Évaluation globale",
    "Statistiques par critère",
    "Appréciations",
)


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
    return_file_name: str = ""  # the returned workbook's name as received
    return_sha256: str = ""  # SHA-256 of the returned file as received (kept as is)


def report_file_suffix(status: str) -> str:
    """What a student's report file name ends with, before its extension: « _INCOMPLET »,
    « _INVALIDE », nothing for a complete bilan (`bilan_NOM_Prenom_id_INCOMPLET.docx`)."""
    return _FILE_SUFFIXES.get(status, "")


def _fmt_date(value: date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else ""


def _fmt_number(value: float) -> str:
    return f"{value:.2f}".replace(".", ",")


def _fmt_short(value: float) -> str:
    """17 → « 17 », 17.5 → « 17,5 », 17.25 → « 17,25 »."""
    return f"{value:.2f}".rstrip("0").rstrip(".").replace(".", ",")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count > 1 else ''}"


def _blend(color: str, share: float) -> str:
    """`color` mixed with white: share 0 → white, share 1 → 45 % of the colour (a tint
    under which black text stays readable, even photocopied)."""
    channels = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return "".join(f"{round(255 - (255 - c) * share * 0.45):02X}" for c in channels)


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


# --- what the tutor's answers say ------------------------------------------------------


def answer_notes(grid: Grid, problems: Sequence[str]) -> dict[str, str]:
    """Criterion or dimension id → what is wrong with its answer (« non renseigné »,
    « « Bien » n'est pas une note de l'échelle (TI, I, S, TS) »), read from the
    validation messages (« Section › Libellé (cellule D12) : … »)."""
    layout = plan_layout(grid)
    items: dict[str, list[tuple[str, str]]] = {}  # « Section › Libellé » → (id, cell)
    for section in grid.sections:
        for criterion in section.criteria:
            key = f"{section.title} › {criterion.label}"
            items.setdefault(key, []).append((criterion.id, layout.criteria[criterion.id].cell))
    ge = grid.global_evaluation
    for dimension in ge.dimensions:
        key = f"{ge.title} › {dimension.label}"
        items.setdefault(key, []).append((dimension.id, layout.dimensions[dimension.id].cell))
    notes: dict[str, str] = {}
    for problem in problems:
        match = _PROBLEM.match(problem)
        candidates = items.get(match.group(1), []) if match else []
        if match is None or not candidates:
            continue
        chosen = [item for item, cell in candidates if cell == match.group(2)]
        if chosen or len(candidates) == 1:
            notes[(chosen or [candidates[0][0]])[0]] = match.group(3)
    return notes


def _is_missing(note: str) -> bool:
    """Whether an answer's note says it is missing (« non renseigné(e) »), not invalid."""
    return note.startswith("non renseign")


def _unanswered(grid: Grid, evaluation: Evaluation) -> list[str]:
    """Ids of the global evaluation's dimensions without a valid level."""
    return [
        d.id
        for d in grid.global_evaluation.dimensions
        if evaluation.levels.get(d.id) not in d.values
    ]


def _total_text(grid: Grid, evaluation: Evaluation, notes: dict[str, str]) -> str:
    """« 19 / 24 », or « 17 / 24 — 1 dimension manquante, 1 non valable »."""
    shown = f"{evaluation.total(grid)} / {grid.global_evaluation.maximum}"
    lacking = _unanswered(grid, evaluation)
    if not lacking:
        return shown
    invalid = sum(1 for i in lacking if not _is_missing(notes.get(i, "non renseigné")))
    parts = []
    if len(lacking) - invalid:
        parts.append(
            f"{_plural(len(lacking) - invalid, 'dimension')} manquante"
            f"{'s' if len(lacking) - invalid > 1 else ''}"
        )
    if invalid:
        parts.append(
            f"{_plural(invalid, 'dimension') if not parts else invalid} non valable"
            f"{'s' if invalid > 1 else ''}"
        )
    return f"{shown} — {', '.join(parts)}"


# --- the per-student report -------------------------------------------------------------


def build_student_report(
    grid: Grid,
    config: CampaignConfig,
    data: StudentReportData,
    template: Path | None = None,
) -> Document:
    """One student's « bilan de stage »: identity, ratings, global evaluation, appreciations.

    A bilan that is not complete says so at the top of every page (header) and in its
    body; each unanswered or invalid answer says so in its own row.
    """
    student, evaluation = data.student, data.evaluation
    title = f"Bilan de stage — {student.display_name}"
    doc = new_document(template, _markers(config, student.class_name, title))
    if data.status in HEADER_BANNERS:
        add_header_banner(doc, *HEADER_BANNERS[data.status])
    if data.to_confirm:
        add_header_banner(doc, TO_CONFIRM_BANNER, DARK_RED)
    notes = answer_notes(grid, data.problems)
    b = BodyBuilder(doc)
    b.para("Bilan de stage", "Title")
    b.para(grid.diploma, "Subtitle")
    if data.to_confirm:
        _to_confirm_banner(b, data.problems if data.status == ReturnStatus.COMPLETE else ())
    if data.status != ReturnStatus.COMPLETE:
        _banner(b, data.status, data.problems)
    _identity(b, config, data)
    scale = " · ".join(f"{level.code} = {level.label}" for level in grid.scale)
    b.para(
        f"Échelle de notation : {scale}.", "Normal", italic=True, size=16, color=GREY, before=160
    )
    for section in grid.sections:
        _section_table(b, grid, section, evaluation.ratings, notes)
    _global_table(b, grid, evaluation, notes)
    _closing(b, grid, config, data)
    _finish(doc, b, title, config, grid)
    return doc


def _markers(config: CampaignConfig, class_name: str, title: str) -> dict[str, str]:
    values = (config.school, class_name, config.school_year, title)
    return {marker: clean_text(value) for marker, value in zip(MARKERS, values, strict=True)}


def _banner(b: BodyBuilder, status: str, problems: Sequence[str]) -> None:
    label = STATUS_LABELS.get(status, status).upper()
    explanation = _BANNER_TEXT.get(status, "ce bilan n’est pas définitif.")
    border, fill = (DARK_RED, "F8D7DA") if status == ReturnStatus.INVALID else ("BF8F00", "FFF2CC")
    text = DARK_RED if status == ReturnStatus.INVALID else DARK_YELLOW
    tbl = b.table([b.width], border=border, size=12)
    tc = b.cell(b.row(tbl, split=True), b.width, f"BILAN {label} — {explanation}", fill=fill,
                style="Normal", bold=True, color=text)  # fmt: skip
    for problem in problems:
        b.para(f"•\t{problem}", parent=tc, indent=284)


def _to_confirm_banner(b: BodyBuilder, problems: Sequence[str]) -> None:
    border, fill = DARK_RED, "F8D7DA"
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
    rest = b.width - label
    if data.return_file_name:
        tr = b.row(tbl)
        b.cell(tr, label, "Classeur retourné", fill=LABEL, bold=True)
        received = f", reçu le {_fmt_date(data.returned_on)}" if data.returned_on else ""
        b.cell(tr, rest, f"« {data.return_file_name} »{received}", span=3)
    if data.return_sha256:
        tr = b.row(tbl)
        b.cell(tr, label, "Empreinte SHA-256", fill=LABEL, bold=True)
        b.cell(tr, rest, data.return_sha256, span=3, size=15)


def _note_cell(b: BodyBuilder, tr: Element, width: int, span: int, note: str) -> None:
    """A cell saying what is wrong with an answer: missing (yellow) or invalid (red)."""
    fill, color = ("FFF2CC", DARK_YELLOW) if _is_missing(note) else ("F8D7DA", DARK_RED)
    b.cell(tr, width, note, span=span, fill=fill, italic=True, color=color, align="center")


def _section_table(
    b: BodyBuilder,
    grid: Grid,
    section: Section,
    ratings: dict[str, str | None],
    notes: dict[str, str],
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
        if rating not in codes:
            note = notes.get(criterion.id, "non renseigné")
            _note_cell(b, tr, column * len(codes), len(codes), note)
            continue
        for code in codes:
            if code == rating:
                b.cell(tr, column, "X", fill=MARK, bold=True, align="center")
            else:
                b.cell(tr, column)


def _global_table(
    b: BodyBuilder, grid: Grid, evaluation: Evaluation, notes: dict[str, str]
) -> None:
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
            _note_cell(b, tr, widths[2], 1, notes.get(dimension.id, "non renseigné"))
        else:
            b.cell(tr, widths[1], f"{level} / {dimension.maximum}", fill=MARK, align="center")
            b.cell(tr, widths[2], dimension.descriptor(level))
    total = _total_text(grid, evaluation, notes)
    label = "Total partiel" if _unanswered(grid, evaluation) else "Total"
    b.cell(b.row(tbl), b.width, f"{label} : {total}", span=3, fill=HEAD, bold=True,
           align="right", size=20)  # fmt: skip


def _closing(b: BodyBuilder, grid: Grid, config: CampaignConfig, data: StudentReportData) -> None:
    """The appreciations: the tutor's with its date and signature, the team's with the
    teacher's visa. Each is one framed table row that does not split across pages (unless
    its text is longer than a page): the date and signature always stay with the text."""
    closing, evaluation = grid.closing, data.evaluation
    b.para("Appréciations", "Heading 1")
    start = len(b.blocks)
    b.para(closing.tutor_appreciation, "Heading 3")
    text = evaluation.tutor_appreciation
    tc = b.box(text, 0)
    if not text:  # says so, as a missing criterion does
        b.run(tc[-1], "non renseignée par le tuteur", italic=True, color=DARK_YELLOW)
    b.para(f"{closing.date} : {_fmt_date(evaluation.date) or '—'}", "Normal", parent=tc,
           before=360, rule_above=True)  # fmt: skip
    p = b.para(f"{closing.signature} : {evaluation.signature or '—'}", "Normal", parent=tc)
    note = _SIGNATURE_NOTE if evaluation.signature else "le tuteur n’a pas écrit son nom"
    b.run(p, f" ({note})", italic=True, size=16, color=GREY)
    b.para(closing.team_appreciation, "Heading 3")
    text = data.team_appreciation
    tc = b.box(text, 0)
    teacher = f" : {config.teacher_name}" if config.teacher_name else ""
    b.para(f"Visa du professeur{teacher}", "Normal", parent=tc, bold=True,
           before=360 if text else 2000, rule_above=True)  # fmt: skip
    b.para("Date et signature :", "Normal", parent=tc)
    b.para("", "Normal", parent=tc, before=700)  # room to sign
    texts = (evaluation.tutor_appreciation, data.team_appreciation)
    if sum(len(line) // 95 + 1 for text in texts for line in text.split("\n")) <= 24:
        b.keep_together(start)  # the teacher's visa never alone on a last page


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
    """The class report: cover, summary, global evaluation, statistics per criterion (with
    charts), appreciations.

    Students are listed in alphabetical order of their names; those in `without_return`
    (no grid came back) are listed too, so the report covers the whole class. No table of
    contents field (Word would ask to update it on opening): the cover lists the parts.
    """
    title = f"Bilan des stages — {class_name}"
    doc = new_document(template, _markers(config, class_name, title))
    doc.sections[-1].different_first_page_header_footer = True  # a bare cover page
    b = BodyBuilder(doc)
    ordered = sorted(students, key=_sort_key)
    missing = sorted(without_return, key=_student_key)
    _cover(b, grid, config, class_name, ordered, missing, today or date.today())
    _summary(b, grid, ordered, missing)
    _global_statistics(b, grid, ordered)
    _statistics(b, grid, ordered)
    _appreciations(b, grid, ordered, missing)
    _finish(doc, b, title, config, grid)
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
        ("Contenu", " · ".join(CONTENTS)),
    ]
    b.para("", "Normal", before=1400)  # white space under the title
    widths = [2600, 4600]
    tbl = b.table(widths, border="", center=True)
    for name, value in facts:
        if value:
            tr = b.row(tbl)
            b.cell(tr, widths[0], name, style="Normal", bold=True, color=GREY, align="right")
            b.cell(tr, widths[1], value, style="Normal")


def _caption(b: BodyBuilder, text: str, *, before: int | None = None) -> None:
    """A short note under a heading: what a table or chart counts."""
    b.para(text, "Normal", italic=True, size=17, color=GREY, keep_next=True, before=before)


def _complete_totals(grid: Grid, students: Sequence[StudentReportData]) -> list[int]:
    """The totals of the complete global evaluations (a partial total would mislead)."""
    return [d.evaluation.total(grid) for d in students if not _unanswered(grid, d.evaluation)]


def _summary(
    b: BodyBuilder, grid: Grid, students: Sequence[StudentReportData], missing: Sequence[Student]
) -> None:
    b.para(CONTENTS[0], "Heading 1", page_break=True)
    maximum = grid.global_evaluation.maximum
    b.para(_status_counts(students, missing) + ".", "Normal")
    codes = grid.scale_codes
    _caption(
        b,
        f"Total : évaluation globale, sur {maximum}. {', '.join(codes)} : nombre de critères "
        f"(sur {len(grid.criteria)}) que le tuteur a notés à ce niveau.",
    )
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
        if _unanswered(grid, data.evaluation):
            total += " (partiel)"
        b.cell(tr, widths[4], total, fill=zebra, align="center")
        for width, code in zip(widths[5:], codes, strict=True):
            b.cell(tr, width, str(counts[code]), fill=zebra, align="center")
    _totals(b, grid, students)


def _totals(b: BodyBuilder, grid: Grid, students: Sequence[StudentReportData]) -> None:
    """The totals of the complete bilans: minimum, median, maximum, mean, and a chart."""
    maximum = grid.global_evaluation.maximum
    totals = _complete_totals(grid, students)
    b.para("Total de l’évaluation globale", "Heading 2")
    left_out = len(students) - len(totals)
    aside = f" Total partiel, non compté : {_plural(left_out, 'stagiaire')}." if left_out else ""
    if not totals:
        b.para(f"Aucune évaluation globale complète : pas de statistique du total.{aside}",
               "Normal")  # fmt: skip
        return
    whom = f"{'Sur les' if len(totals) > 1 else 'Sur'} {_plural(len(totals), 'stagiaire')}"
    middle, mean = statistics.median(totals), round(statistics.mean(totals), 2)
    b.para(
        f"{whom} dont l’évaluation globale est complète : minimum {min(totals)}, médiane "
        f"{_fmt_short(middle)}, maximum {max(totals)}, moyenne {_fmt_short(mean)} "
        f"(sur {maximum}).{aside}",
        "Normal",
        keep_next=True,
    )
    from pipeline.report_charts import totals_chart  # matplotlib: loaded when needed

    b.picture(totals_chart(totals, maximum), b.width * 95 // 100)
    _caption(b, "Nombre de stagiaires par total ; la ligne pointillée marque la médiane.")


def _global_statistics(b: BodyBuilder, grid: Grid, students: Sequence[StudentReportData]) -> None:
    """Per dimension of the global evaluation: how many students reached each level, and
    the mean level."""
    ge = grid.global_evaluation
    b.para(CONTENTS[1], "Heading 1")
    values = sorted({v for d in ge.dimensions for v in d.values})
    _caption(
        b,
        "Nombre de stagiaires par niveau atteint, pour chaque dimension "
        f"({_plural(len(students), 'retour')} du tuteur) ; « · » : niveau absent de cette "
        "dimension. Moyenne sur les niveaux donnés.",
    )
    column, rest = 640, 1100
    first = b.width - column * len(values) - 2 * rest
    widths = [first, *[column] * len(values), rest, rest]
    tbl = b.table(widths)
    tr = b.row(tbl, header=True)
    headers = ["Dimension", *(f"Niv. {v}" for v in values), "Sans niveau", "Moyenne"]
    for width, header in zip(widths, headers, strict=True):
        b.cell(tr, width, header, fill=HEAD, bold=True, align="" if width == first else "center")
    for dimension in ge.dimensions:
        given = [d.evaluation.levels.get(dimension.id) for d in students]
        valid = [level for level in given if level in dimension.values]
        tr = b.row(tbl)
        b.cell(tr, first, dimension.label)
        for value in values:
            if value not in dimension.values:
                b.cell(tr, column, "·", fill=SUBHEAD, align="center")
                continue
            count = sum(1 for level in valid if level == value)
            share = count / len(valid) if valid else 0.0
            b.cell(tr, column, str(count), fill=_blend("2E75B6", share), align="center")
        b.cell(tr, rest, str(len(given) - len(valid)), align="center")
        mean = f"{_fmt_number(statistics.mean(valid))} / {dimension.maximum}" if valid else "—"
        b.cell(tr, rest, mean, align="center", bold=True)


def _statistics(b: BodyBuilder, grid: Grid, students: Sequence[StudentReportData]) -> None:
    codes = grid.scale_codes
    score = {code: i for i, code in enumerate(codes, start=1)}
    counts = {c.id: dict.fromkeys(codes, 0) for c in grid.criteria}
    for data in students:
        for criterion_id, rating in data.evaluation.ratings.items():
            if criterion_id in counts and rating in score:
                counts[criterion_id][rating] += 1
    b.para(CONTENTS[2], "Heading 1", page_break=True)
    per_section = [
        (s.title, [sum(counts[c.id][code] for c in s.criteria) for code in codes])
        for s in grid.sections
    ]
    if any(sum(row) for _, row in per_section):
        from pipeline.report_charts import levels_chart  # matplotlib: loaded when needed

        _caption(b, "Part de chaque note dans chaque partie de la grille, toutes réponses "
                    "des tuteurs confondues.")  # fmt: skip
        levels = [(level.code, level.label) for level in grid.scale]
        b.picture(levels_chart(per_section, levels), b.width * 95 // 100)
    values = ", ".join(f"{code} = {value}" for code, value in score.items())
    _caption(
        b,
        "Nombre de stagiaires par note, pour chaque critère ; la teinte s’intensifie avec la "
        f"part des réponses. Moyenne sur les seules notes données, avec {values}.",
        before=200,
    )
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
                b.cell(tr, column, str(given[code]), fill=fill, align="center")
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
    b.para(CONTENTS[3], "Heading 1", page_break=True)
    closing = grid.closing
    for data in students:
        s, evaluation = data.student, data.evaluation
        b.para(f"{s.display_name} — {s.company}" if s.company else s.display_name, "Heading 2")
        status = _status_text(data)
        notes = answer_notes(grid, data.problems) if data.status != ReturnStatus.COMPLETE else {}
        partial = " partiel" if _unanswered(grid, evaluation) else ""
        b.para(
            f"Tuteur : {s.tutor_name} · Stage du {_fmt_date(s.start)} au {_fmt_date(s.end)} · "
            f"Total{partial} : {_total_text(grid, evaluation, notes)} · Statut : {status}",
            "Normal", size=16,
            color=DARK_RED if data.status == ReturnStatus.INVALID or data.to_confirm else GREY,
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

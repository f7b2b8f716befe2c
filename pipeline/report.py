"""Evaluations → Word documents: a « bilan de stage » per student, a report per class.

Both documents start from a Word template (styles, margins, header, footer; see
`pipeline.report_template`): the teacher's `modele_rapport.docx` when it exists, the
default one otherwise. The body is built with lxml and inserted in one pass, so the class
report stays linear in the number of students. Functions return documents; the caller
saves them with `save_document` (atomic) or turns them into bytes (`document_bytes`).
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import docx
from docx.document import Document
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.opc.exceptions import PackageNotFoundError
from docx.opc.part import XmlPart
from docx.oxml.parser import OxmlElement, oxml_parser
from lxml import etree

from pipeline.errors import GrilleError
from pipeline.files import atomic_save
from pipeline.grid import Grid, Section
from pipeline.report_template import TABLE_TEXT_STYLE, build_default_template, field_runs
from pipeline.roster import Student
from pipeline.settings import CampaignConfig
from pipeline.validation import STATUS_LABELS, Evaluation

Element = Any  # an lxml element (lxml ships no type stubs)

TOC_INSTRUCTION = 'TOC \\o "1-3" \\h \\z \\u'
TOC_PLACEHOLDER = "Clic droit › Mettre à jour les champs pour afficher la table des matières"

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_NSMAP = {"w": _W}
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
_ILLEGAL_XML = re.compile("[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Elements that follow <w:updateFields> in <w:settings> (schema order).
_AFTER_UPDATE_FIELDS = (
    "w:hdrShapeDefaults", "w:footnotePr", "w:endnotePr", "w:compat", "w:docVars",
    "w:rsids", "m:mathPr", "w:attachedSchema", "w:themeFontLang", "w:clrSchemeMapping",
    "w:doNotIncludeSubdocsInStats", "w:doNotAutoCompressPictures", "w:forceUpgrade",
    "w:captions", "w:readModeInkLockDown", "w:smartTagType", "sl:schemaLibrary",
    "w:shapeDefaults", "w:doNotEmbedSmartTags", "w:decimalSymbol", "w:listSeparator",
)  # fmt: skip

BORDER, HEAD, SUBHEAD, LABEL, MARK, ZEBRA = (
    "A6A6A6", "D9E2F3", "EDEDED", "F2F2F2", "BDD7EE", "F7F9FC"
)  # fmt: skip
GREY = "595959"
_STATUS_FILL = {"complete": "E2EFDA", "incomplete": "FFF2CC", "invalid": "F8D7DA"}
_BANNER_TEXT = {
    "incomplete": "la grille du tuteur n’est pas entièrement renseignée ; "
    "ce bilan n’est pas définitif.",
    "invalid": "la grille retournée contient des réponses non valables ; "
    "ce bilan ne peut pas être utilisé en l’état.",
}


class ReportError(GrilleError):
    """The report template cannot be used."""


@dataclass(frozen=True)
class StudentReportData:
    """Everything one student's report shows."""

    student: Student
    evaluation: Evaluation
    status: str  # "complete" | "incomplete" | "invalid"
    problems: tuple[str, ...]
    team_appreciation: str
    returned_on: date | None


def clean_text(text: str) -> str:
    """Text Word can hold: line ends made LF, control chars and lone surrogates removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0b", "\n")
    return _ILLEGAL_XML.sub("", text)


def _fmt_date(value: date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else ""


def _fmt_number(value: float) -> str:
    return f"{value:.2f}".replace(".", ",")


def _tag(name: str) -> str:
    return f"{{{_W}}}{name}"


def _sub(parent: Element, name: str, **attrs: str) -> Element:
    return etree.SubElement(parent, _tag(name), {_tag(k): v for k, v in attrs.items()})


def _add_text(run: Element, text: str) -> None:
    """Text into a run: line breaks become <w:br/>, tabs <w:tab/>."""
    for i, line in enumerate(clean_text(text).split("\n")):
        if i:
            _sub(run, "br")
        for j, part in enumerate(line.split("\t")):
            if j:
                _sub(run, "tab")
            if part:
                t = _sub(run, "t")
                t.text = part
                if part[0] == " " or part[-1] == " ":
                    t.set(_XML_SPACE, "preserve")


def _blend(color: str, share: float) -> str:
    """`color` mixed with white: share 0 → white, share 1 → 85 % of the colour."""
    channels = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return "".join(f"{round(255 - (255 - c) * share * 0.85):02X}" for c in channels)


class _Builder:
    """Builds body elements for one document, with the template's style ids."""

    def __init__(self, doc: Document) -> None:
        self.blocks: list[Element] = []
        self._ids: dict[str, str] = {}
        for style in doc.styles.element.iterchildren(_tag("style")):
            name = style.find(_tag("name"))
            if name is not None:
                self._ids.setdefault(name.get(_tag("val"), "").lower(), style.get(_tag("styleId")))
        section = doc.sections[-1]
        if section.page_width and section.left_margin is not None and section.right_margin:
            width = section.page_width - section.left_margin - section.right_margin
            self.width = max(int(width / 635), 4000)  # EMU → twips
        else:
            self.width = 9638

    def para(
        self,
        text: str = "",
        style: str | None = TABLE_TEXT_STYLE,
        *,
        parent: Element | None = None,
        bold: bool = False,
        italic: bool = False,
        size: int = 0,
        color: str = "",
        align: str = "",
        keep_next: bool = False,
        page_break: bool = False,
        before: int | None = None,
        indent: int = 0,
    ) -> Element:
        """A paragraph (in `parent`, or as a new body block) with one run of `text`."""
        if parent is None:
            p = oxml_parser.makeelement(_tag("p"), nsmap=_NSMAP)
            self.blocks.append(p)
        else:
            p = _sub(parent, "p")
        style_id = self._ids.get(style.lower()) if style else None
        level = style[8:] if style and style.startswith("Heading ") and not style_id else ""
        if style_id or keep_next or page_break or align or before is not None or indent:
            ppr = _sub(p, "pPr")
            if style_id:
                _sub(ppr, "pStyle", val=style_id)
            if keep_next or level:
                _sub(ppr, "keepNext")
            if page_break:
                _sub(ppr, "pageBreakBefore")
            if before is not None:
                _sub(ppr, "spacing", before=str(before))
            if indent:
                _sub(ppr, "ind", left=str(indent), hanging=str(indent))
            if align:
                _sub(ppr, "jc", val=align)
            if level:  # the template lacks the heading style: keep it in the outline
                _sub(ppr, "outlineLvl", val=str(int(level) - 1))
        if text:
            self.run(p, text, bold=bold or bool(level), italic=italic, size=size, color=color)
        return p

    @staticmethod
    def run(
        p: Element, text: str, *, bold: bool = False, italic: bool = False, size: int = 0,
        color: str = "",
    ) -> Element:  # fmt: skip
        """A run of `text` with direct formatting (`size` in half-points)."""
        r = _sub(p, "r")
        if bold or italic or size or color:
            rpr = _sub(r, "rPr")
            if bold:
                _sub(rpr, "b")
            if italic:
                _sub(rpr, "i")
            if color:
                _sub(rpr, "color", val=color)
            if size:
                _sub(rpr, "sz", val=str(size))
        _add_text(r, text)
        return r

    def table(
        self, widths: Sequence[int], *, border: str = BORDER, size: int = 4, center: bool = False
    ) -> Element:
        """A fixed-layout table (grid columns and widths set) as a new body block."""
        tbl = oxml_parser.makeelement(_tag("tbl"), nsmap=_NSMAP)
        self.blocks.append(tbl)
        pr = _sub(tbl, "tblPr")
        _sub(pr, "tblW", w=str(sum(widths)), type="dxa")
        if center:
            _sub(pr, "jc", val="center")
        borders = _sub(pr, "tblBorders")
        for side in ("top", "left", "bottom", "right", "insideH", "insideV"):
            if border:
                _sub(borders, side, val="single", sz=str(size), space="0", color=border)
            else:
                _sub(borders, side, val="nil")
        _sub(pr, "tblLayout", type="fixed")
        margins = _sub(pr, "tblCellMar")
        _sub(margins, "left", w="85", type="dxa")
        _sub(margins, "right", w="85", type="dxa")
        grid = _sub(tbl, "tblGrid")
        for width in widths:
            _sub(grid, "gridCol", w=str(width))
        return tbl

    @staticmethod
    def row(tbl: Element, *, header: bool = False, height: int = 0, split: bool = False) -> Element:
        """A table row; by default it does not split across pages."""
        tr = _sub(tbl, "tr")
        if header or height or not split:
            pr = _sub(tr, "trPr")
            if not split:
                _sub(pr, "cantSplit")
            if height:
                _sub(pr, "trHeight", val=str(height), hRule="atLeast")
            if header:
                _sub(pr, "tblHeader")
        return tr

    def cell(
        self, tr: Element, width: int, text: str = "", *, span: int = 1, fill: str = "",
        valign: str = "center", style: str | None = TABLE_TEXT_STYLE, **run: Any,
    ) -> Element:  # fmt: skip
        """A cell of `width` twips holding one paragraph of `text`."""
        tc = _sub(tr, "tc")
        pr = _sub(tc, "tcPr")
        _sub(pr, "tcW", w=str(width), type="dxa")
        if span > 1:
            _sub(pr, "gridSpan", val=str(span))
        if fill:
            _sub(pr, "shd", val="clear", color="auto", fill=fill)
        _sub(pr, "vAlign", val=valign)
        self.para(text, style, parent=tc, **run)
        return tc

    def box(self, text: str, height: int, *, border: str = BORDER, fill: str = "") -> Element:
        """A framed one-cell table holding `text` (line breaks kept), at least `height` high."""
        tbl = self.table([self.width], border=border)
        tr = self.row(tbl, height=height, split=len(text) > 1200)
        return self.cell(tr, self.width, text, valign="top", style="Normal", fill=fill)

    def heading_row(self, tbl: Element, text: str, span: int, fill: str, **run: Any) -> None:
        """A shaded row spanning the whole table (section or sub-heading)."""
        self.cell(self.row(tbl), self.width, text, span=span, fill=fill, keep_next=True, **run)

    def insert_into(self, doc: Document) -> None:
        """Move every block into the body, before its final section properties."""
        body = doc.element.body
        sect = body[-1] if len(body) and body[-1].tag == _tag("sectPr") else None
        if self.blocks and self.blocks[-1].tag == _tag("tbl"):
            self.para("", None)  # Word wants a paragraph after a final table
        body.extend(self.blocks)
        if sect is not None:
            body.append(sect)
        self.blocks = []


@cache
def _default_template_bytes() -> bytes:
    return document_bytes(build_default_template())


@lru_cache(maxsize=8)
def _read_template(path: str, _mtime_ns: int, _size: int) -> bytes:
    data = Path(path).read_bytes()
    try:
        docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, etree.LxmlError) as e:
        raise ReportError(
            f"Modèle de rapport « {path} » illisible ({e}). Enregistrez-le depuis Word au "
            "format « Document Word (.docx) », ou supprimez-le pour utiliser le modèle par défaut."
        ) from e
    return data


def _template_bytes(template: Path | None) -> bytes:
    if template is None or not template.is_file():
        return _default_template_bytes()
    stat = template.stat()
    return _read_template(str(template.resolve()), stat.st_mtime_ns, stat.st_size)


def _new_document(template: Path | None, markers: dict[str, str]) -> Document:
    """A copy of the template: its body emptied, its header and footer markers replaced."""
    doc = docx.Document(io.BytesIO(_template_bytes(template)))
    body = doc.element.body
    for child in list(body):
        if child.tag != _tag("sectPr"):
            body.remove(child)
    for rel in doc.part.rels.values():
        part = rel.target_part if not rel.is_external else None
        if rel.reltype in (RT.HEADER, RT.FOOTER) and isinstance(part, XmlPart):
            _replace_markers(part.element, markers)
    return doc


def _replace_markers(root: Element, markers: dict[str, str]) -> None:
    def replace(text: str) -> str:
        for marker, value in markers.items():
            text = text.replace(marker, clean_text(value))
        return text

    for p in root.iter(_tag("p")):
        texts = list(p.iter(_tag("t")))
        if "{" not in "".join(t.text or "" for t in texts):
            continue
        for t in texts:
            t.text = replace(t.text or "")
            t.set(_XML_SPACE, "preserve")
        joined = "".join(t.text or "" for t in texts)
        if any(marker in joined for marker in markers):  # a marker split across runs
            texts[0].text = replace(joined)
            for t in texts[1:]:
                t.text = ""


def _finish(doc: Document, b: _Builder, title: str, config: CampaignConfig, grid: Grid) -> None:
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
    doc = _new_document(template, _markers(config, student.class_name, title))
    b = _Builder(doc)
    b.para("Bilan de stage", "Title")
    b.para(grid.diploma, "Subtitle")
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
    return {
        "{etablissement}": config.school,
        "{classe}": class_name,
        "{annee_scolaire}": config.school_year,
        "{titre}": title,
    }


def _banner(b: _Builder, status: str, problems: Sequence[str]) -> None:
    label = STATUS_LABELS.get(status, status).upper()
    explanation = _BANNER_TEXT.get(status, "ce bilan n’est pas définitif.")
    border, fill = ("C00000", "F8D7DA") if status == "invalid" else ("BF8F00", "FFF2CC")
    tbl = b.table([b.width], border=border, size=12)
    tc = b.cell(b.row(tbl, split=True), b.width, f"BILAN {label} — {explanation}", fill=fill,
                style="Normal", bold=True, color=border)  # fmt: skip
    for problem in problems:
        b.para(f"•\t{problem}", parent=tc, indent=284)


def _identity(b: _Builder, config: CampaignConfig, data: StudentReportData) -> None:
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
    b: _Builder, grid: Grid, section: Section, ratings: dict[str, str | None]
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


def _global_table(b: _Builder, grid: Grid, evaluation: Evaluation) -> None:
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
) -> Document:
    """The class report: cover, contents, summary, statistics per criterion, appreciations.

    Students are listed in alphabetical order of their names.
    """
    title = f"Bilan des stages — {class_name}"
    doc = _new_document(template, _markers(config, class_name, title))
    doc.sections[-1].different_first_page_header_footer = True  # a bare cover page
    b = _Builder(doc)
    ordered = sorted(students, key=_sort_key)
    _cover(b, grid, config, class_name, ordered, today or date.today())
    b.para("Sommaire", "TOC Heading", page_break=True)
    b.para("", "Normal").extend(field_runs(TOC_INSTRUCTION, TOC_PLACEHOLDER))
    _summary(b, grid, ordered)
    _statistics(b, grid, ordered)
    _appreciations(b, grid, ordered)
    _finish(doc, b, title, config, grid)
    settings = doc.settings.element
    update = settings.find(_tag("updateFields"))
    if update is None:
        update = OxmlElement("w:updateFields")
        settings.insert_element_before(update, *_AFTER_UPDATE_FIELDS)
    update.set(_tag("val"), "true")
    return doc


def _sort_key(data: StudentReportData) -> tuple[str, str, str]:
    def fold(text: str) -> str:
        return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()

    s = data.student
    return fold(s.last_name), fold(s.first_name), s.student_id


def _status_counts(students: Sequence[StudentReportData]) -> str:
    counts = {status: 0 for status in _STATUS_FILL}
    for data in students:
        counts[data.status] = counts.get(data.status, 0) + 1
    parts = [f"{n} {STATUS_LABELS.get(s, s)}{'s' if n > 1 else ''}" for s, n in counts.items()]
    return f"{len(students)} élève{'s' if len(students) > 1 else ''} : {', '.join(parts)}"


def _cover(
    b: _Builder, grid: Grid, config: CampaignConfig, class_name: str,
    students: Sequence[StudentReportData], today: date,
) -> None:  # fmt: skip
    b.para(config.school, "Subtitle", align="center", before=2600)
    b.para(f"Bilan des stages — {class_name}", "Title", align="center", before=1400)
    b.para(grid.diploma, "Subtitle", align="center")
    facts = [
        ("Classe", class_name),
        ("Année scolaire", config.school_year),
        ("Élèves", _status_counts(students)),
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


def _summary(b: _Builder, grid: Grid, students: Sequence[StudentReportData]) -> None:
    b.para("Synthèse de la classe", "Heading 1", page_break=True)
    maximum = grid.global_evaluation.maximum
    complete = [d.evaluation.total(grid) for d in students if d.status == "complete"]
    text = _status_counts(students) + "."
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
    for index, data in enumerate(students):
        s, counts = data.student, data.evaluation.rating_counts(grid)
        zebra = ZEBRA if index % 2 else ""
        tr = b.row(tbl)
        for width, text in zip(widths[:3], (s.display_name, s.company, s.tutor_name), strict=True):
            b.cell(tr, width, text, fill=zebra)
        status = STATUS_LABELS.get(data.status, data.status)
        b.cell(tr, widths[3], status, fill=_STATUS_FILL.get(data.status, zebra), align="center")
        total = f"{data.evaluation.total(grid)} / {maximum}"
        b.cell(tr, widths[4], total, fill=zebra, align="center")
        for width, code in zip(widths[5:], codes, strict=True):
            b.cell(tr, width, str(counts[code]), fill=zebra, align="center")


def _statistics(b: _Builder, grid: Grid, students: Sequence[StudentReportData]) -> None:
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


def _appreciations(b: _Builder, grid: Grid, students: Sequence[StudentReportData]) -> None:
    b.para("Appréciations", "Heading 1", page_break=True)
    closing = grid.closing
    for data in students:
        s, evaluation = data.student, data.evaluation
        b.para(f"{s.display_name} — {s.company}" if s.company else s.display_name, "Heading 2")
        status = STATUS_LABELS.get(data.status, data.status)
        b.para(
            f"Tuteur : {s.tutor_name} · Stage du {_fmt_date(s.start)} au {_fmt_date(s.end)} · "
            f"Total : {evaluation.total(grid)} / {grid.global_evaluation.maximum} · "
            f"Statut : {status}",
            "Normal", size=16, color="C00000" if data.status == "invalid" else GREY,
            keep_next=True,
        )  # fmt: skip
        b.para(closing.tutor_appreciation, "Normal", bold=True, keep_next=True, before=120)
        b.box(evaluation.tutor_appreciation or "Aucune appréciation du tuteur.", 0)
        b.para(closing.team_appreciation, "Normal", bold=True, keep_next=True, before=120)
        b.box(data.team_appreciation, 0 if data.team_appreciation else 1300)

"""The Word layer of the reports: the template, and a builder of body elements.

A template carries what a teacher may restyle in Word (`modele_rapport.docx`): paragraph
styles (Normal, Title, Subtitle, Heading 1-3, TOC Heading, « Texte tableau »), the page
and its margins, the header and the footer. Header and footer text may hold the markers
of `MARKERS`, replaced in every report; a logo added to the header is kept as is. The
template's body is ignored. The default template is built in code.

`BodyBuilder` writes paragraphs and fixed-layout tables with lxml, off the document, and
moves them into the body at once: python-docx's `add_table`/`add_paragraph` search the
whole body each time, which makes long documents quadratic.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import docx
from docx.document import Document
from docx.enum.style import WD_STYLE_TYPE
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.opc.exceptions import PackageNotFoundError
from docx.opc.part import XmlPart
from docx.oxml.ns import qn
from docx.oxml.parser import oxml_parser, parse_xml
from docx.shared import Cm, RGBColor, Twips
from lxml import etree

from pipeline.errors import GrilleError

Element = Any  # an lxml element (lxml ships no type stubs)

FONT = "Arial"
TABLE_TEXT_STYLE = "Texte tableau"
MARKERS = ("{etablissement}", "{classe}", "{annee_scolaire}", "{titre}")
BORDER = "A6A6A6"
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_NSMAP = {"w": _W}
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
_ILLEGAL_XML = re.compile("[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NS = f'xmlns:w="{_W}"'
_KEPT_TABLE_STYLES = {"TableNormal", "TableGrid"}

# style id → (paragraph properties, run properties), as WordprocessingML fragments.
_STYLES = {
    "Normal": (
        '<w:spacing w:after="80" w:line="264" w:lineRule="auto"/>',
        f'<w:rFonts w:ascii="{FONT}" w:hAnsi="{FONT}" w:eastAsia="{FONT}" w:cs="{FONT}"/>'
        '<w:sz w:val="20"/>',
    ),
    "Title": (
        '<w:spacing w:after="120" w:line="240" w:lineRule="auto"/>',
        '<w:b/><w:color w:val="1F3864"/><w:sz w:val="44"/>',
    ),
    "Subtitle": ('<w:spacing w:after="240"/>', '<w:color w:val="595959"/><w:sz w:val="24"/>'),
    "Heading1": (
        '<w:keepNext/><w:keepLines/><w:pBdr><w:bottom w:val="single" w:sz="6" w:space="2"'
        ' w:color="1F3864"/></w:pBdr><w:spacing w:before="360" w:after="120"/>'
        '<w:outlineLvl w:val="0"/>',
        '<w:b/><w:color w:val="1F3864"/><w:sz w:val="28"/>',
    ),
    "Heading2": (
        '<w:keepNext/><w:keepLines/><w:spacing w:before="240" w:after="80"/>'
        '<w:outlineLvl w:val="1"/>',
        '<w:b/><w:color w:val="2E5597"/><w:sz w:val="24"/>',
    ),
    "Heading3": (
        '<w:keepNext/><w:keepLines/><w:spacing w:before="160" w:after="60"/>'
        '<w:outlineLvl w:val="2"/>',
        '<w:b/><w:color w:val="1F3864"/><w:sz w:val="21"/>',
    ),
    "TOCHeading": ('<w:spacing w:before="0" w:after="240"/><w:outlineLvl w:val="9"/>', ""),
    "Header": (
        '<w:pBdr><w:bottom w:val="single" w:sz="4" w:space="4" w:color="A6A6A6"/></w:pBdr>'
        '<w:tabs><w:tab w:val="right" w:pos="9638"/></w:tabs><w:spacing w:after="0"/>',
        '<w:color w:val="595959"/><w:sz w:val="16"/>',
    ),
    "Footer": (
        '<w:tabs><w:tab w:val="right" w:pos="9638"/></w:tabs><w:spacing w:after="0"/>',
        '<w:color w:val="595959"/><w:sz w:val="16"/>',
    ),
    "Textetableau": (
        '<w:spacing w:before="20" w:after="20" w:line="240" w:lineRule="auto"/>',
        '<w:sz w:val="18"/>',
    ),
}

_NOTE = (
    "Modèle des bilans de stage produits par grille. Modifiez ici les styles (Normal, "
    "Titre, Titre 1, Titre 2, Texte tableau…), les marges, l’en-tête et le pied de page ; "
    "vous pouvez ajouter le logo de l’établissement dans l’en-tête. Le texte de cette page "
    "est ignoré. Dans l’en-tête et le pied de page, ces repères sont remplacés : "
    + ", ".join(MARKERS)
    + "."
)


class ReportError(GrilleError):
    """The teacher's report template cannot be used."""


def field_runs(instruction: str, placeholder: str) -> list[Any]:
    """The runs of a complex field (PAGE, NUMPAGES, TOC…) showing `placeholder`."""
    runs = []
    for kind, text in (("begin", ""), ("instr", instruction), ("separate", ""), ("text", "")):
        run = etree.Element(qn("w:r"), nsmap={"w": _W})
        if kind == "instr":
            child = etree.SubElement(run, qn("w:instrText"))
            child.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")
            child.text = f" {text} "
        elif kind == "text":
            child = etree.SubElement(run, qn("w:t"))
            child.text = placeholder
        else:
            etree.SubElement(run, qn("w:fldChar")).set(qn("w:fldCharType"), kind)
        runs.append(run)
    end = etree.Element(qn("w:r"), nsmap={"w": _W})
    etree.SubElement(end, qn("w:fldChar")).set(qn("w:fldCharType"), "end")
    return [*runs, end]


def _restyle(styles: Any, style_id: str, ppr: str, rpr: str) -> None:
    style = styles.find(f"w:style[@w:styleId='{style_id}']", {"w": _W})
    if style is None:
        return
    for tag in ("w:pPr", "w:rPr"):
        for old in style.findall(qn(tag)):
            style.remove(old)
    style.append(parse_xml(f"<w:pPr {_NS}>{ppr}</w:pPr>"))
    if rpr:
        style.append(parse_xml(f"<w:rPr {_NS}>{rpr}</w:rPr>"))


def _set_fonts(styles: Any) -> None:
    """Arial everywhere: explicit fonts, no theme fonts (absent on plain machines)."""
    for fonts in styles.iter(qn("w:rFonts")):
        for attr in list(fonts.attrib):
            fonts.attrib.pop(attr)
        for attr in ("ascii", "hAnsi", "eastAsia", "cs"):
            fonts.set(qn(f"w:{attr}"), FONT)
    lang = styles.find("w:docDefaults/w:rPrDefault/w:rPr/w:lang", {"w": _W})
    if lang is not None:
        lang.set(qn("w:val"), "fr-FR")
    spacing = styles.find("w:docDefaults/w:pPrDefault/w:pPr/w:spacing", {"w": _W})
    if spacing is not None:
        spacing.set(qn("w:after"), "80")
        spacing.set(qn("w:line"), "264")


def build_default_template() -> Document:
    """The default template: French, Arial, A4, header and footer with page numbers."""
    doc = docx.Document()
    for rel_id, rel in list(doc.part.rels.items()):
        if rel.reltype.endswith("/stylesWithEffects"):  # Word 2010 leftovers, in Calibri
            doc.part.drop_rel(rel_id)
    package_rels = doc.part.package.rels
    for rel_id, rel in list(package_rels.items()):
        if rel.reltype.endswith("/thumbnail"):  # python-docx's preview of a blank page
            package_rels.pop(rel_id)
    styles = doc.styles.element
    for style in styles.findall(qn("w:style")):
        if style.get(qn("w:type")) == "table" and style.get(qn("w:styleId")) not in (
            _KEPT_TABLE_STYLES
        ):
            styles.remove(style)
    table_text = doc.styles.add_style(TABLE_TEXT_STYLE, WD_STYLE_TYPE.PARAGRAPH)
    table_text.base_style, table_text.quick_style = doc.styles["Normal"], True
    _set_fonts(styles)
    for style_id, (ppr, rpr) in _STYLES.items():
        _restyle(styles, style_id, ppr, rpr)

    section = doc.sections[0]
    section.page_width, section.page_height = Cm(21), Cm(29.7)
    section.left_margin = section.right_margin = Cm(2)
    section.top_margin, section.bottom_margin = Cm(2), Cm(1.8)
    section.header_distance = section.footer_distance = Cm(1)
    header = section.header.paragraphs[0]
    header.style = doc.styles["Header"]
    header.add_run("{etablissement}\t{titre}")
    footer = section.footer.paragraphs[0]
    footer.style = doc.styles["Footer"]
    footer.add_run("{classe} — {annee_scolaire}\tPage ")
    footer_p = footer._p
    footer_p.extend(field_runs("PAGE", "1"))
    footer.add_run(" / ")
    footer_p.extend(field_runs("NUMPAGES", "1"))

    settings = doc.settings.element
    for tag, value in (("w:themeFontLang", "fr-FR"), ("w:decimalSymbol", ",")):
        found = settings.find(qn(tag))
        if found is not None:
            found.set(qn("w:val"), value)
    separator = settings.find(qn("w:listSeparator"))
    if separator is not None:
        separator.set(qn("w:val"), ";")

    doc.add_paragraph("Modèle de rapport", style="Title")
    doc.add_paragraph(_NOTE)
    props = doc.core_properties
    props.title, props.author, props.last_modified_by = "Modèle de rapport", "grille", "grille"
    props.comments, props.revision, props.language = "", 1, "fr-FR"
    return doc


@cache
def default_template_bytes() -> bytes:
    """The default template as a .docx file (built once)."""
    buffer = io.BytesIO()
    build_default_template().save(buffer)
    return buffer.getvalue()


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
        return default_template_bytes()
    stat = template.stat()
    return _read_template(str(template.resolve()), stat.st_mtime_ns, stat.st_size)


def new_document(template: Path | None, markers: dict[str, str]) -> Document:
    """A copy of the template: its body emptied, its header and footer markers replaced."""
    doc = docx.Document(io.BytesIO(_template_bytes(template)))
    body = doc.element.body
    for child in list(body):
        if child.tag != qn("w:sectPr"):
            body.remove(child)
    for rel in doc.part.rels.values():
        part = rel.target_part if not rel.is_external else None
        if rel.reltype in (RT.HEADER, RT.FOOTER) and isinstance(part, XmlPart):
            _replace_markers(part.element, markers)
    return doc


def add_header_banner(doc: Document, text: str, color: str) -> None:
    """Put `text` (bold, in `color`) at the top of every header a page can show: each
    section's default header, its first-page one and its even-page one when used."""
    even = doc.settings.odd_and_even_pages_header_footer
    for index, section in enumerate(doc.sections):
        headers = [section.header]
        if section.different_first_page_header_footer:
            headers.append(section.first_page_header)
        if even:
            headers.append(section.even_page_header)
        for header in headers:
            if index and header.is_linked_to_previous:
                continue  # shows the previous section's header, which has it already
            first = header.paragraphs[:1]
            p = first[0].insert_paragraph_before() if first else header.add_paragraph()
            p.alignment = WD_ALIGN_PARAGRAPH.CENTER
            run = p.add_run(clean_text(text))
            run.bold = True
            run.font.color.rgb = RGBColor.from_string(color)


def _replace_markers(root: Any, markers: dict[str, str]) -> None:
    def replace(text: str) -> str:
        for marker, value in markers.items():
            text = text.replace(marker, value)
        return text

    for p in root.iter(qn("w:p")):
        texts = list(p.iter(qn("w:t")))
        if "{" not in "".join(t.text or "" for t in texts):
            continue
        for t in texts:
            t.text = replace(t.text or "")
            t.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")
        joined = "".join(t.text or "" for t in texts)
        if any(marker in joined for marker in markers):  # a marker split across runs
            texts[0].text = replace(joined)
            for t in texts[1:]:
                t.text = ""


def clean_text(text: str) -> str:
    """Text Word can hold: line ends made LF, control chars and lone surrogates removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0b", "\n")
    return _ILLEGAL_XML.sub("", text)


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


class BodyBuilder:
    """Builds body elements for one document, with the template's style ids."""

    def __init__(self, doc: Document) -> None:
        self.blocks: list[Element] = []
        self._part = doc.part
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
        self, text: str = "", style: str | None = TABLE_TEXT_STYLE, *, parent: Element = None,
        bold: bool = False, italic: bool = False, size: int = 0, color: str = "",
        align: str = "", keep_next: bool = False, page_break: bool = False,
        before: int | None = None, indent: int = 0, frame: bool = False,
        rule_above: bool = False,
    ) -> Element:  # fmt: skip
        """A paragraph (in `parent`, or as a new body block) with one run of `text`.

        `frame` draws a border around it and keeps its lines on one page; `rule_above`
        draws a line above it.
        """
        if parent is None:
            p = oxml_parser.makeelement(_tag("p"), nsmap=_NSMAP)
            self.blocks.append(p)
        else:
            p = _sub(parent, "p")
        style_id = self._ids.get(style.lower()) if style else None
        level = style[8:] if style and style.startswith("Heading ") and not style_id else ""
        formatted = keep_next or page_break or align or before is not None or indent or frame
        if style_id or formatted or rule_above:
            ppr = _sub(p, "pPr")
            if style_id:
                _sub(ppr, "pStyle", val=style_id)
            if keep_next or level:
                _sub(ppr, "keepNext")
            if frame:
                _sub(ppr, "keepLines")
            if page_break:
                _sub(ppr, "pageBreakBefore")
            if frame or rule_above:
                borders = _sub(ppr, "pBdr")
                for side in ("top", "left", "bottom", "right") if frame else ("top",):
                    _sub(borders, side, val="single", sz="4", space="4", color=BORDER)
            if before is not None:
                _sub(ppr, "spacing", before=str(before))
            if indent or frame:
                hanging = str(indent) if indent else "0"
                _sub(ppr, "ind", left=str(indent or 100), right="100" if frame else "0",
                     hanging=hanging)  # fmt: skip
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
        if self.blocks and self.blocks[-1].tag == _tag("tbl"):
            self.para("", "Normal")  # else Word and LibreOffice merge the two tables
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

    def box(self, text: str, height: int) -> Element:
        """A framed one-cell table holding `text` (line breaks kept), at least `height` high.

        Its row moves whole to the next page rather than split, unless the text is about a
        page long (more than 35 lines of 95 characters).
        """
        lines = sum(len(line) // 95 + 1 for line in text.split("\n"))
        tr = self.row(self.table([self.width]), height=height, split=lines > 35)
        return self.cell(tr, self.width, text, valign="top", style="Normal", before=60)

    def keep_together(self, start: int) -> None:
        """Move the blocks added since there were `start` of them into the one cell of a
        borderless table row that does not split: Word and LibreOffice keep them on one
        page (keep-with-next is not honoured by LibreOffice for a table)."""
        inner = self.blocks[start:]
        del self.blocks[start:]
        tbl = self.table([self.width], border="")
        margins = tbl.find(_tag("tblPr")).find(_tag("tblCellMar"))
        for side in margins:
            side.set(_tag("w"), "0")
        tc = self.cell(self.row(tbl), self.width, valign="top", style="Normal")
        last = tc[-1]  # the cell's paragraph: a cell ends with one
        for block in inner:
            last.addprevious(block)

    def heading_row(self, tbl: Element, text: str, span: int, fill: str, **run: Any) -> None:
        """A shaded row spanning the whole table (section or sub-heading)."""
        self.cell(self.row(tbl), self.width, text, span=span, fill=fill, keep_next=True, **run)

    def picture(self, png: bytes, width: int, *, align: str = "center") -> Element:
        """A paragraph holding the PNG picture `png`, `width` twips wide (height to scale)."""
        inline = self._part.new_pic_inline(io.BytesIO(png), Twips(width), None)
        p = self.para("", "Normal", align=align, keep_next=False)
        _sub(_sub(p, "r"), "drawing").append(inline)
        return p

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

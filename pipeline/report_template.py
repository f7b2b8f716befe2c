"""The default Word template of the reports (`modele_rapport.docx`), built in code.

It carries what a teacher may restyle in Word: paragraph styles (Normal, Title,
Subtitle, Heading 1-3, TOC Heading, « Texte tableau »), an A4 page with its margins,
the header and the footer. Header and footer text may hold the markers of `MARKERS`,
replaced in every report; a logo added to the header is kept as is.
"""

from __future__ import annotations

from typing import Any

import docx
from docx.document import Document
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml.ns import qn
from docx.oxml.parser import parse_xml
from docx.shared import Cm
from lxml import etree

FONT = "Arial"
TABLE_TEXT_STYLE = "Texte tableau"
MARKERS = ("{etablissement}", "{classe}", "{annee_scolaire}", "{titre}")

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_NS = f'xmlns:w="{_W}"'
_KEPT_TABLE_STYLES = {"TableNormal", "TableGrid"}

# style id → (paragraph properties, run properties), as WordprocessingML fragments.
_STYLES = {
    "Normal": ('<w:spacing w:after="80" w:line="264" w:lineRule="auto"/>', '<w:sz w:val="20"/>'),
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
    styles = doc.styles.element
    for style in styles.findall(qn("w:style")):
        if style.get(qn("w:type")) == "table" and style.get(qn("w:styleId")) not in (
            _KEPT_TABLE_STYLES
        ):
            styles.remove(style)
    doc.styles.add_style(TABLE_TEXT_STYLE, WD_STYLE_TYPE.PARAGRAPH).base_style = doc.styles[
        "Normal"
    ]
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

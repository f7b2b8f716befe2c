"""Returned workbooks as each client saves them.

A workbook is made by grille's own generate step and filled by openpyxl
(`tests.tutors.fill`); the functions here then reshape its XML the way a given client
writes the same workbook. Each one says what the client does and how we know it: a
measurement in ../shared/FIELD-NOTES.md, the standard (ECMA-376 / ISO/IEC 29500), or a
public report with the client's own file.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import openpyxl

from pipeline.workbook import CellRef

EditPart = Callable[[str, bytes], bytes | None]
SML = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
X14_VALIDATIONS = "{CCE6A557-97BC-4B89-ADB6-D9C93CAAB3DF}"
EPOCH_1900 = date(1899, 12, 30)
DAYS_1900_TO_1904 = 1462


def edit_package(
    data: bytes,
    edit: EditPart | None = None,
    *,
    rename: dict[str, str] | None = None,
    add: dict[str, bytes] | None = None,
) -> bytes:
    """`data` with each member passed through `edit(name, content)` (None drops it),
    renamed by `rename`, and the members of `add` appended."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content: bytes | None = source.read(info)
            if edit is not None:
                content = edit(info.filename, content)
            if content is not None:
                target.writestr((rename or {}).get(info.filename, info.filename), content)
        for name, content in (add or {}).items():
            target.writestr(name, content)
    return out.getvalue()


def read_member(data: bytes, name: str) -> bytes:
    return zipfile.ZipFile(io.BytesIO(data)).read(name)


def sheet_parts(data: bytes) -> dict[str, str]:
    """Sheet name → member name, read from workbook.xml and its relationships."""
    workbook = read_member(data, "xl/workbook.xml").decode()
    rels = read_member(data, "xl/_rels/workbook.xml.rels").decode()
    targets = dict(
        (rel_id, target) for target, rel_id in re.findall(r'Target="([^"]+)" Id="([^"]+)"', rels)
    )
    found = {}
    for name, rel_id in re.findall(r'<sheet [^>]*name="([^"]+)"[^>]*r:id="([^"]+)"', workbook):
        target = targets[rel_id]
        found[unescape(name)] = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    return found


def unescape(text: str) -> str:
    return re.sub(r"&#(\d+);", lambda m: chr(int(m.group(1))), text).replace("&amp;", "&")


def _cell_pattern(cell: str) -> re.Pattern[bytes]:
    return re.compile(rf'<c r="{cell}"(?P<attrs>[^>]*?)(?:/>|>(?P<body>.*?)</c>)'.encode(), re.S)


def set_cell_xml(data: bytes, ref: CellRef, xml: Callable[[str, str], str]) -> bytes:
    """Replace cell `ref` by `xml(style_attribute, old_body)`."""
    part = sheet_parts(data)[ref.sheet]

    def edit(name: str, content: bytes) -> bytes:
        if name != part:
            return content

        def replace(match: re.Match[bytes]) -> bytes:
            style = re.search(rb' s="\d+"', match.group("attrs"))
            body = (match.group("body") or b"").decode()
            return xml(style.group(0).decode() if style else "", body).encode()

        new, count = _cell_pattern(ref.cell).subn(replace, content, count=1)
        assert count == 1, f"{ref} not found in {part}"
        return new

    return edit_package(data, edit)


def cell_value(data: bytes, ref: CellRef) -> str:
    """The text inside the `<v>` or `<t>` of cell `ref` (as openpyxl wrote it)."""
    content = read_member(data, sheet_parts(data)[ref.sheet])
    match = _cell_pattern(ref.cell).search(content)
    assert match is not None, ref
    inner = re.search(rb"<(?:v|t)[^>]*>(.*?)</(?:v|t)>", match.group("body") or b"", re.S)
    assert inner is not None, f"{ref} is empty"
    return unescape(inner.group(1).decode())


# ------------------------------------------------------------------ the clients


def excel_shared_strings(data: bytes, rich: dict[CellRef, list[tuple[str, bool]]]) -> bytes:
    """Excel: every text cell is an index into xl/sharedStrings.xml (`t="s"`), never an
    inline string (openpyxl and grille write inline ones); a text formatted in part is a
    list of runs `<si><r><rPr><b/></rPr><t>…</t></r><r><t xml:space="preserve">…</t></r>
    </si>`, and Japanese Excel adds phonetic runs `<rPh>` that are not part of the text
    (ECMA-376 Part 1 §18.4.4, §18.4.6). `rich` gives the runs (text, bold) of some cells."""
    strings: list[str] = []
    parts = sheet_parts(data)
    rich_by_part = {(parts[ref.sheet], ref.cell): runs for ref, runs in rich.items()}

    def index_of(xml: str) -> int:
        strings.append(xml)
        return len(strings) - 1

    def edit(name: str, content: bytes) -> bytes:
        if not name.startswith("xl/worksheets/"):
            return content

        def shared(match: re.Match[bytes]) -> bytes:
            cell, attrs, text = (g.decode() for g in match.groups())
            attrs = attrs.replace(' t="inlineStr"', "")
            runs = rich_by_part.get((name, cell))
            if runs is None:
                si = f'<si><t xml:space="preserve">{text}</t></si>'
            else:
                si = (
                    "<si>"
                    + "".join(
                        f"<r>{'<rPr><b/></rPr>' if bold else ''}"
                        f'<t xml:space="preserve">{escape(run)}</t></r>'
                        for run, bold in runs
                    )
                    + '<rPh sb="0" eb="1"><t>テスト</t></rPh></si>'
                )
            return f'<c r="{cell}"{attrs} t="s"><v>{index_of(si)}</v></c>'.encode()

        return re.sub(
            rb'<c r="([A-Z]+[0-9]+)"([^>]*?) t="inlineStr"[^>]*><is><t[^>]*>(.*?)</t></is></c>',
            shared,
            content,
            flags=re.S,
        )

    shaped = edit_package(data, edit)
    table = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="{SML}" '
        f'count="{len(strings)}" uniqueCount="{len(strings)}">{"".join(strings)}</sst>'
    ).encode()

    def register(name: str, content: bytes) -> bytes:
        if name == "[Content_Types].xml":
            return content.replace(
                b"</Types>",
                b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
            )
        if name == "xl/_rels/workbook.xml.rels":
            return content.replace(
                b"</Relationships>",
                b'<Relationship Id="rIdSST" Type="http://schemas.openxmlformats.org/'
                b'officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
                b"</Relationships>",
            )
        return content

    return edit_package(shaped, register, add={"xl/sharedStrings.xml": table})


def excel_x14_list_validations(data: bytes) -> bytes:
    """Excel 2010 and later: a list validation whose source is a range on another sheet
    is not written in `<dataValidations>` but in the worksheet's extension list,
    `<extLst><ext uri="{CCE6A557-…}"><x14:dataValidations>` with `<xm:f>` and `<xm:sqref>`
    (FIELD-NOTES: the x14 URI; openpyxl drops them with the warning "Data Validation
    extension is not supported"). Here every list of grille's scale and levels is made
    to point at a hidden sheet « Listes », as a teacher who reworked the workbook in
    Excel would have it, and the worksheets get Excel's `mc:Ignorable` declarations."""
    lists: dict[str, int] = {}

    def edit(name: str, content: bytes) -> bytes:
        if not name.startswith("xl/worksheets/"):
            return content
        text = content.decode()
        moved = []
        for validation in re.findall(r"<dataValidation .*?</dataValidation>", text, re.S):
            values = re.search(r'<formula1>"([^"]*)"</formula1>', validation)
            if 'type="list"' not in validation or values is None:
                continue
            column = lists.setdefault(values.group(1), len(lists))
            count = len(values.group(1).split(","))
            letter = "ABCDEFGHIJ"[column]
            sqref = re.search(r'sqref="([^"]+)"', validation)
            assert sqref is not None
            moved.append(
                '<x14:dataValidation type="list" allowBlank="1" showInputMessage="1" '
                f'showErrorMessage="1"><x14:formula1><xm:f>Listes!${letter}$1:${letter}${count}'
                f"</xm:f></x14:formula1><xm:sqref>{sqref.group(1)}</xm:sqref>"
                "</x14:dataValidation>"
            )
            text = text.replace(validation, "")
        if not moved:
            return content
        text = re.sub(r'<dataValidations count="\d+">\s*</dataValidations>', "", text)
        extension = (
            f'<extLst><ext uri="{X14_VALIDATIONS}" xmlns:x14="http://schemas.microsoft.com/'
            'office/spreadsheetml/2009/9/main"><x14:dataValidations count="'
            f'{len(moved)}" xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main">'
            f"{''.join(moved)}</x14:dataValidations></ext></extLst>"
        )
        text = text.replace("</worksheet>", f"{extension}</worksheet>")
        text = text.replace(
            f'<worksheet xmlns="{SML}">',
            f'<worksheet xmlns="{SML}" xmlns:r="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships" xmlns:mc="http://schemas.openxmlformats.org/'
            'markup-compatibility/2006" mc:Ignorable="x14ac" xmlns:x14ac="http://schemas.'
            'microsoft.com/office/spreadsheetml/2009/9/ac">',
        )
        return text.encode()

    shaped = edit_package(data, edit)
    assert lists, "no list validation found"
    rows: dict[int, list[str]] = {}
    for values, column in lists.items():
        for row, value in enumerate(values.split(","), start=1):
            rows.setdefault(row, []).append(
                f'<c r="{"ABCDEFGHIJ"[column]}{row}" t="inlineStr"><is><t>{value}</t></is></c>'
            )
    sheet = (
        f'<worksheet xmlns="{SML}"><sheetData>'
        + "".join(f'<row r="{r}">{"".join(cells)}</row>' for r, cells in sorted(rows.items()))
        + "</sheetData></worksheet>"
    ).encode()
    return add_sheet(shaped, "Listes", "xl/worksheets/listes.xml", sheet, state="hidden")


def add_sheet(data: bytes, name: str, part: str, xml: bytes, *, state: str) -> bytes:
    """`data` with one more sheet: in workbook.xml, its relationships, content types."""

    def register(member: str, content: bytes) -> bytes:
        if member == "xl/workbook.xml":
            return content.replace(
                b"</sheets>",
                f'<sheet xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
                f'relationships" name="{name}" sheetId="99" state="{state}" r:id="rIdAdded"/>'
                "</sheets>".encode(),
            )
        if member == "xl/_rels/workbook.xml.rels":
            return content.replace(
                b"</Relationships>",
                b'<Relationship Id="rIdAdded" Type="http://schemas.openxmlformats.org/'
                b'officeDocument/2006/relationships/worksheet" Target="/'
                + part.encode()
                + b'"/></Relationships>',
            )
        if member == "[Content_Types].xml":
            return content.replace(
                b"</Types>",
                f'<Override PartName="/{part}" ContentType="application/vnd.openxmlformats-'
                'officedocument.spreadsheetml.worksheet+xml"/></Types>'.encode(),
            )
        return content

    return edit_package(data, register, add={part: xml})


def mac_excel_1904(data: bytes, dates: list[CellRef]) -> bytes:
    """Mac Excel (2008, 2011, and later on a workbook that had it) may save with the 1904
    date system, `<workbookPr date1904="1"/>`: every date serial counts from 1904-01-01,
    so the same day is 1,462 less (FIELD-NOTES). `dates` are the date cells to shift."""
    for ref in dates:
        serial = int(float(cell_value(data, ref)))
        data = set_cell_xml(
            data,
            ref,
            lambda style, body, s=serial, c=ref.cell: (
                f'<c r="{c}"{style}><v>{s - DAYS_1900_TO_1904}</v></c>'
            ),
        )
    return edit_package(
        data,
        lambda name, content: (
            content.replace(b"<workbookPr/>", b'<workbookPr date1904="1"/>')
            if name == "xl/workbook.xml"
            else content
        ),
    )


def google_sheets_export(data: bytes) -> bytes:
    """Google Sheets' « Télécharger › Microsoft Excel (.xlsx) » writes no custom document
    properties: docProps/custom.xml, its relationship and its content type are gone
    (FIELD-NOTES: « no custom properties »). The hidden metadata sheet stays."""

    def edit(name: str, content: bytes) -> bytes | None:
        if name == "docProps/custom.xml":
            return None
        if name in ("_rels/.rels", "[Content_Types].xml"):
            content = re.sub(rb"<(?:Relationship|Override)[^>]*custom[^>]*/>", b"", content)
        return content

    return edit_package(data, edit)


def libreoffice_hidden_metadata(data: bytes) -> bytes:
    """LibreOffice Calc saves a `veryHidden` sheet as `hidden` (FIELD-NOTES, measured:
    a tutor can then unhide it)."""
    return edit_package(
        data,
        lambda name, content: (
            content.replace(b'state="veryHidden"', b'state="hidden"')
            if name == "xl/workbook.xml"
            else content
        ),
    )


def excel_formulas(data: bytes, cells: dict[CellRef, tuple[str, str, str]]) -> bytes:
    """A tutor who types formulas (=DATE(2026;2;20), ="TS", =2+1): Excel keeps the formula
    and its last result, `<c t="str"><f>…</f><v>TS</v></c>` for a text and
    `<c><f>…</f><v>46073</v></c>` for a number (ECMA-376 Part 1 §18.3.1.4, §18.3.1.40);
    openpyxl writes formulas without results. `cells`: ref → (formula, result, type)."""
    for ref, (formula, result, kind) in cells.items():
        type_attribute = f' t="{kind}"' if kind != "n" else ""
        data = set_cell_xml(
            data,
            ref,
            lambda style, body, r=ref, t=type_attribute, f=formula, v=result: (
                f'<c r="{r.cell}"{style}{t}><f>{escape(f)}</f><v>{escape(v)}</v></c>'
            ),
        )
    return data


# Strict namespaces as ISO/IEC 29500-1 Strict names them (the same table as Microsoft's
# Open XML SDK, OpenXmlNamespaceResolver); written out here independently of grille's.
STRICT = {
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main": "http://purl.oclc.org/ooxml/spreadsheetml/main",
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships": "http://purl.oclc.org/ooxml/officeDocument/relationships",
    "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties": "http://purl.oclc.org/ooxml/officeDocument/customProperties",
    "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties": "http://purl.oclc.org/ooxml/officeDocument/extendedProperties",
    "http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes": "http://purl.oclc.org/ooxml/officeDocument/docPropsVTypes",
    "http://schemas.openxmlformats.org/drawingml/2006/main": "http://purl.oclc.org/ooxml/drawingml/main",
}
STRICT_RELATIONSHIP_TYPES = {
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/custom-properties": "http://purl.oclc.org/ooxml/officeDocument/relationships/customProperties",
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/extended-properties": "http://purl.oclc.org/ooxml/officeDocument/relationships/extendedProperties",
}


def excel_strict(data: bytes, dates: list[CellRef]) -> bytes:
    """Excel's other « Classeur » save type, « Feuille de calcul Open XML Strict » (ISO/IEC
    29500 Strict): the same parts, every namespace under http://purl.oclc.org/ooxml/
    (FIELD-NOTES), relationship types too (…/relationships/officeDocument,
    …/customProperties), `conformance="strict"` on the workbook, and dates written as
    ISO 8601 text `<c t="d"><v>2026-02-20T00:00:00</v></c>` rather than serials
    (ECMA-376 Part 1 §18.17.4; exceljs issue #2695 shows Excel's own Strict file doing
    it). Package-level namespaces (content types, package relationships, core
    properties) are the same in both."""
    for ref in dates:
        day = EPOCH_1900.toordinal() + int(float(cell_value(data, ref)))
        iso = date.fromordinal(day).isoformat()
        data = set_cell_xml(
            data,
            ref,
            lambda style, body, i=iso, c=ref.cell: (
                f'<c r="{c}"{style} t="d"><v>{i}T00:00:00</v></c>'
            ),
        )

    def edit(name: str, content: bytes) -> bytes:
        if not name.endswith((".xml", ".rels")):
            return content
        text = content.decode()
        for usual, strict in STRICT_RELATIONSHIP_TYPES.items():
            text = text.replace(f'"{usual}"', f'"{strict}"')
        text = re.sub(
            r'Type="http://schemas\.openxmlformats\.org/officeDocument/2006/relationships/',
            'Type="http://purl.oclc.org/ooxml/officeDocument/relationships/',
            text,
        )
        for usual, strict in STRICT.items():
            text = text.replace(f'="{usual}"', f'="{strict}"')
        if name == "xl/workbook.xml":
            text = text.replace("<workbook ", '<workbook conformance="strict" ', 1)
        return text.encode()

    return edit_package(data, edit)


def renamed_parts(data: bytes) -> bytes:
    """Part names are the producer's choice: Excel and every reader find the workbook
    through `_rels/.rels` and `[Content_Types].xml`, and sheets through the workbook's
    relationships (ECMA-376 Part 2, §9.1 and §10.1.2), so `/xl/workbook2.xml` and
    `xl/worksheets/Sheet_A.xml` are valid names. This renames every part so."""
    parts = sheet_parts(data)
    letters = "ABCDEFGHIJKLMNOP"
    renames = {
        "xl/workbook.xml": "xl/workbook2.xml",
        "xl/_rels/workbook.xml.rels": "xl/_rels/workbook2.xml.rels",
    }
    for index, part in enumerate(parts.values()):
        renames[part] = f"xl/worksheets/Sheet_{letters[index]}.xml"

    def edit(name: str, content: bytes) -> bytes:
        if name in ("_rels/.rels", "[Content_Types].xml", "xl/_rels/workbook.xml.rels"):
            text = content.decode()
            for old, new in renames.items():
                if name == "xl/_rels/workbook.xml.rels":
                    text = text.replace(f'"/{old}"', f'"{posixpath.relpath(new, "xl")}"')
                text = text.replace(f'"/{old}"', f'"/{new}"').replace(f'"{old}"', f'"{new}"')
            return text.encode()
        return content

    return edit_package(data, edit, rename=renames)


# ------------------------------------------------------------------ versions and copies


def saved_at(data: bytes, when: datetime | None) -> bytes:
    """Every client that saves a workbook writes the time of the save in the core
    properties, `docProps/core.xml` `<dcterms:modified xsi:type="dcterms:W3CDTF">`, in UTC
    (ECMA-376 Part 2 §11, openpyxl's writer, Excel and LibreOffice alike): this sets it to
    `when`, or removes the core properties part and its relationship when None (a client
    that writes none; the standard makes the part optional)."""
    if when is None:

        def drop(name: str, content: bytes) -> bytes | None:
            if name == "docProps/core.xml":
                return None
            if name in ("_rels/.rels", "[Content_Types].xml"):
                content = re.sub(rb"<(?:Relationship|Override)[^>]*core[^>]*/>", b"", content)
            return content

        return edit_package(data, drop)
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()

    def edit(name: str, content: bytes) -> bytes:
        if name != "docProps/core.xml":
            return content
        new, count = re.subn(
            rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
            rb"\g<1>" + stamp + rb"\2",
            content,
        )
        assert count == 1, content
        return new

    return edit_package(data, edit)


def _unmerged(ws: Any) -> list[tuple[int, int, int, int]]:
    ranges = [(r.min_col, r.min_row, r.max_col, r.max_row) for r in ws.merged_cells.ranges]
    for merged in list(ws.merged_cells.ranges):
        ws.unmerge_cells(str(merged))
    return ranges


def _merge(ws: Any, ranges: list[tuple[int, int, int, int]]) -> None:
    for min_col, min_row, max_col, max_row in ranges:
        if max_row >= min_row and (min_col, min_row) != (max_col, max_row):
            ws.merge_cells(
                start_row=min_row, start_column=min_col, end_row=max_row, end_column=max_col
            )


def excel_insert_row(path: Path, sheet: str, at: int, values: dict[str, Any]) -> Path:
    """Excel's « Insérer › Ligne » on an unprotected copy: row `at` and every row below move
    down one, merged areas with them (openpyxl's `insert_rows` moves the cells only, so the
    merged areas are moved here as Excel does); the tutor then types `values` (column →
    value) in the new row. The file is saved in place."""
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet]
    ranges = _unmerged(ws)
    ws.insert_rows(at)
    moved = [(c1, r1 + (r1 >= at), c2, r2 + (r2 >= at)) for c1, r1, c2, r2 in ranges]
    _merge(ws, moved)
    for column, value in values.items():
        ws[f"{column}{at}"] = value
    wb.save(path)
    return path


def excel_insert_column(path: Path, sheet: str, at: str, values: dict[str, Any]) -> Path:
    """Excel's « Insérer › Colonne » on an unprotected copy: column `at` and every column
    right of it move right one, merged areas with them (openpyxl's `insert_cols` moves the
    cells only; a merged area that spans `at` grows by one, as in Excel); the tutor then
    types `values` (cell → value) in the sheet. The file is saved in place."""
    from openpyxl.utils import column_index_from_string

    index = column_index_from_string(at)
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet]
    ranges = _unmerged(ws)
    ws.insert_cols(index)
    moved = [(c1 + (c1 >= index), r1, c2 + (c2 >= index), r2) for c1, r1, c2, r2 in ranges]
    _merge(ws, moved)
    for ref, value in values.items():
        ws[ref] = value
    wb.save(path)
    return path


def excel_delete_row(path: Path, sheet: str, at: int) -> Path:
    """Excel's « Supprimer › Ligne »: row `at` goes, the rows below move up one (merged
    areas with them). Saved in place."""
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet]
    ranges = [r for r in _unmerged(ws) if not r[1] <= at <= r[3]]
    ws.delete_rows(at)
    _merge(ws, [(c1, r1 - (r1 > at), c2, r2 - (r2 > at)) for c1, r1, c2, r2 in ranges])
    wb.save(path)
    return path


def copied_into_new_workbook(
    path: Path,
    target: Path,
    *,
    prefix: str = "",
    suffix: str = "",
    leave_out: tuple[str, ...] = ("Instructions",),
    reverse: bool = False,
    identity_line: str | None = None,
) -> Path:
    """The grid's sheets copied into a new workbook, as a tutor does to escape the
    protection or to keep a copy:
    - Google Sheets, « Copier vers › Nouvelle feuille de calcul », names each copy
      « Copie de <nom> » (prefix); Excel's « Déplacer ou copier › (nouveau classeur) »
      keeps the names, LibreOffice's « Feuille › Copier » into a new document too, or
      adds « _2 » (suffix);
    - the new workbook has only the sheets chosen: never the hidden `_grille` (a
      veryHidden sheet cannot be selected) nor its custom document properties, and
      often not the Instructions sheet (`leave_out`);
    - a formula pointing at a sheet left behind becomes an external reference whose
      last value is kept (Excel writes `[1]Instructions!B5` and keeps `<v>`): the line
      « Stagiaire : NOM Prénom — classe — entreprise » of each sheet keeps its text when
      `identity_line` gives it, and is « #REF! » (Google Sheets) when it is None.
    Cell values are copied as they are; tabs come in the reverse order with `reverse`.
    """
    source = openpyxl.load_workbook(path)
    new = openpyxl.Workbook()
    assert new.active is not None
    new.remove(new.active)
    names = [n for n in source.sheetnames if n not in ("_grille", "Listes", *leave_out)]
    for name in reversed(names) if reverse else names:
        old = source[name]
        ws = new.create_sheet(f"{prefix}{name}{suffix}")
        for row in old.iter_rows():
            for cell in row:
                if cell.value is not None and type(cell).__name__ != "MergedCell":
                    ws[cell.coordinate] = cell.value
        for merged in old.merged_cells.ranges:
            ws.merge_cells(str(merged))
        if isinstance(old["A2"].value, str) and old["A2"].value.startswith('="Stagiaire'):
            ws["A2"] = "@@IDENTITY_LINE@@"
    target.parent.mkdir(parents=True, exist_ok=True)
    new.save(target)
    data = target.read_bytes()
    if identity_line is None:
        cell = '<c r="A2" t="e"><f>"Stagiaire : "&amp;#REF!B5</f><v>#REF!</v></c>'
    else:
        cell = (
            '<c r="A2" t="str"><f>"Stagiaire : "&amp;[1]Instructions!B5&amp;" — "&amp;'
            f'[1]Instructions!B6&amp;" — "&amp;[1]Instructions!B7</f><v>{escape(identity_line)}'
            "</v></c>"
        )
    data = edit_package(
        data,
        lambda name, content: (
            re.sub(rb'<c r="A2"[^>]*><is><t>@@IDENTITY_LINE@@</t></is></c>', cell.encode(), content)
            if name.startswith("xl/worksheets/")
            else content
        ),
    )
    target.write_bytes(data)
    return target

"""Bounded, read-only access to the cells of an untrusted .xlsx package.

Reads only what is asked: the sheet list, the custom document properties and given
cells, straight from the zip parts (no openpyxl: it would load everything, and it
must never re-save a returned file). Every part goes through `SafeZip` (size limits)
and `check_xml` (no DTD, so no entity expansion); parsing stops after the last row
asked for, so a sheet that claims a million rows costs nothing more.

Parts are found the way Excel finds them, through the package relationships
(`_rels/.rels`, then the workbook's), not by their usual names; a workbook saved as
« Strict Open XML » (namespaces under `http://purl.oclc.org/ooxml/`) is read through
`to_transitional`, which rewrites those namespaces to the usual ones.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from lxml import etree

from pipeline.safe_zip import SafeZip, UnsafeFile, check_xml

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_CONTENT_TYPES = "http://schemas.openxmlformats.org/package/2006/content-types"
_CUSTOM = "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"
_DCTERMS = "http://purl.org/dc/terms/"
_W3CDTF = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?$"
)
_M = f"{{{_MAIN}}}"
_CELL_REF = re.compile(r"^([A-Z]{1,3})([0-9]{1,7})$")
MAX_SHARED_STRINGS = 200_000
SMALL_SHEET = 512 * 1024  # bytes of XML parsed at once; larger sheets are streamed

# Strict Open XML (ISO/IEC 29500 Strict, Excel's « Feuille de calcul Open XML Strict »)
# names the same vocabularies under purl.oclc.org; package-level namespaces (content
# types, relationships, core properties) are the same in both.
_STRICT = "http://purl.oclc.org/ooxml/"
_OPENXML = "http://schemas.openxmlformats.org/"
_STRICT_NAMESPACES = {
    "spreadsheetml/main": "spreadsheetml/2006/main",
    "officeDocument/relationships": "officeDocument/2006/relationships",
    "officeDocument/customProperties": "officeDocument/2006/custom-properties",
    "officeDocument/extendedProperties": "officeDocument/2006/extended-properties",
    "officeDocument/docPropsVTypes": "officeDocument/2006/docPropsVTypes",
    "officeDocument/sharedTypes": "officeDocument/2006/sharedTypes",
    "officeDocument/math": "officeDocument/2006/math",
    "officeDocument/bibliography": "officeDocument/2006/bibliography",
    "officeDocument/customXml": "officeDocument/2006/customXml",
    "officeDocument/customXmlDataProps": "officeDocument/2006/customXmlDataProps",
    "drawingml/main": "drawingml/2006/main",
    "drawingml/chart": "drawingml/2006/chart",
    "drawingml/chartDrawing": "drawingml/2006/chartDrawing",
    "drawingml/diagram": "drawingml/2006/diagram",
    "drawingml/picture": "drawingml/2006/picture",
    "drawingml/spreadsheetDrawing": "drawingml/2006/spreadsheetDrawing",
    "drawingml/wordprocessingDrawing": "drawingml/2006/wordprocessingDrawing",
    "drawingml/lockedCanvas": "drawingml/2006/lockedCanvas",
    "drawingml/compatibility": "drawingml/2006/compatibility",
    "wordprocessingml/main": "wordprocessingml/2006/main",
    "presentationml/main": "presentationml/2006/main",
    "schemaLibrary/main": "schemaLibrary/2006/main",
}
_STRICT_RELATIONSHIP_TYPES = {
    "customProperties": "custom-properties",
    "extendedProperties": "extended-properties",
}
_STRICT_URI = re.compile(
    rb"""(\s(?:xmlns(?::[\w.-]+)?|Type)\s*=\s*)(["'])http://purl\.oclc\.org/ooxml/([^"'<>]*)\2"""
)
_STRICT_CONFORMANCE = re.compile(rb"""(\sconformance\s*=\s*)(["'])strict\2""")
_RELATIONSHIPS_PREFIX = "officeDocument/relationships/"


def _transitional_uri(path: str) -> str | None:
    """The usual URI for the Strict one `http://purl.oclc.org/ooxml/<path>`, if known."""
    if path in _STRICT_NAMESPACES:
        return _OPENXML + _STRICT_NAMESPACES[path]
    if path.startswith(_RELATIONSHIPS_PREFIX):  # a relationship type
        kind = path.removeprefix(_RELATIONSHIPS_PREFIX)
        if kind == "metadata/thumbnail":
            return f"{_PKG_REL}/metadata/thumbnail"
        return f"{_REL}/{_STRICT_RELATIONSHIP_TYPES.get(kind, kind)}"
    return None


def _rewrite_uri(match: re.Match[bytes]) -> bytes:
    uri = _transitional_uri(match.group(3).decode("ascii", "replace"))
    if uri is None:
        return match.group(0)
    return match.group(1) + match.group(2) + uri.encode() + match.group(2)


def to_transitional(part: bytes) -> bytes:
    """An XML part with its Strict Open XML namespaces and relationship types (in
    `xmlns` and `Type` attributes only, never in text) rewritten to the usual ones."""
    if _STRICT.encode() not in part:
        return part
    part = _STRICT_URI.sub(_rewrite_uri, part)
    return _STRICT_CONFORMANCE.sub(rb"\1\2transitional\2", part)


def transitional_package(data: bytes, name: str) -> bytes:
    """A Strict Open XML workbook rewritten as a usual one (for openpyxl, which reads
    only the usual namespaces), every part read through `SafeZip`; `data` unchanged when
    nothing is Strict."""
    archive = SafeZip(data, name)
    parts = [(member, archive.read(member)) for member in archive.names()]
    if not any(_STRICT.encode() in content for member, content in parts):
        return data
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for member, content in parts:
            if member.lower().endswith((".xml", ".rels")):
                check_xml(content, name, member)
                content = to_transitional(content)
            target.writestr(member, content)
    return buffer.getvalue()


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _folded_names(archive: SafeZip) -> dict[str, str]:
    """Member names by lower case: part names are case-insensitive (ECMA-376 Part 2)."""
    return {member.lower(): member for member in archive.names()}


def _read_xml(archive: SafeZip, member: str, name: str) -> Any:
    data = archive.read(member)
    check_xml(data, name, member)
    try:
        return etree.fromstring(to_transitional(data), _parser())
    except etree.XMLSyntaxError as exc:
        raise UnsafeFile(
            name, f"partie « {member} » illisible (XML endommagé : {exc.msg}).", damaged=True
        ) from exc


def _resolve(source: str, target: str) -> str:
    """The part a relationship of part `source` ("" for the package) points at."""
    target = unquote(target.split("#", 1)[0])
    if target.startswith("/"):
        return posixpath.normpath(target).lstrip("/")
    folder = posixpath.dirname(source)
    return posixpath.normpath(posixpath.join(folder, target)).lstrip("/")


def relationships(archive: SafeZip, source: str, name: str = "") -> list[tuple[str, str, str]]:
    """(id, type, target part) of each internal relationship of part `source` ("" for
    the package itself), in document order; none when its .rels part is absent."""
    folder, base = posixpath.split(source)
    rels = posixpath.join(folder, "_rels", f"{base}.rels")
    member = _folded_names(archive).get(rels.lower())
    if member is None:
        return []
    found = []
    for rel in _read_xml(archive, member, name).iter(f"{{{_PKG_REL}}}Relationship"):
        target = rel.get("Target", "")
        if target and rel.get("TargetMode", "Internal") != "External":
            found.append((rel.get("Id", ""), rel.get("Type", ""), _resolve(source, target)))
    return found


def main_part(archive: SafeZip, name: str = "") -> tuple[str, str] | None:
    """(member name, content type) of a package's main part (an .xlsx's workbook), found
    as Excel finds it: the officeDocument relationship of `_rels/.rels`, its content type
    from `[Content_Types].xml`. None when the package names no main part it holds."""
    names = _folded_names(archive)
    path = next(
        (
            target
            for _, kind, target in relationships(archive, "", name)
            if kind.endswith("/officeDocument")
        ),
        "xl/workbook.xml",
    )
    member = names.get(path.lower())
    if member is None:
        return None
    content_type = ""
    types = names.get("[content_types].xml")
    if types is not None:
        root = _read_xml(archive, types, name)
        defaults: dict[str, str] = {}
        for element in root:
            tag, part = element.tag, element.get("PartName", "")
            if tag == f"{{{_CONTENT_TYPES}}}Override" and part.lstrip("/").lower() == path.lower():
                content_type = element.get("ContentType", "")
                break
            if tag == f"{{{_CONTENT_TYPES}}}Default":
                defaults[element.get("Extension", "").lower()] = element.get("ContentType", "")
        else:
            content_type = defaults.get(posixpath.splitext(path)[1].lstrip(".").lower(), "")
    return member, content_type


@dataclass(frozen=True)
class Sheet:
    """A worksheet of the package: name, part path and visibility."""

    name: str
    path: str
    state: str  # "visible", "hidden" or "veryHidden"


@dataclass(frozen=True)
class RawCell:
    """A cell as stored: its type attribute (s, str, n, b, d, e, inlineStr) and value."""

    kind: str
    value: str
    has_formula: bool = False


def parse_w3cdtf(text: str) -> datetime | None:
    """A W3CDTF date (`2026-11-12T13:05:00Z`, as core properties hold them) in UTC, or
    None when it is not one. A time without a zone is taken as UTC (ECMA-376 Part 2 says
    UTC; Excel and LibreOffice write the `Z`)."""
    match = _W3CDTF.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g or 0) for g in match.groups()[:6])
    zone = match.group(7) or "Z"
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return moment


def split_ref(ref: str) -> tuple[str, int]:
    match = _CELL_REF.match(ref)
    if not match:
        raise ValueError(ref)
    return match.group(1), int(match.group(2))


class XlsxPackage:
    """One returned workbook, opened for bounded reading."""

    def __init__(self, data: bytes, name: str) -> None:
        self.name = name
        self.zip = SafeZip(data, name)
        self._shared: list[str] | None = None
        self.sheets = self._read_sheets()

    def _xml(self, part: str) -> Any:
        return _read_xml(self.zip, part, self.name)

    def _read_sheets(self) -> dict[str, Sheet]:
        main = main_part(self.zip, self.name)
        if main is None:
            raise UnsafeFile(self.name, "ce n'est pas un classeur Excel (aucun classeur dedans).")
        self.workbook_part = main[0]
        names = _folded_names(self.zip)
        workbook = self._xml(self.workbook_part)
        targets: dict[str, str] = {}
        self._shared_part = "xl/sharedStrings.xml" if self.zip.has("xl/sharedStrings.xml") else ""
        for rel_id, kind, target in relationships(self.zip, self.workbook_part, self.name):
            member = names.get(target.lower(), "")
            targets[rel_id] = member
            if kind.endswith("/sharedStrings") and member:
                self._shared_part = member
        self._custom_part = next(
            (
                names.get(target.lower(), "")
                for _, kind, target in relationships(self.zip, "", self.name)
                if kind.endswith("/custom-properties")
            ),
            "docProps/custom.xml" if self.zip.has("docProps/custom.xml") else "",
        )
        properties = workbook.find(f"{_M}workbookPr")
        self.date1904 = properties is not None and properties.get("date1904", "0") in ("1", "true")
        sheets: dict[str, Sheet] = {}
        for element in workbook.iter(f"{_M}sheet"):
            name = element.get("name", "")
            path = targets.get(element.get(f"{{{_REL}}}id", ""), "")
            if name and path:
                sheets[name] = Sheet(name, path, element.get("state", "visible"))
        return sheets

    def sheet(self, name: str) -> Sheet | None:
        """The sheet called `name`, ignoring case if need be."""
        if name in self.sheets:
            return self.sheets[name]
        folded = name.casefold()
        for sheet_name, sheet in self.sheets.items():
            if sheet_name.casefold() == folded:
                return sheet
        return None

    def saved_at(self) -> datetime | None:
        """When the workbook was last saved, by its own core properties (`dcterms:modified`,
        in UTC), or None when it has none or an unreadable one."""
        names = _folded_names(self.zip)
        part = next(
            (
                names.get(target.lower(), "")
                for _, kind, target in relationships(self.zip, "", self.name)
                if kind.endswith("/core-properties")
            ),
            names.get("docprops/core.xml", ""),
        )
        if not part:
            return None
        element = self._xml(part).find(f"{{{_DCTERMS}}}modified")
        return None if element is None else parse_w3cdtf(element.text or "")

    def custom_properties(self) -> dict[str, str]:
        """Custom document properties as strings, whatever type a client gave them."""
        if not self._custom_part:
            return {}
        result = {}
        for prop in self._xml(self._custom_part).iter(f"{{{_CUSTOM}}}property"):
            name = prop.get("name")
            if name and len(prop):
                value = "".join(prop[0].itertext()).strip()
                if re.fullmatch(r"-?[0-9]+\.0+", value):  # an int that came back as a float
                    value = value.split(".")[0]
                result[name] = value
        return result

    def shared_strings(self) -> list[str]:
        if self._shared is None:
            self._shared = []
            if self._shared_part:
                root = self._xml(self._shared_part)
                for si in root.iterchildren(f"{_M}si"):
                    if len(self._shared) >= MAX_SHARED_STRINGS:
                        raise UnsafeFile(self.name, "trop de textes dans le classeur.")
                    self._shared.append(
                        "".join(
                            t.text or ""
                            for t in si.iter(f"{_M}t")
                            if t.getparent().tag != f"{_M}rPh"
                        )
                    )
        return self._shared

    def read_cells(self, sheet: Sheet, refs: set[str]) -> dict[str, RawCell]:
        """The cells `refs` of `sheet` (absent ones are left out), reading no further
        than the last row asked for."""
        if not refs:
            return {}
        data = self.zip.read(sheet.path)
        check_xml(data, self.name, sheet.path)
        data = to_transitional(data)
        try:
            if len(data) <= SMALL_SHEET:  # the usual case: parse at once, in C
                cells = etree.fromstring(data, _parser()).iter(f"{_M}c")
                return {
                    ref: self._cell(element)
                    for element in cells
                    if (ref := element.get("r", "")) in refs
                }
            last_row = max(split_ref(ref)[1] for ref in refs)
            return self._stream_cells(data, refs.__contains__, last_row)
        except etree.XMLSyntaxError as exc:
            raise UnsafeFile(
                self.name,
                f"feuille « {sheet.name} » illisible (XML endommagé : {exc.msg}).",
                damaged=True,
            ) from exc

    def read_columns(
        self, sheet: Sheet, columns: Collection[str], last_row: int
    ) -> dict[str, RawCell]:
        """Every cell of `columns` (letters) of `sheet` down to row `last_row`, by reference;
        bounded like `read_cells`. Cells without a reference attribute are left out."""
        data = self.zip.read(sheet.path)
        check_xml(data, self.name, sheet.path)

        def wanted(ref: str) -> bool:
            match = _CELL_REF.match(ref)
            if match is None:
                return False
            return match.group(1) in columns and int(match.group(2)) <= last_row

        try:
            return self._stream_cells(to_transitional(data), wanted, last_row)
        except etree.XMLSyntaxError as exc:
            raise UnsafeFile(
                self.name,
                f"feuille « {sheet.name} » illisible (XML endommagé : {exc.msg}).",
                damaged=True,
            ) from exc

    def _stream_cells(
        self, data: bytes, wanted: Callable[[str], bool], last_row: int
    ) -> dict[str, RawCell]:
        """Big sheets: stream the XML, forget each row, stop after `last_row`; the cells
        whose reference is `wanted`."""
        found: dict[str, RawCell] = {}
        context = etree.iterparse(
            io.BytesIO(data),
            events=("end",),
            tag=(f"{_M}row", f"{_M}c"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
        )
        for _, element in context:
            if element.tag == f"{_M}row":
                row_number = element.get("r")
                element.clear(keep_tail=False)
                if row_number and row_number.isdigit() and int(row_number) >= last_row:
                    break
                continue
            ref = element.get("r", "")
            if wanted(ref):
                found[ref] = self._cell(element)
        return found

    def _cell(self, element: Any) -> RawCell:
        kind = element.get("t", "n")
        has_formula = element.find(f"{_M}f") is not None
        if kind == "inlineStr":
            inline = element.find(f"{_M}is")
            text = "" if inline is None else "".join(t.text or "" for t in inline.iter(f"{_M}t"))
            return RawCell("str", text, has_formula)
        value_element = element.find(f"{_M}v")
        value = value_element.text or "" if value_element is not None else ""
        if kind == "s":
            strings = self.shared_strings()
            try:
                return RawCell("str", strings[int(value)], has_formula)
            except (ValueError, IndexError):
                return RawCell("e", f"#REF ({value})", has_formula)
        if kind == "str":
            return RawCell("str", value, has_formula)
        return RawCell(kind, value, has_formula)

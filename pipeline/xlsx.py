"""Bounded, read-only access to the cells of an untrusted .xlsx package.

Reads only what is asked: the sheet list, the custom document properties and given
cells, straight from the zip parts (no openpyxl: it would load everything, and it
must never re-save a returned file). Every part goes through `SafeZip` (size limits)
and `check_xml` (no DTD, so no entity expansion); parsing stops after the last row
asked for, so a sheet that claims a million rows costs nothing more.
"""

from __future__ import annotations

import io
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from lxml import etree

from pipeline.safe_zip import SafeZip, UnsafeFile, check_xml

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_CUSTOM = "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"
_M = f"{{{_MAIN}}}"
_CELL_REF = re.compile(r"^([A-Z]{1,3})([0-9]{1,7})$")
MAX_SHARED_STRINGS = 200_000
SMALL_SHEET = 512 * 1024  # bytes of XML parsed at once; larger sheets are streamed


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


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
        data = self.zip.read(part)
        check_xml(data, self.name, part)
        try:
            return etree.fromstring(data, _parser())
        except etree.XMLSyntaxError as exc:
            raise UnsafeFile(
                self.name, f"partie « {part} » illisible (XML endommagé : {exc.msg}).", damaged=True
            ) from exc

    def _read_sheets(self) -> dict[str, Sheet]:
        if not self.zip.has("xl/workbook.xml"):
            raise UnsafeFile(self.name, "ce n'est pas un classeur Excel (xl/workbook.xml absent).")
        workbook = self._xml("xl/workbook.xml")
        targets: dict[str, str] = {}
        if self.zip.has("xl/_rels/workbook.xml.rels"):
            for rel in self._xml("xl/_rels/workbook.xml.rels").iter(f"{{{_PKG_REL}}}Relationship"):
                target = rel.get("Target", "")
                path = (
                    target.lstrip("/")
                    if target.startswith("/")
                    else posixpath.normpath(posixpath.join("xl", target))
                )
                targets[rel.get("Id", "")] = path
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

    def custom_properties(self) -> dict[str, str]:
        """Custom document properties as strings, whatever type a client gave them."""
        if not self.zip.has("docProps/custom.xml"):
            return {}
        result = {}
        for prop in self._xml("docProps/custom.xml").iter(f"{{{_CUSTOM}}}property"):
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
            if self.zip.has("xl/sharedStrings.xml"):
                root = self._xml("xl/sharedStrings.xml")
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
        try:
            if len(data) <= SMALL_SHEET:  # the usual case: parse at once, in C
                cells = etree.fromstring(data, _parser()).iter(f"{_M}c")
                return {
                    ref: self._cell(element)
                    for element in cells
                    if (ref := element.get("r", "")) in refs
                }
            last_row = max(split_ref(ref)[1] for ref in refs)
            return self._stream_cells(data, refs, last_row)
        except etree.XMLSyntaxError as exc:
            raise UnsafeFile(
                self.name,
                f"feuille « {sheet.name} » illisible (XML endommagé : {exc.msg}).",
                damaged=True,
            ) from exc

    def _stream_cells(self, data: bytes, refs: set[str], last_row: int) -> dict[str, RawCell]:
        """Big sheets: stream the XML, forget each row, stop after `last_row`."""
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
            if ref in refs:
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

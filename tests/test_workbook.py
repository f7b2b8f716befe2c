"""The student workbook: layout, validations, protection, identity, stamping."""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
import zipfile
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from openpyxl.cell.cell import MergedCell
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.grid import load_grid, parse_grid
from pipeline.roster import Student
from pipeline.workbook import (
    APPRECIATION_LIMIT,
    LISTS_SHEET,
    META_SHEET,
    TemplateOptions,
    WorkbookStamper,
    build_template,
    identity_values,
    plan_layout,
    sign_identity,
    student_file_name,
    template_bytes,
    verify_identity,
)

KEY = bytes(range(32))
GRID = load_grid()
STUDENT = Student(
    student_id="E0001",
    last_name="N'Diaye-Lefèvre",
    first_name="Zoé",
    class_name="BTS MUC 2A",
    company="Agence « Horizon » & Fils <Lyon>",
    tutor_name="Hélène Dubois",
    tutor_email="helene.dubois@horizon.example",
    start=date(2027, 1, 4),
    end=date(2027, 2, 26),
)


@pytest.fixture(scope="module")
def template() -> bytes:
    options = TemplateOptions(campaign_id="campagne-test", school="Lycée Test", deadline=None)
    return template_bytes(build_template(GRID, options))


@pytest.fixture(scope="module")
def stamped(template: bytes) -> openpyxl.Workbook:
    data = WorkbookStamper(template).stamp(identity_values(STUDENT, GRID, "campagne-test", KEY))
    return openpyxl.load_workbook(io.BytesIO(data))


def test_layout__places_every_criterion_once_in_seed_order() -> None:
    layout = plan_layout(GRID)
    assert list(layout.criteria) == [c.id for c in GRID.criteria]
    assert len(layout.criteria) == 44
    cells = [(ref.sheet, ref.cell) for ref in layout.criteria.values()]
    assert len(set(cells)) == 44
    assert layout.field_count == 54


def test_workbook__sheets_mirror_the_seed(stamped: openpyxl.Workbook) -> None:
    assert stamped.sheetnames == [
        "Instructions",
        "Intégration",
        "Fonctionnement",
        "Clientèle",
        "Organisation",
        "Évaluation globale",
        "Appréciations",
        META_SHEET,
    ]
    assert stamped[META_SHEET].sheet_state == "veryHidden"


def test_workbook__criteria_labels_and_headings_in_seed_order(stamped: openpyxl.Workbook) -> None:
    layout = plan_layout(GRID)
    for plan in layout.sections:
        ws = stamped[plan.section.sheet]
        found = [(kind, ws[f"A{row}"].value) for kind, row, _ in plan.rows]
        expected: list[tuple[str, str]] = []
        heading = ""
        for criterion in plan.section.criteria:
            if criterion.heading and criterion.heading != heading:
                heading = criterion.heading
                expected.append(("heading", heading))
            expected.append(("criterion", criterion.label))
        assert found == expected
    clientele = stamped["Clientèle"]
    headings = [
        clientele[f"A{row}"].value for kind, row, _ in layout.sections[2].rows if kind == "heading"
    ]
    assert headings == [
        "Comportement commercial",
        "Préparation de l’entretien, du rendez-vous",
        "Déroulement de l’entretien, du rendez-vous",
        "Suivi de l’entretien, du rendez-vous",
    ]


def _validations_by_cell(wb: openpyxl.Workbook) -> dict[tuple[str, str], object]:
    result = {}
    for ws in wb.worksheets:
        for dv in ws.data_validations.dataValidation:
            for cell_range in dv.sqref.ranges:
                for row in ws.iter_rows(
                    min_row=cell_range.min_row,
                    max_row=cell_range.max_row,
                    min_col=cell_range.min_col,
                    max_col=cell_range.max_col,
                ):
                    for cell in row:
                        result[(ws.title, cell.coordinate)] = dv
    return result


def test_workbook__every_rating_is_a_dropdown_of_the_scale(stamped: openpyxl.Workbook) -> None:
    validations = _validations_by_cell(stamped)
    layout = plan_layout(GRID)
    for ref in layout.criteria.values():
        dv = validations[(ref.sheet, ref.cell)]
        assert dv.type == "list"  # type: ignore[attr-defined]
        assert dv.formula1 == '"TI,I,S,TS"'  # type: ignore[attr-defined]
        assert dv.showErrorMessage and dv.error.startswith("Note invalide")  # type: ignore[attr-defined]
        assert "très satisfaisant" in dv.prompt  # type: ignore[attr-defined]


def test_workbook__global_levels_keep_the_seed_gaps(stamped: openpyxl.Workbook) -> None:
    validations = _validations_by_cell(stamped)
    layout = plan_layout(GRID)
    found = {
        dim_id: validations[(ref.sheet, ref.cell)].formula1  # type: ignore[attr-defined]
        for dim_id, ref in layout.dimensions.items()
    }
    assert found == {
        "autonomie": '"0,1,2,3"',
        "responsabilites": '"0,1,3,4"',
        "implication": '"0,1,3,4"',
        "rigueur": '"0,1,3,4"',
        "integration_equipe": '"0,1,2,3"',
        "ecoute": '"0,1,2,3"',
        "contact_commercial": '"0,1,2,3"',
    }
    ws = stamped["Évaluation globale"]
    descriptors = ws[f"C{layout.dimensions['responsabilites'].cell[1:]}"].value
    assert descriptors.splitlines()[2] == "3 – S’acquitte correctement des responsabilités confiées"


def test_workbook__only_input_cells_are_unlocked(stamped: openpyxl.Workbook) -> None:
    layout = plan_layout(GRID)
    inputs = {
        (ref.sheet, ref.cell)
        for ref in [
            *layout.criteria.values(),
            *layout.dimensions.values(),
            layout.appreciation,
            layout.date,
            layout.signature,
        ]
    }
    unlocked = set()
    for ws in stamped.worksheets:
        assert ws.protection.sheet, ws.title
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell, MergedCell):  # part of a merged input box
                    continue
                if (cell.value is not None or cell.has_style) and not cell.protection.locked:
                    unlocked.add((ws.title, cell.coordinate))
    assert unlocked == inputs
    team = layout.team_box
    assert stamped[team.sheet][team.cell].protection.locked
    assert "Réservé" in stamped[team.sheet][team.cell].value
    assert stamped.security is not None and stamped.security.lockStructure


def test_workbook__identity_prefilled_and_escaped(stamped: openpyxl.Workbook) -> None:
    ws = stamped["Instructions"]
    layout = plan_layout(GRID)
    identity = {name: ws[ref.cell].value for name, ref in layout.identity.items()}
    assert identity == {
        "student_name": "N'DIAYE-LEFÈVRE Zoé",
        "class_name": "BTS MUC 2A",
        "company": "Agence « Horizon » & Fils <Lyon>",
        "tutor_name": "Hélène Dubois",
        "tutor_email": "helene.dubois@horizon.example",
        "period": "du 04/01/2027 au 26/02/2027",
    }
    # the other sheets show it through a formula, so that only one sheet differs per student
    assert stamped["Clientèle"]["A2"].value == (
        '="Stagiaire : "&Instructions!B5&" — "&Instructions!B6&" — "&Instructions!B7'
    )


def test_workbook__metadata_sheet_and_properties_carry_a_verifiable_signature(
    stamped: openpyxl.Workbook,
) -> None:
    meta_ws = stamped[META_SHEET]
    meta = {meta_ws[f"A{r}"].value: meta_ws[f"B{r}"].value for r in range(1, 7)}
    props = {p.name.removeprefix("grille_"): p.value for p in stamped.custom_doc_props}
    assert meta == props
    assert meta["student_id"] == "E0001"
    assert meta["grid_id"] == GRID.id
    assert verify_identity(KEY, meta)
    assert not verify_identity(b"another key" * 3, meta)
    assert not verify_identity(KEY, {**meta, "student_id": "E0002"})


def test_workbook__no_token_left_after_stamping(template: bytes) -> None:
    data = WorkbookStamper(template).stamp(identity_values(STUDENT, GRID, "campagne-test", KEY))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        for name in archive.namelist():
            assert b"@@GRILLE_" not in archive.read(name), name


def test_workbook__completion_indicator_counts_54_fields(stamped: openpyxl.Workbook) -> None:
    formula = stamped["Instructions"]["B12"].value
    assert formula.startswith("=(COUNTA(")
    assert formula.endswith('" / 54 champs renseignés"')


def test_workbook__a4_print_setup_on_every_visible_sheet(stamped: openpyxl.Workbook) -> None:
    for ws in stamped.worksheets:
        if ws.sheet_state == "visible":
            assert int(ws.page_setup.paperSize) == int(ws.PAPERSIZE_A4), ws.title


def test_workbook__long_lists_go_to_a_hidden_sheet() -> None:
    data = _grid_data_with_long_scale()
    grid = parse_grid(data, "long.toml")
    wb = build_template(grid, TemplateOptions(campaign_id="c"))
    assert wb[LISTS_SHEET].sheet_state == "hidden"
    dv = wb[grid.sections[0].sheet].data_validations.dataValidation[0]
    assert dv.formula1 == "'Listes'!$A$1:$A$30"
    assert [wb[LISTS_SHEET][f"A{i}"].value for i in (1, 30)] == ["NIVEAU-01", "NIVEAU-30"]


def _grid_data_with_long_scale() -> dict[str, object]:
    import tomllib

    from pipeline.grid import DEFAULT_GRID

    data = tomllib.loads(DEFAULT_GRID.read_text(encoding="utf-8"))
    data["scale"] = [{"code": f"NIVEAU-{i:02d}", "label": f"Niveau {i}"} for i in range(1, 31)]
    return data


def test_signature__depends_on_every_identity_field() -> None:
    base = sign_identity(KEY, "c", "s", "g", "1")
    assert (
        len(
            {
                base,
                *(
                    sign_identity(KEY, *f)
                    for f in [
                        ("x", "s", "g", "1"),
                        ("c", "x", "g", "1"),
                        ("c", "s", "x", "1"),
                        ("c", "s", "g", "2"),
                    ]
                ),
            }
        )
        == 5
    )


def test_file_name__readable_and_safe() -> None:
    assert student_file_name(STUDENT) == "N_DIAYE-LEFEVRE_Zoe_E0001.xlsx"


def test_stamping__is_deterministic(template: bytes, tmp_path: Path) -> None:
    stamper = WorkbookStamper(template)
    values = identity_values(STUDENT, GRID, "campagne-test", KEY)
    assert stamper.stamp(values) == stamper.stamp(values)


def test_workbook__filled_inputs_turn_green__the_appreciation_placeholder_does_not_count(
    stamped: openpyxl.Workbook,
) -> None:
    layout = plan_layout(GRID)
    rules = {
        (ws.title, str(cf.sqref)): rule.formula[0]
        for ws in stamped.worksheets
        for cf in ws.conditional_formatting
        for rule in cf.rules
    }
    for ref in [*layout.criteria.values(), *layout.dimensions.values(), layout.date]:
        assert rules[(ref.sheet, ref.cell)] == f"NOT(LEN(TRIM({ref.cell}))=0)"
    appreciation = rules[(layout.appreciation.sheet, layout.appreciation.cell)]
    assert appreciation.startswith("NOT(OR(LEN(TRIM(A4))=0,A4=")
    assert "Écrivez ici votre appréciation" in appreciation


# ------------------------------------------------------------------ as a person sees it


def _span_width(ws: Worksheet, cell: str) -> tuple[float, int, int]:
    """(width in characters, first row, last row) of `cell`, or of the merged range it starts."""
    for merged in ws.merged_cells.ranges:
        if merged.start_cell.coordinate == cell:
            columns = range(merged.min_col, merged.max_col + 1)
            width = sum(ws.column_dimensions[get_column_letter(c)].width for c in columns)
            return width, merged.min_row, merged.max_row
    letter = "".join(ch for ch in cell if ch.isalpha())
    row = int(cell[len(letter) :])
    return ws.column_dimensions[letter].width, row, row


def _lines_at_one_char_per_unit(text: str, width: float) -> int:
    """A plain, pessimistic count for bold Arial 10: one character per unit of column width."""
    return sum(max(1, math.ceil(len(part) / width)) for part in text.split("\n"))


def _row_height(ws: Worksheet, row: int) -> float:
    height = ws.row_dimensions[row].height
    return 15.0 if height is None else float(height)


def test_workbook__every_header_row_is_tall_enough_for_its_wrapped_text(
    stamped: openpyxl.Workbook,
) -> None:
    checked = []
    for ws in stamped.worksheets:
        if ws.sheet_state != "visible":
            continue
        for row in ws.iter_rows():
            for cell in row:
                text = cell.value
                if not isinstance(text, str) or text.startswith("="):
                    continue
                if cell.fill.fgColor.rgb != "00D9E2F3" or not cell.alignment.wrap_text:
                    continue  # header cells only: the light blue ones
                width, first, last = _span_width(ws, cell.coordinate)
                if first != last:
                    continue
                needed = _lines_at_one_char_per_unit(text, width) * 12.75
                checked.append((ws.title, cell.coordinate, text))
                assert _row_height(ws, first) >= needed, (ws.title, cell.coordinate, text)
    headers = {text for _, _, text in checked}
    assert "Tuteur en entreprise\n(TI / I / S / TS)" in headers
    assert "Tuteur : niveau" in headers


YELLOW_MIN = (0xF0, 0xD8)  # red and green high…
YELLOW_BLUE_MAX = 0xA0  # …blue clearly lower: a yellow a tutor calls yellow, not cream


def _rgb(value: str) -> tuple[int, int, int]:
    value = value[-6:]
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _is_yellow(value: str) -> bool:
    red, green, blue = _rgb(value)
    return red >= YELLOW_MIN[0] and green >= YELLOW_MIN[1] and blue <= YELLOW_BLUE_MAX


def test_workbook__cells_to_fill_are_yellow_and_turn_green_once_filled(
    stamped: openpyxl.Workbook,
) -> None:
    layout = plan_layout(GRID)
    inputs = [
        *layout.criteria.values(),
        *layout.dimensions.values(),
        layout.appreciation,
        layout.date,
        layout.signature,
    ]
    rules: dict[tuple[str, str], list[object]] = {}
    for ws in stamped.worksheets:
        for cf in ws.conditional_formatting:
            rules.setdefault((ws.title, str(cf.sqref)), []).extend(cf.rules)
    for ref in inputs:
        fill = stamped[ref.sheet][ref.cell].fill
        assert fill.fill_type == "solid" and _is_yellow(fill.fgColor.rgb), (ref, fill.fgColor.rgb)
        (rule,) = rules[(ref.sheet, ref.cell)]
        dxf_fill = rule.dxf.fill  # type: ignore[attr-defined]
        # Excel paints a conditional solid fill with bgColor, LibreOffice with fgColor: both set
        assert dxf_fill.fgColor.rgb == dxf_fill.bgColor.rgb, ref
        red, green, blue = _rgb(dxf_fill.fgColor.rgb)
        assert green > red and green > blue, (ref, dxf_fill.fgColor.rgb)  # green, not yellow
        assert rule.formula[0].startswith("NOT("), ref  # type: ignore[attr-defined]
    words = " ".join(
        str(c.value) for row in stamped["Instructions"].iter_rows() for c in row if c.value
    )
    assert "Les cellules jaunes sont à remplir ; une cellule remplie devient verte." in words
    assert "orang" not in words


def test_workbook__global_total_waits_for_every_level(stamped: openpyxl.Workbook) -> None:
    layout = plan_layout(GRID)
    ws = stamped[GRID.global_evaluation.sheet]
    first = layout.dimensions["autonomie"].cell
    last = layout.dimensions["contact_commercial"].cell
    total_row = int(last[1:]) + 1
    assert ws[f"B{total_row}"].value == (f'=IF(COUNT({first}:{last})=7,SUM({first}:{last}),"")')
    assert ws[f"C{total_row}"].value.startswith(f'=IF(COUNT({first}:{last})=7,"sur 24",')


def test_workbook__the_appreciation_box_holds_its_announced_limit(
    stamped: openpyxl.Workbook,
) -> None:
    layout = plan_layout(GRID)
    ws = stamped[layout.appreciation.sheet]
    validations = _validations_by_cell(stamped)
    dv = validations[(layout.appreciation.sheet, layout.appreciation.cell)]
    assert dv.type == "textLength" and dv.operator == "lessThanOrEqual"  # type: ignore[attr-defined]
    limit = int(dv.formula1)  # type: ignore[attr-defined]
    assert limit == APPRECIATION_LIMIT == 1500
    limit_text = "1\u00a0500 caractères"  # a no-break space, as French typesetting wants
    assert limit_text in dv.prompt and limit_text in dv.error  # type: ignore[attr-defined]
    assert limit_text in ws["A3"].value
    width, first, last = _span_width(ws, layout.appreciation.cell)
    height = sum(_row_height(ws, row) for row in range(first, last + 1))
    lines = math.ceil(limit / width) + 6  # the text, and a few paragraphs
    assert height >= lines * 12.75
    assert ws[layout.appreciation.cell].alignment.wrap_text


def test_workbook__printed_copy_has_tick_boxes_signature_and_stamp(
    stamped: openpyxl.Workbook,
) -> None:
    layout = plan_layout(GRID)
    for plan in layout.sections:
        ws = stamped[plan.section.sheet]
        header = plan.criteria_header_row
        assert [ws[f"{c}{header}"].value for c in "EFGH"] == ["TI", "I", "S", "TS"]
        for kind, row, _ in plan.rows:
            if kind != "criterion":
                continue
            ticks = [ws[f"{c}{row}"].value for c in "EFGH"]
            assert ticks[3] == (
                f'=IF(OR(UPPER(TRIM(D{row}))="TS",UPPER(TRIM(D{row}))="TRÈS SATISFAISANT"),"X","")'
            )
            for column in "EFGH":
                assert ws[f"{column}{row}"].protection.locked
                assert ws[f"{column}{row}"].border.left.style == "thin"
    closing = stamped[GRID.closing.sheet]
    boxes = {}
    for merged in closing.merged_cells.ranges:
        label = closing.cell(merged.min_row - 1, merged.min_col).value
        if label in ("Signature du tuteur", "Cachet de l'entreprise"):
            rows = range(merged.min_row, merged.max_row + 1)
            boxes[label] = sum(_row_height(closing, r) for r in rows)
    assert set(boxes) == {"Signature du tuteur", "Cachet de l'entreprise"}
    assert min(boxes.values()) >= 90  # about 3 cm: room for a signature and a stamp


# ------------------------------------------------------------------ through LibreOffice

# Near the limit, in paragraphs a little longer than a printed line: the worst case to show.
LONG_APPRECIATION = "\n".join(
    [
        *(
            (f"Point {i} : " + "le stagiaire a montré du sérieux et de l'initiative, " * 4)[:175]
            for i in range(1, 9)
        ),
        "Dernière phrase du tuteur.",
    ]
)


def _soffice(sources: list[Path], out: Path, target: str, profile: Path) -> list[Path]:
    """Convert `sources` with LibreOffice, in a profile and a HOME of their own."""
    env = {**os.environ, "HOME": str(profile / "home"), "TMPDIR": str(profile)}
    (profile / "home").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["soffice", "--headless", "--norestore", f"-env:UserInstallation={profile.as_uri()}",
         "--convert-to", target, "--outdir", str(out), *map(str, sources)],
        check=True, capture_output=True, timeout=300, env=env,
    )  # fmt: skip
    extension = target.split(":")[0]
    return [out / f"{source.stem}.{extension}" for source in sources]


def _pdf_text(pdf: Path) -> str:
    result = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    )
    return result.stdout


def _filled(template: bytes, target: Path, answers: dict[str, object]) -> Path:
    data = WorkbookStamper(template).stamp(identity_values(STUDENT, GRID, "campagne-test", KEY))
    wb = openpyxl.load_workbook(io.BytesIO(data))
    layout = plan_layout(GRID)
    refs = {**layout.criteria, **layout.dimensions, "appreciation": layout.appreciation}
    for key, value in answers.items():
        wb[refs[key].sheet][refs[key].cell].value = value
    wb.save(target)
    return target


@pytest.fixture(scope="module")
def through_libreoffice(
    template: bytes, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, openpyxl.Workbook]]:
    """Blank, partly and fully filled workbooks: (PDF text, workbook recalculated by LO)."""
    if shutil.which("soffice") is None or shutil.which("pdftotext") is None:
        pytest.skip("LibreOffice (soffice) ou pdftotext absent")
    folder = tmp_path_factory.mktemp("libreoffice")
    levels = {d.id: d.values[-1] for d in GRID.global_evaluation.dimensions}
    partly = dict(list(levels.items())[:6])
    sources = [
        _filled(template, folder / "vierge.xlsx", {}),
        _filled(template, folder / "partiel.xlsx", {**partly, "integration.ponctualite": "ts"}),
        _filled(template, folder / "complet.xlsx", {**levels, "appreciation": LONG_APPRECIATION}),
    ]
    profile = folder / "profil"
    pdfs = _soffice(sources, folder / "pdf", "pdf", profile)
    resaved = _soffice(sources, folder / "xlsx", "xlsx:Calc MS Excel 2007 XML", profile)
    return {
        source.stem: (_pdf_text(pdf), openpyxl.load_workbook(again, data_only=True))
        for source, pdf, again in zip(sources, pdfs, resaved, strict=True)
    }


def _total_cells(wb: openpyxl.Workbook) -> tuple[object, object]:
    last = plan_layout(GRID).dimensions["contact_commercial"].cell
    ws = wb[GRID.global_evaluation.sheet]
    row = int(last[1:]) + 1
    return ws[f"B{row}"].value, ws[f"C{row}"].value


@pytest.mark.soffice
def test_libreoffice__blank_form_prints_no_zero_total_and_the_signature_boxes(
    through_libreoffice: dict[str, tuple[str, openpyxl.Workbook]],
) -> None:
    text, recalculated = through_libreoffice["vierge"]
    assert not re.search(r"\b0 sur 24", text)
    assert "sur 24 : encore 7 niveaux à choisir" in text
    assert _total_cells(recalculated) == (None, "sur 24 : encore 7 niveaux à choisir")
    assert "Signature du tuteur" in text and "Cachet de l'entreprise" in text
    assert re.search(r"TI +I +S +TS", text)  # the tick-box columns, as in the paper grid


@pytest.mark.soffice
def test_libreoffice__total_counts_the_missing_levels_then_sums(
    through_libreoffice: dict[str, tuple[str, openpyxl.Workbook]],
) -> None:
    text, recalculated = through_libreoffice["partiel"]
    assert "sur 24 : encore 1 niveau à choisir" in text
    assert _total_cells(recalculated) == (None, "sur 24 : encore 1 niveau à choisir")
    row = plan_layout(GRID).criteria["integration.ponctualite"].cell[1:]
    ticks = [recalculated["Intégration"][f"{c}{row}"].value for c in "EFGH"]
    assert [t or "" for t in ticks] == ["", "", "", "X"]  # « ts » typed in lower case
    text, recalculated = through_libreoffice["complet"]
    assert _total_cells(recalculated) == (24, "sur 24")
    assert re.search(r"Total +24 +sur 24", text)


@pytest.mark.soffice
def test_libreoffice__a_long_appreciation_is_printed_whole(
    through_libreoffice: dict[str, tuple[str, openpyxl.Workbook]],
) -> None:
    assert len(LONG_APPRECIATION) <= APPRECIATION_LIMIT
    text, recalculated = through_libreoffice["complet"]
    flat = " ".join(text.split())
    assert "Point 8 : le stagiaire" in flat
    assert "Dernière phrase du tuteur." in flat
    layout = plan_layout(GRID)
    assert recalculated[layout.appreciation.sheet][layout.appreciation.cell].value == (
        LONG_APPRECIATION
    )

"""The student workbook: layout, validations, protection, identity, stamping."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from openpyxl.cell.cell import MergedCell

from pipeline.grid import load_grid, parse_grid
from pipeline.roster import Student
from pipeline.workbook import (
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


def test_workbook__empty_inputs_highlighted_even_the_appreciation_placeholder(
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
        assert rules[(ref.sheet, ref.cell)] == f"LEN(TRIM({ref.cell}))=0"
    appreciation = rules[(layout.appreciation.sheet, layout.appreciation.cell)]
    assert appreciation.startswith("OR(LEN(TRIM(A4))=0,A4=")
    assert "Écrivez ici votre appréciation" in appreciation

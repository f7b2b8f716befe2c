"""Word reports: real .docx files saved, reopened with python-docx and read back."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path

import docx
import matplotlib.image
import pytest
from docx.document import Document
from docx.oxml.ns import qn
from docx.shared import Pt
from docx.table import Table
from docx.text.paragraph import Paragraph

from pipeline import office
from pipeline.grid import Grid, load_grid
from pipeline.report import (
    ReportError,
    StudentReportData,
    build_class_report,
    build_student_report,
    report_file_suffix,
    save_document,
    write_default_template,
)
from pipeline.roster import Student
from pipeline.settings import CampaignConfig, SmtpSettings
from pipeline.validation import Evaluation
from pipeline.workbook import plan_layout
from tests.tutors import GRID, complete_answers, fill, make_campaign, run, workbook_of

CONFIG = CampaignConfig(
    campaign_id="campagne-test",
    school="Lycée Jean Moulin",
    session="2027",
    school_year="2026-2027",
    teacher_name="Claire Martin",
    teacher_email="claire.martin@example.fr",
    deadline=None,
    smtp=SmtpSettings(),
)
APPRECIATION = "Stagiaire « motivé » & curieux <toujours>.\nDeuxième ligne.\n\nFin."


@pytest.fixture(name="grid", scope="module")
def grid_fixture() -> Grid:
    return load_grid()


def make_data(
    grid: Grid,
    index: int = 0,
    *,
    status: str = "complete",
    missing: int = 0,
    problems: tuple[str, ...] = (),
    team: str = "",
    appreciation: str = APPRECIATION,
) -> StudentReportData:
    """A student whose n-th criterion gets the scale code n (cycling), the first `missing`
    criteria unrated; each dimension gets its highest level but one."""
    codes = grid.scale_codes
    ratings: dict[str, str | None] = {
        c.id: None if i < missing else codes[(i + index) % len(codes)]
        for i, c in enumerate(grid.criteria)
    }
    levels: dict[str, int | None] = {d.id: d.values[-2] for d in grid.global_evaluation.dimensions}
    student = Student(
        student_id=f"E{index}",
        last_name=f"Élève{index:02d}",
        first_name="Léa",
        class_name="BTS MUC 2A",
        company=f"Agence Horizon {index}",
        tutor_name=f"Paul Tuteur{index}",
        tutor_email="tuteur@example.fr",
        start=date(2027, 1, 4),
        end=date(2027, 2, 12),
    )
    evaluation = Evaluation(ratings, levels, appreciation, date(2027, 2, 14), "Paul Tuteur")
    return StudentReportData(student, evaluation, status, problems, team, date(2027, 2, 15))


def saved(doc: Document, path: Path) -> Document:
    """Save to a real file, then reopen it."""
    save_document(doc, path)
    return docx.Document(str(path))


def texts(doc: Document) -> list[str]:
    """Every paragraph's text, tables included, in document order (w:br read as "\\n")."""
    return [Paragraph(p, None).text for p in doc.element.body.iter(qn("w:p"))]


def criteria_tables(doc: Document) -> list[list[list[str]]]:
    """Rows (cell texts) of the tables whose header is Critère | TI | I | S | TS."""
    tables = []
    for table in doc.tables:
        rows = [[cell.text for cell in row.cells] for row in table.rows]
        if rows[0] == ["Critère", "TI", "I", "S", "TS"]:
            tables.append(rows[1:])
    return tables


def test_student_report__complete__lists_every_criterion_in_grid_order_with_the_x_in_its_column(
    grid: Grid, tmp_path: Path
) -> None:
    data = make_data(grid)
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    tables = criteria_tables(doc)
    assert len(tables) == len(grid.sections)
    for section, rows in zip(grid.sections, tables, strict=True):
        rated = [row for row in rows if len(set(row)) > 1]
        assert [row[0] for row in rated] == [c.label for c in section.criteria]
        for criterion, row in zip(section.criteria, rated, strict=True):
            expected = ["X" if code == data.evaluation.ratings[criterion.id] else "" for code in
                        grid.scale_codes]  # fmt: skip
            assert row[1:] == expected
        assert [row[0] for row in rows if len(set(row)) == 1] == section.headings()


def test_student_report__complete__shows_each_chosen_descriptor_and_the_total(
    grid: Grid, tmp_path: Path
) -> None:
    data = make_data(grid)
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    lines = texts(doc)
    for dimension in grid.global_evaluation.dimensions:
        level = dimension.values[-2]
        assert dimension.descriptor(level) in lines
        assert f"{level} / {dimension.maximum}" in lines
    total = sum(d.values[-2] for d in grid.global_evaluation.dimensions)
    assert f"Total : {total} / 24" in lines


def test_student_report__tutor_appreciation__kept_verbatim_with_its_line_breaks(
    grid: Grid, tmp_path: Path
) -> None:
    doc = saved(build_student_report(grid, CONFIG, make_data(grid)), tmp_path / "bilan.docx")
    assert APPRECIATION in texts(doc)
    runs = [r for p in doc.element.body.iter(qn("w:p")) for r in Paragraph(p, None).runs]
    run = next(r for r in runs if "« motivé »" in r.text)
    assert run.text == APPRECIATION
    assert len(run.element.findall(qn("w:br"))) == 3


def test_student_report__control_characters_and_lone_surrogates__are_dropped(
    grid: Grid, tmp_path: Path
) -> None:
    data = make_data(grid, appreciation="Bon\x00 tra\x07vail\ud800.\r\nSuite\x0bfin")
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    assert "Bon travail.\nSuite\nfin" in texts(doc)


def test_student_report__complete__has_no_banner(grid: Grid, tmp_path: Path) -> None:
    doc = saved(build_student_report(grid, CONFIG, make_data(grid)), tmp_path / "bilan.docx")
    assert not [t for t in texts(doc) if "INCOMPLET" in t or "INVALIDE" in t]


def test_student_report__incomplete__shows_the_banner_with_every_missing_line(
    grid: Grid, tmp_path: Path
) -> None:
    problems = (
        "Intégration › Compréhension du fonctionnement (cellule D12) : non renseigné.",
        "Intégration › Connaissance des fonctions (cellule D13) : non renseigné.",
    )
    data = make_data(grid, status="incomplete", missing=2, problems=problems)
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    lines = texts(doc)
    banner = [i for i, t in enumerate(lines) if t.startswith("BILAN INCOMPLET")]
    assert len(banner) == 1
    assert lines[banner[0] + 1 : banner[0] + 3] == [f"•\t{p}" for p in problems]
    assert banner[0] < lines.index(grid.sections[0].title)


def test_student_report__invalid__shows_the_invalid_banner(grid: Grid, tmp_path: Path) -> None:
    data = make_data(grid, status="invalid", problems=("Note « TB » inconnue (cellule D20).",))
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    lines = texts(doc)
    assert any(t.startswith("BILAN INVALIDE") for t in lines)
    assert "•\tNote « TB » inconnue (cellule D20)." in lines


def tables(doc: Document) -> list[Table]:
    """Every table of the body in document order, those inside a table too, without the
    borderless one-cell tables that only hold others together on one page."""
    found: list[Table] = []

    def walk(level: list[Table]) -> None:
        for table in level:
            nested = [n for row in table.rows for cell in row.cells for n in cell.tables]
            if nested:
                walk(nested)
            else:
                found.append(table)

    walk(doc.tables)
    return found


def boxes(doc: Document) -> list[list[str]]:
    """Paragraph texts of the framed one-cell boxes (the appreciations), in order."""
    return [
        [p.text for p in t.cell(0, 0).paragraphs]
        for t in tables(doc)
        if len(t.columns) == 1 and len(t.rows) == 1
    ]


def test_student_report__team_appreciation__written_in_its_framed_box(
    grid: Grid, tmp_path: Path
) -> None:
    data = make_data(grid, team="Très bon stage.\nÀ valoriser à l'oral.")
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    tutor, team = boxes(doc)[-2:]
    assert tutor[0] == APPRECIATION
    assert team[0] == data.team_appreciation


def test_student_report__no_team_appreciation__leaves_room_to_write_above_the_visa(
    grid: Grid, tmp_path: Path
) -> None:
    doc = saved(build_student_report(grid, CONFIG, make_data(grid)), tmp_path / "bilan.docx")
    box = [t for t in tables(doc) if len(t.columns) == 1 and len(t.rows) == 1][-1]
    first, visa = box.cell(0, 0).paragraphs[:2]
    assert first.text == ""
    assert visa.text == "Visa du professeur : Claire Martin"
    assert visa.paragraph_format.space_before.cm > 3  # the room to write the appreciation
    borders = box._tbl.tblPr.find(qn("w:tblBorders"))
    assert {b.get(qn("w:val")) for b in borders} == {"single"}


def test_student_report__date_and_signature__in_the_same_unsplittable_row_as_the_appreciation(
    grid: Grid, tmp_path: Path
) -> None:
    doc = saved(build_student_report(grid, CONFIG, make_data(grid)), tmp_path / "bilan.docx")
    tutor_box = next(t for t in tables(doc) if t.cell(0, 0).paragraphs[0].text == APPRECIATION)
    assert [p.text for p in tutor_box.cell(0, 0).paragraphs] == [
        APPRECIATION,
        "Date : 14/02/2027",
        "Signature du tuteur : Paul Tuteur (nom écrit par le tuteur dans son classeur)",
    ]
    assert tutor_box.rows[0]._tr.trPr.find(qn("w:cantSplit")) is not None
    team_box = [t for t in tables(doc) if len(t.columns) == 1 and len(t.rows) == 1][-1]
    assert [p.text for p in team_box.cell(0, 0).paragraphs][1:3] == [
        "Visa du professeur : Claire Martin",
        "Date et signature :",
    ]
    assert team_box.rows[0]._tr.trPr.find(qn("w:cantSplit")) is not None
    # each box follows its heading, which is kept with it
    for box, title in ((tutor_box, grid.closing.tutor_appreciation),
                       (team_box, grid.closing.team_appreciation)):  # fmt: skip
        heading = Paragraph(box._tbl.getprevious(), doc)
        assert heading.text == title
        assert heading.style.paragraph_format.keep_with_next
    # both short: held together in one row that does not split (the visa never alone)
    row = tutor_box._tbl.getparent().getparent()  # tbl → tc → tr
    assert row is team_box._tbl.getparent().getparent()
    assert row.trPr.find(qn("w:cantSplit")) is not None


def test_student_report__no_signature_and_no_appreciation__each_says_so_in_its_box(
    grid: Grid, tmp_path: Path
) -> None:
    data = make_data(grid, status="incomplete", appreciation="")
    data = replace(data, evaluation=replace(data.evaluation, signature=""))
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    tutor = boxes(doc)[-2]
    assert tutor == [
        "non renseignée par le tuteur",
        "Date : 14/02/2027",
        "Signature du tuteur : — (le tuteur n’a pas écrit son nom)",
    ]


def test_student_report__header_block__names_school_class_year_student_company_tutor_and_dates(
    grid: Grid, tmp_path: Path
) -> None:
    doc = saved(build_student_report(grid, CONFIG, make_data(grid)), tmp_path / "bilan.docx")
    identity = [[c.text for c in row.cells] for row in doc.tables[0].rows]
    assert identity == [
        ["Élève", "ÉLÈVE00 Léa", "Classe", "BTS MUC 2A"],
        ["Entreprise", "Agence Horizon 0", "Tuteur", "Paul Tuteur0"],
        ["Établissement", "Lycée Jean Moulin", "Année scolaire", "2026-2027"],
        ["Période de stage", "du 04/01/2027 au 12/02/2027", "Grille reçue le", "15/02/2027"],
    ]
    assert "Date : 14/02/2027" in texts(doc)
    assert "Signature du tuteur : Paul Tuteur (nom écrit par le tuteur dans son classeur)" in texts(
        doc
    )
    header = doc.sections[0].header.paragraphs[0].text
    assert header == "Lycée Jean Moulin\tBilan de stage — ÉLÈVE00 Léa"


def test_student_report__names_the_return_it_comes_from_file_date_and_sha256(
    grid: Grid, tmp_path: Path
) -> None:
    digest = hashlib.sha256(b"le classeur tel que recu").hexdigest()
    data = replace(make_data(grid), return_file_name="grille Léa (2).xlsx", return_sha256=digest)
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    identity = [[c.text for c in row.cells] for row in doc.tables[0].rows]
    assert identity[-2:] == [
        ["Classeur retourné", *["« grille Léa (2).xlsx », reçu le 15/02/2027"] * 3],
        ["Empreinte SHA-256", *[digest] * 3],
    ]


def test_student_report__tables__have_fixed_layout_and_widths_on_columns_and_cells(
    grid: Grid, tmp_path: Path
) -> None:
    doc = saved(build_student_report(grid, CONFIG, make_data(grid)), tmp_path / "bilan.docx")
    section = doc.sections[0]
    assert (round(section.page_width.cm, 1), round(section.page_height.cm, 1)) == (21.0, 29.7)
    for table in doc.tables:
        assert table.autofit is False
        widths = [column.width for column in table.columns]
        assert all(widths)
        for row in table.rows:
            cells = row._tr.tc_lst
            assert all(cell.width for cell in cells)
            if len(cells) == len(widths):
                assert [cell.width for cell in cells] == widths


def test_class_report__contains_every_students_appreciations(grid: Grid, tmp_path: Path) -> None:
    students = [
        make_data(grid, i, appreciation=f"Avis n° {i} « ok » & <bien>\nligne 2", team=f"Équipe {i}")
        for i in range(5)
    ]
    doc = saved(build_class_report(grid, CONFIG, "BTS MUC 2A", students), tmp_path / "classe.docx")
    lines = texts(doc)
    for i in range(5):
        assert f"Avis n° {i} « ok » & <bien>\nligne 2" in lines
        assert f"Équipe {i}" in lines
    headings = [
        p.text for p in doc.paragraphs if p.style is not None and p.style.name == "Heading 2"
    ]
    students_headings = [f"ÉLÈVE{i:02d} Léa — Agence Horizon {i}" for i in range(5)]
    assert [h for h in headings if h.startswith("ÉLÈVE")] == students_headings


def test_class_report__one_summary_row_per_student_with_counts_matching_the_ratings(
    grid: Grid, tmp_path: Path
) -> None:
    students = [make_data(grid, i, missing=i) for i in range(4)]
    students[1] = replace(students[1], status="incomplete")
    doc = saved(build_class_report(grid, CONFIG, "BTS MUC 2A", students), tmp_path / "classe.docx")
    summary = next(t for t in doc.tables if t.rows[0].cells[0].text == "Élève")
    header = [c.text for c in summary.rows[0].cells]
    assert header == ["Élève", "Entreprise", "Tuteur", "Statut", "Total", "TI", "I", "S", "TS"]
    rows = [[c.text for c in row.cells] for row in summary.rows[1:]]
    assert len(rows) == 4
    for data, row in zip(students, rows, strict=True):
        counts = data.evaluation.rating_counts(grid)
        assert row[0] == data.student.display_name
        assert row[3] == ("incomplet" if data is students[1] else "complet")
        assert row[4] == f"{data.evaluation.total(grid)} / 24"
        assert row[5:] == [str(counts[code]) for code in ("TI", "I", "S", "TS")]
    lines = texts(doc)
    caption = lines[lines.index("Synthèse de la classe") + 2]
    assert caption == (
        "Total : évaluation globale, sur 24. TI, I, S, TS : nombre de critères "
        f"(sur {len(grid.criteria)}) que le tuteur a notés à ce niveau."
    )


def test_class_report__statistics__count_answers_per_level_and_name_weakest_and_strongest(
    grid: Grid, tmp_path: Path
) -> None:
    first, second = grid.criteria[0].id, grid.criteria[1].id
    students = []
    for i, code in enumerate(("TI", "I", "TI")):
        data = make_data(grid, i)
        data.evaluation.ratings.update({c.id: "S" for c in grid.criteria})
        data.evaluation.ratings.update({first: code, second: "TS"})
        students.append(data)
    students[2].evaluation.ratings[second] = None  # unrated: ignored
    doc = saved(build_class_report(grid, CONFIG, "BTS MUC 2A", students), tmp_path / "classe.docx")
    stats = next(t for t in doc.tables if t.rows[0].cells[0].text == "Critère")
    assert [c.text for c in stats.rows[0].cells] == ["Critère", "TI", "I", "S", "TS", "Moyenne"]
    rows = {row.cells[0].text: [c.text for c in row.cells[1:]] for row in stats.rows}
    assert rows[grid.criteria[0].label] == ["2", "1", "0", "0", "1,33"]
    assert rows[grid.criteria[1].label] == ["0", "0", "0", "2", "4,00"]
    lines = texts(doc)
    assert lines[lines.index("Statistiques par critère") + 1].startswith(
        "Part de chaque note dans chaque partie de la grille"
    )
    assert any(
        line.startswith("Nombre de stagiaires par note, pour chaque critère") for line in lines
    )
    weakest = lines.index("Les critères les moins bien réussis")
    strongest = lines.index("Les critères les mieux réussis")
    assert lines[weakest + 1].startswith(f"•\t{grid.criteria[0].label} (")
    assert lines[strongest + 1].startswith(f"•\t{grid.criteria[1].label} (")
    assert "moyenne 4,00 / 4, 2 réponses" in lines[strongest + 1]


def test_class_report__no_field_to_update_on_opening_and_the_cover_lists_the_parts(
    grid: Grid, tmp_path: Path
) -> None:
    late = replace(make_data(grid, 9).student, last_name="Zola")
    doc = saved(build_class_report(grid, CONFIG, "BTS MUC 2A", [make_data(grid)],
                                   without_return=[late]),
                tmp_path / "classe.docx")  # fmt: skip
    assert list(doc.element.body.iter(qn("w:instrText"))) == []  # no TOC (nor any) field
    assert list(doc.element.body.iter(qn("w:fldSimple"))) == []
    assert doc.settings.element.find(qn("w:updateFields")) is None
    cover = [[c.text for c in row.cells] for row in doc.tables[0].rows]
    assert cover[-1] == [
        "Contenu",
        "Synthèse de la classe · Évaluation globale · Statistiques par critère · Appréciations",
    ]
    shown = texts(doc)
    headings = [
        p.text for p in doc.paragraphs if p.style is not None and p.style.name == "Heading 1"
    ]
    assert headings == [
        "Synthèse de la classe", "Évaluation globale", "Statistiques par critère", "Appréciations"
    ]  # fmt: skip
    assert "Élèves sans retour du tuteur" in shown
    assert "2 élèves : 1 complet, 0 incomplet, 0 invalide, 1 sans retour du tuteur." in shown
    assert texts(doc)[:3] == ["Lycée Jean Moulin", "Bilan des stages — BTS MUC 2A",
                              grid.diploma]  # fmt: skip


def test_class_report__footer_numbers_pages_with_page_and_numpages_fields(
    grid: Grid, tmp_path: Path
) -> None:
    doc = saved(build_class_report(grid, CONFIG, "BTS MUC 2A", [make_data(grid)]),
                tmp_path / "classe.docx")  # fmt: skip
    footer = doc.sections[0].footer
    instructions = [i.text.strip() for i in footer._element.iter(qn("w:instrText"))]
    assert instructions == ["PAGE", "NUMPAGES"]
    assert footer.paragraphs[0].text.startswith("BTS MUC 2A — 2026-2027\tPage 1 / 1")
    assert doc.sections[0].different_first_page_header_footer  # bare cover page


def test_class_report__empty_class__still_builds(grid: Grid, tmp_path: Path) -> None:
    doc = saved(build_class_report(grid, CONFIG, "BTS MUC 2A", []), tmp_path / "classe.docx")
    assert "Aucune réponse notée : pas de statistique par critère." in texts(doc)


def test_restyled_template__its_styles_and_header_are_honoured(grid: Grid, tmp_path: Path) -> None:
    template = tmp_path / "modele_rapport.docx"
    write_default_template(template)
    teacher = docx.Document(str(template))
    teacher.styles["Normal"].font.size = Pt(13)
    teacher.sections[0].header.paragraphs[0].text = "Logo — {etablissement} — {annee_scolaire}"
    teacher.save(str(template))
    for doc in (
        build_student_report(grid, CONFIG, make_data(grid), template),
        build_class_report(grid, CONFIG, "BTS MUC 2A", [make_data(grid)], template),
    ):
        reopened = saved(doc, tmp_path / "out.docx")
        assert reopened.styles["Normal"].font.size == Pt(13)
        header = reopened.sections[0].header.paragraphs[0].text
        assert header == "Logo — Lycée Jean Moulin — 2026-2027"
        assert "Modèle de rapport" not in texts(reopened)  # the template's body is dropped


def test_template__missing_file__falls_back_to_the_default(grid: Grid, tmp_path: Path) -> None:
    doc = build_student_report(grid, CONFIG, make_data(grid), tmp_path / "absent.docx")
    reopened = saved(doc, tmp_path / "bilan.docx")
    assert reopened.styles["Normal"].font.name == "Arial"


def test_template__not_a_word_file__raises_a_french_report_error(
    grid: Grid, tmp_path: Path
) -> None:
    template = tmp_path / "modele_rapport.docx"
    template.write_text("pas un document Word")
    with pytest.raises(ReportError, match=r"Modèle de rapport .* illisible"):
        build_student_report(grid, CONFIG, make_data(grid), template)


def test_default_template__is_a4_in_arial_with_french_language(tmp_path: Path) -> None:
    write_default_template(tmp_path / "modele_rapport.docx")
    doc = docx.Document(str(tmp_path / "modele_rapport.docx"))
    assert round(doc.sections[0].page_width.cm, 1) == 21.0
    fonts = {f.get(qn("w:ascii")) for f in doc.styles.element.iter(qn("w:rFonts"))}
    assert fonts == {"Arial"}
    lang = doc.styles.element.find(f"{qn('w:docDefaults')}//{qn('w:lang')}")
    assert lang.get(qn("w:val")) == "fr-FR"


def problem_for(grid: Grid, item_id: str, note: str) -> str:
    """A problem as `validation.validate` words it: « Section › Libellé (cellule D12) : … »."""
    layout = plan_layout(grid)
    for section in grid.sections:
        for criterion in section.criteria:
            if criterion.id == item_id:
                cell = layout.criteria[item_id].cell
                return f"{section.title} › {criterion.label} (cellule {cell}) : {note}."
    ge = grid.global_evaluation
    dimension = next(d for d in ge.dimensions if d.id == item_id)
    return f"{ge.title} › {dimension.label} (cellule {layout.dimensions[item_id].cell}) : {note}."


def header_texts(doc: Document) -> list[str]:
    """The text of every header a page of `doc` can show."""
    found = []
    for section in doc.sections:
        headers = [section.header]
        if section.different_first_page_header_footer:
            headers.append(section.first_page_header)
        found.extend("\n".join(p.text for p in h.paragraphs) for h in headers)
    return found


@pytest.mark.parametrize(
    ("status", "banner"),
    [
        ("incomplete", "BILAN INCOMPLET — grille du tuteur incomplète, bilan non définitif"),
        ("invalid", "BILAN INVALIDE — réponses non valables, bilan inutilisable en l’état"),
    ],
)
def test_student_report__not_complete__says_so_in_the_header_of_every_page(
    grid: Grid, tmp_path: Path, status: str, banner: str
) -> None:
    doc = saved(build_student_report(grid, CONFIG, make_data(grid, status=status, missing=1)),
                tmp_path / "bilan.docx")  # fmt: skip
    headers = header_texts(doc)
    assert headers and all(h.startswith(f"{banner}\n") for h in headers)
    first = doc.sections[0].header.paragraphs[0]
    assert first.runs[0].bold and str(first.runs[0].font.color.rgb) in ("7F6000", "C00000")


def test_student_report__complete__no_banner_in_the_header(grid: Grid, tmp_path: Path) -> None:
    doc = saved(build_student_report(grid, CONFIG, make_data(grid)), tmp_path / "bilan.docx")
    assert header_texts(doc) == ["Lycée Jean Moulin\tBilan de stage — ÉLÈVE00 Léa"]


def test_report_file_suffix__names_an_incomplete_or_invalid_bilan() -> None:
    assert [report_file_suffix(s) for s in ("complete", "incomplete", "invalid")] == [
        "",
        "_INCOMPLET",
        "_INVALIDE",
    ]


def test_student_report__missing_and_invalid_answers__say_so_in_their_own_rows(
    grid: Grid, tmp_path: Path
) -> None:
    first, second, third = grid.criteria[:3]
    dims = grid.global_evaluation.dimensions
    problems = (
        problem_for(grid, first.id, "non renseigné"),
        problem_for(grid, second.id, "« Bien » n'est pas une note de l'échelle (TI, I, S, TS)"),
        problem_for(grid, dims[0].id, "non renseigné"),
        problem_for(grid, dims[1].id, "« 9 » n'est pas un niveau possible (0, 1, 2, 3, 4)"),
    )
    data = make_data(grid, status="invalid", problems=problems)
    data.evaluation.ratings.update({first.id: None, second.id: None})
    data.evaluation.levels.update({dims[0].id: None, dims[1].id: None})
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    rows = {row[0]: row[1:] for row in criteria_tables(doc)[0]}
    assert rows[first.label] == ["non renseigné"] * 4  # one cell across TI, I, S, TS
    assert rows[second.label] == ["« Bien » n'est pas une note de l'échelle (TI, I, S, TS)"] * 4
    assert rows[third.label].count("X") == 1  # the others are untouched
    global_rows = {
        row.cells[0].text: [c.text for c in row.cells[1:]]
        for row in tables(doc)[-3].rows  # the global evaluation, before the two boxes
    }
    assert global_rows[dims[0].label] == ["—", "non renseigné"]
    assert global_rows[dims[1].label] == ["—", "« 9 » n'est pas un niveau possible (0, 1, 2, 3, 4)"]
    total = sum(d.values[-2] for d in dims[2:])
    assert f"Total partiel : {total} / 24 — 1 dimension manquante, 1 non valable" in texts(doc)


def test_student_report__partial_total__says_how_many_dimensions_are_missing(
    grid: Grid, tmp_path: Path
) -> None:
    data = make_data(grid, status="incomplete")
    dims = grid.global_evaluation.dimensions
    data.evaluation.levels.update({dims[0].id: None, dims[3].id: None})
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    total = sum(d.values[-2] for i, d in enumerate(dims) if i not in (0, 3))
    assert f"Total partiel : {total} / 24 — 2 dimensions manquantes" in texts(doc)


def _luminance(color: str) -> float:
    """WCAG relative luminance of an RRGGBB colour."""

    def channel(c: int) -> float:
        c_ = c / 255
        return c_ / 12.92 if c_ <= 0.03928 else ((c_ + 0.055) / 1.055) ** 2.4

    r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def test_both_reports__text_colours_are_dark_enough_for_a_photocopy(
    grid: Grid, tmp_path: Path
) -> None:
    students = [make_data(grid, i, status=s, missing=i)
                for i, s in enumerate(("complete", "incomplete", "invalid"))]  # fmt: skip
    students[2] = replace(students[2], to_confirm=True)
    for doc in (
        build_class_report(grid, CONFIG, "BTS MUC 2A", students),
        *(build_student_report(grid, CONFIG, d) for d in students),
    ):
        parts = [doc.element]
        parts += [s.header._element for s in doc.sections] + [
            s.footer._element for s in doc.sections
        ]
        used = {e.get(qn("w:val")) for part in parts for e in part.iter(qn("w:pStyle"))}
        used.add(doc.styles["Normal"].style_id)
        for style_id in list(used):  # and the styles they are based on
            style = doc.styles.element.get_by_id(style_id)
            while style is not None:
                used.add(style.styleId)
                style = style.base_style
        parts += [doc.styles.element.get_by_id(style_id) for style_id in used]
        colours = {c.get(qn("w:val")) for part in parts for c in part.iter(qn("w:color"))}
        colours.discard("auto")
        assert len(colours) >= 3, "hardly any coloured text: the test would prove nothing"
        # contrast ≥ 4.5:1 on white (WCAG AA): (1 + 0.05) / (L + 0.05) ≥ 4.5 ⇔ L ≤ 0.183
        assert {c for c in colours if _luminance(c) > 0.183} == set()


def test_class_report__global_evaluation_per_dimension_and_the_totals(
    grid: Grid, tmp_path: Path
) -> None:
    dims = grid.global_evaluation.dimensions
    students = [make_data(grid, i) for i in range(4)]
    for data, level in zip(students, (0, 1, 3, 3), strict=True):
        data.evaluation.levels[dims[0].id] = level
    students[3].evaluation.levels[dims[1].id] = None  # partial: left out of the totals
    doc = saved(build_class_report(grid, CONFIG, "BTS MUC 2A", students), tmp_path / "classe.docx")
    table = next(t for t in doc.tables if t.rows[0].cells[0].text == "Dimension")
    header = [c.text for c in table.rows[0].cells]
    values = sorted({v for d in dims for v in d.values})
    assert header == ["Dimension", *(f"Niv. {v}" for v in values), "Sans niveau", "Moyenne"]
    rows = {row.cells[0].text: [c.text for c in row.cells[1:]] for row in table.rows[1:]}
    expected = ["1" if v in (0, 1) else "2" if v == 3 else "·" if v not in dims[0].values else "0"
                for v in values]  # fmt: skip
    assert rows[dims[0].label] == [*expected, "0", f"1,75 / {dims[0].maximum}"]
    assert rows[dims[1].label][-2] == "1"  # one student without a level
    totals = sorted(d.evaluation.total(grid) for d in students[:3])
    median = totals[1]
    lines = texts(doc)
    assert (
        f"Sur les 3 stagiaires dont l’évaluation globale est complète : minimum {totals[0]}, "
        f"médiane {median}, maximum {totals[2]}, moyenne "
        f"{str(round(sum(totals) / 3, 2)).rstrip('0').rstrip('.').replace('.', ',')} (sur 24). "
        "Total partiel, non compté : 1 stagiaire."
    ) in lines
    summary = next(t for t in doc.tables if t.rows[0].cells[0].text == "Élève")
    assert summary.rows[4].cells[4].text.endswith(" / 24 (partiel)")


def test_class_report__charts_are_png_pictures_in_grey_levels_only(
    grid: Grid, tmp_path: Path
) -> None:
    students = [make_data(grid, i) for i in range(6)]
    doc = saved(build_class_report(grid, CONFIG, "BTS MUC 2A", students), tmp_path / "classe.docx")
    blips = [b.get(qn("r:embed")) for b in doc.element.body.iter(qn("a:blip"))]
    assert len(blips) == 2  # the totals, the levels per section
    for rel_id in blips:
        part = doc.part.related_parts[rel_id]
        assert part.content_type == "image/png"
        pixels = matplotlib.image.imread(io.BytesIO(part.blob), format="png")
        assert pixels.shape[0] > 300 and pixels.shape[1] > 1000  # sharp enough to print
        # one grey channel, no colour: what the chart says survives a greyscale printer
        assert pixels.ndim == 2
        assert len({round(float(v), 1) for v in pixels.ravel()[::97]}) >= 3


def test_class_report__no_answer_at_all__no_chart_and_says_so(grid: Grid, tmp_path: Path) -> None:
    doc = saved(build_class_report(grid, CONFIG, "BTS MUC 2A", []), tmp_path / "classe.docx")
    assert list(doc.element.body.iter(qn("a:blip"))) == []
    assert "Aucune évaluation globale complète : pas de statistique du total." in texts(doc)


def to_pdf_and_png(docx_path: Path, tmp_path: Path) -> tuple[Path, Path | None]:
    """Convert with LibreOffice; render page 1 with pdftoppm when it is installed."""
    subprocess.run(
        ["soffice", "--headless", "--norestore",
         f"-env:UserInstallation=file://{tmp_path}/profile",
         "--convert-to", "pdf", "--outdir", str(tmp_path), str(docx_path)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pdf = docx_path.with_suffix(".pdf")
    if shutil.which("pdftoppm") is None:
        return pdf, None
    prefix = tmp_path / docx_path.stem
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf), str(prefix)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    return pdf, next(tmp_path.glob(f"{docx_path.stem}*.png"))


@pytest.mark.soffice
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) absent")
def test_both_reports__convert_to_pdf_with_libreoffice(grid: Grid, tmp_path: Path) -> None:
    students = [make_data(grid, i, status=s) for i, s in enumerate(("complete", "invalid"))]
    student_path, class_path = tmp_path / "bilan.docx", tmp_path / "classe.docx"
    save_document(build_student_report(grid, CONFIG, students[1]), student_path)
    save_document(build_class_report(grid, CONFIG, "BTS MUC 2A", students), class_path)
    for path in (student_path, class_path):
        pdf, png = to_pdf_and_png(path, tmp_path)
        assert pdf.stat().st_size > 0
        assert png is None or png.stat().st_size > 0


def pdf_pages(pdf: Path) -> list[str]:
    """The text of each page of `pdf` (pdftotext, reading order)."""
    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return [page for page in text.split("\f") if page.strip()]


needs_pdf_tools = [
    pytest.mark.soffice,
    pytest.mark.skipif(
        shutil.which("soffice") is None or shutil.which("pdftotext") is None,
        reason="LibreOffice (soffice) ou pdftotext absent",
    ),
]


@needs_pdf_tools[0]
@needs_pdf_tools[1]
def test_student_report_pdf__banner_on_every_page_and_the_signature_never_alone(
    grid: Grid, tmp_path: Path
) -> None:
    """Tutor appreciations of many lengths: on every page of every PDF the banner; the page
    with the tutor's signature also holds the appreciation it signs (today's bilan left the
    date and signature with the team's box, on the page after the appreciation)."""
    words = "Stagiaire sérieux, impliqué et curieux, qui a su prendre sa place dans l’équipe. "
    lengths = (0, 4, 8, 12, 16, 24, 60)  # 60: longer than a page, the box must split
    sources = []
    for n in lengths:
        text = (words * n).strip() + (" FIN." if n else "")
        data = make_data(grid, status="incomplete", missing=1, appreciation=text, team="Bien.")
        path = tmp_path / f"bilan_{n:02d}.docx"
        save_document(build_student_report(grid, CONFIG, data), path)
        sources.append(path)
    pdfs = office.convert_all(sources, "pdf", tmp_path)
    for n, pdf in zip(lengths, pdfs, strict=True):
        pages = pdf_pages(pdf)
        assert len(pages) >= 2
        for page in pages:
            assert "BILAN INCOMPLET — grille du tuteur incomplète, bilan non définitif" in page
        [signed] = [p for p in pages if "Signature du tuteur : Paul Tuteur" in p]
        assert ("FIN." if n else "non renseignée par le tuteur") in signed
        if n < 60:  # shorter than a page: the whole appreciation, under its heading
            assert grid.closing.tutor_appreciation in signed
            assert signed.count("Stagiaire sérieux") == n
        [visa] = [p for p in pages if "Visa du professeur : Claire Martin" in p]
        assert grid.closing.team_appreciation in visa and "Bien." in visa
        if n <= 24:  # both appreciations short: kept on one page, the visa never alone
            assert visa == signed, n
        last = pages[-1].split("\n")
        assert len([line for line in last if line.strip()]) > 6  # never a near-empty last page


@needs_pdf_tools[0]
@needs_pdf_tools[1]
def test_class_report_pdf__charts_and_tables_in_grid_order(grid: Grid, tmp_path: Path) -> None:
    students = [make_data(grid, i) for i in range(8)]
    path = tmp_path / "classe.docx"
    save_document(build_class_report(grid, CONFIG, "BTS MUC 2A", students), path)
    [pdf] = office.convert_all([path], "pdf", tmp_path)
    pages = pdf_pages(pdf)
    summary = next(p for p in pages if "Nombre de stagiaires par total" in p)
    assert "Synthèse de la classe" in summary
    assert "Sur les 8 stagiaires dont l’évaluation globale est complète" in summary
    assert "Nombre de stagiaires par total" in summary
    assert not any("Sommaire" in p for p in pages)
    listed = subprocess.run(
        ["pdfimages", "-list", str(pdf)], check=True, capture_output=True, text=True
    ).stdout.splitlines()[2:]
    images = [line.split() for line in listed if line.split()[2] == "image"]
    assert len(images) == 2  # both charts reached the PDF…
    assert {image[5] for image in images} == {"gray"}  # … in grey levels only


def test_report_command__real_return__missing_and_invalid_answers_in_their_rows(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    """Through the real CLI: a tutor leaves a criterion empty, types « Bien » in another and
    « 9 » as a level; the bilan's rows say so, in the words of the validation."""
    row = ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example",
           "05/01/2026", "27/02/2026"]  # fmt: skip
    root = make_campaign(tmp_path / "campagne", [row], write_csv)
    first, second = GRID.criteria[:2]
    dimension = GRID.global_evaluation.dimensions[1]
    answers = complete_answers()
    answers.update({first.id: None, second.id: "Bien", dimension.id: 9, "date": date(2026, 2, 20)})
    fill(workbook_of(root, "Abadie"), tmp_path / "retour" / "abadie.xlsx", answers)
    assert run(root, "collect", str(tmp_path / "retour")).exit_code == 0
    result = run(root, "report")
    assert result.exit_code == 0, result.output
    [path] = (root / "output" / "rapports").rglob("bilan_ABADIE_*.docx")
    doc = docx.Document(str(path))
    rows = {r[0]: r[1:] for r in criteria_tables(doc)[0]}
    assert rows[first.label] == ["non renseigné"] * 4
    assert rows[second.label] == ["« Bien » n'est pas une note de l'échelle (TI, I, S, TS)"] * 4
    allowed = ", ".join(str(v) for v in dimension.values)
    assert f"« 9 » n'est pas un niveau possible ({allowed})" in texts(doc)
    total = sum(d.values[-1] for d in GRID.global_evaluation.dimensions if d is not dimension)
    assert f"Total partiel : {total} / 24 — 1 dimension non valable" in texts(doc)
    assert all(h.startswith("BILAN INVALIDE") for h in header_texts(doc))

"""Word reports: real .docx files saved, reopened with python-docx and read back."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from datetime import date
from pathlib import Path

import docx
import pytest
from docx.document import Document
from docx.oxml.ns import qn
from docx.shared import Pt
from docx.text.paragraph import Paragraph

from pipeline.grid import Grid, load_grid
from pipeline.report import (
    ReportError,
    StudentReportData,
    build_class_report,
    build_student_report,
    save_document,
    write_default_template,
)
from pipeline.roster import Student
from pipeline.settings import CampaignConfig, SmtpSettings
from pipeline.validation import Evaluation

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


def test_student_report__team_appreciation__written_in_its_framed_box(
    grid: Grid, tmp_path: Path
) -> None:
    data = make_data(grid, team="Très bon stage.\nÀ valoriser à l'oral.")
    doc = saved(build_student_report(grid, CONFIG, data), tmp_path / "bilan.docx")
    boxes = [t for t in doc.tables if len(t.columns) == 1 and len(t.rows) == 1]
    assert [b.cell(0, 0).text for b in boxes[-2:]] == [APPRECIATION, data.team_appreciation]


def test_student_report__no_team_appreciation__leaves_an_empty_framed_box_to_write_in(
    grid: Grid, tmp_path: Path
) -> None:
    doc = saved(build_student_report(grid, CONFIG, make_data(grid)), tmp_path / "bilan.docx")
    box = [t for t in doc.tables if len(t.columns) == 1 and len(t.rows) == 1][-1]
    assert box.cell(0, 0).text == ""
    assert box.rows[0].height is not None and box.rows[0].height.cm > 3
    borders = box._tbl.tblPr.find(qn("w:tblBorders"))
    assert {b.get(qn("w:val")) for b in borders} == {"single"}


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
    assert "Signature du tuteur : Paul Tuteur" in texts(doc)
    header = doc.sections[0].header.paragraphs[0].text
    assert header == "Lycée Jean Moulin\tBilan de stage — ÉLÈVE00 Léa"


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
    assert header == ["Élève", "Entreprise", "Tuteur", "Statut", "Total", "TS", "S", "I", "TI"]
    rows = [[c.text for c in row.cells] for row in summary.rows[1:]]
    assert len(rows) == 4
    for data, row in zip(students, rows, strict=True):
        counts = data.evaluation.rating_counts(grid)
        assert row[0] == data.student.display_name
        assert row[3] == ("incomplet" if data is students[1] else "complet")
        assert row[4] == f"{data.evaluation.total(grid)} / 24"
        assert row[5:] == [str(counts[code]) for code in ("TS", "S", "I", "TI")]


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
    stats = next(t for t in doc.tables if t.rows[0].cells[-1].text == "Moyenne")
    rows = {row.cells[0].text: [c.text for c in row.cells[1:]] for row in stats.rows}
    assert rows[grid.criteria[0].label] == ["2", "1", "0", "0", "1,33"]
    assert rows[grid.criteria[1].label] == ["0", "0", "0", "2", "4,00"]
    lines = texts(doc)
    # the last occurrences: the first ones are the table of contents
    weakest = max(
        i for i, line in enumerate(lines) if line == "Les critères les moins bien réussis"
    )
    strongest = max(i for i, line in enumerate(lines) if line == "Les critères les mieux réussis")
    assert lines[weakest + 1].startswith(f"•\t{grid.criteria[0].label} (")
    assert lines[strongest + 1].startswith(f"•\t{grid.criteria[1].label} (")
    assert "moyenne 4,00 / 4, 2 réponses" in lines[strongest + 1]


def test_class_report__has_a_toc_field_and_asks_word_to_update_fields(
    grid: Grid, tmp_path: Path
) -> None:
    late = replace(make_data(grid, 9).student, last_name="Zola")
    doc = saved(build_class_report(grid, CONFIG, "BTS MUC 2A", [make_data(grid)],
                                   without_return=[late]),
                tmp_path / "classe.docx")  # fmt: skip
    instructions = [i.text for i in doc.element.body.iter(qn("w:instrText"))]
    assert ' TOC \\o "1-3" \\h \\z \\u ' in instructions
    shown = texts(doc)  # the field's result, shown before Word updates it (and in PDFs)
    start = shown.index("Sommaire") + 1
    assert shown[start : start + 6] == [
        "Synthèse de la classe",
        "Statistiques par critère",
        "Les critères les moins bien réussis",
        "Les critères les mieux réussis",
        "Appréciations",
        "ÉLÈVE00 Léa — Agence Horizon 0",
    ]
    assert "Élèves sans retour du tuteur" in shown
    assert "2 élèves : 1 complet, 0 incomplet, 0 invalide, 1 sans retour du tuteur." in " ".join(
        shown
    )
    update = doc.settings.element.find(qn("w:updateFields"))
    assert update is not None and update.get(qn("w:val")) == "true"
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

"""Grids a teacher writes in a spreadsheet: export, check, use, keep stable."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
import tomllib
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import docx
import openpyxl
import pytest

from pipeline.errors import GridError
from pipeline.grid import (
    DEFAULT_GRID,
    GRIDS_DIR,
    Grid,
    grid_to_toml,
    load_grid,
    parse_grid,
    parse_grid_text,
)
from pipeline.grid_sheet import read_grid_workbook, write_grid_workbook
from pipeline.workbook import INSTRUCTIONS_SHEET, LISTS_SHEET, META_SHEET
from pipeline.xlsx import XlsxPackage
from tests.hostile import MiB, lie_about_size, many_entries, zip_bytes
from tests.tutors import ROSTER_HEADER, complete_answers, fill, run, status_json, workbook_of

MUC = load_grid()
NDRC_FILE = GRIDS_DIR / "bts_ndrc_stage.toml"
NDRC = load_grid(NDRC_FILE)
SHEETS = [
    "LISEZMOI",
    "Grille",
    "Échelle",
    "Sections",
    "Critères",
    "Compétences",
    "Référentiel",
    "Évaluation globale",
    "Dimensions",
    "Conclusion",
]
ROWS = [
    ["Abadie", "Chloé", "NDRC 1", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Bernard", "Yanis", "NDRC 1", "Banque Solvéa", "Marc Dubreuil", "md@solvea.example", "05/01/2026", "27/02/2026"],
    ["Chevallier", "Inès", "NDRC 1", "Assurances B", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip


def _export(tmp_path: Path, grid: str = "bts_ndrc_stage", name: str = "grille.xlsx") -> Path:
    target = tmp_path / name
    result = run(tmp_path / "hors_campagne", "grid", "export", "--grid", grid, str(target))
    assert result.exit_code == 0, result.output
    return target


def _edit(path: Path, change: Callable[[Any], None]) -> Path:
    """What a teacher does in Excel: open the grid spreadsheet, change it, save."""
    workbook = openpyxl.load_workbook(path)
    change(workbook)
    workbook.save(path)
    stat = path.stat()  # a later second for the loader's cache, as a real edit would be
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    return path


def _campaign(tmp_path: Path, write_csv: Callable[..., Path], grid_file: Path) -> Path:
    root = tmp_path / "campagne"
    init = run(root, "init", "--school", "Lycée Test", "--teacher-email", "prof@lycee.example")
    assert init.exit_code == 0, init.output
    roster = write_csv(tmp_path / "liste.csv", [ROSTER_HEADER, *ROWS])
    result = run(root, "generate", "--roster", str(roster), "--grid", str(grid_file))
    assert result.exit_code == 0, result.output
    return root


# ------------------------------------------------------------------ round trips


def test_second_shipped_grid__deliberately_unlike_the_muc_one() -> None:
    assert NDRC.scale_codes == ("NA", "ECA", "A") != MUC.scale_codes
    assert len(NDRC.sections) == 5 > len(MUC.sections)
    assert [d.values for d in NDRC.global_evaluation.dimensions] == [
        (0, 2, 4),
        (0, 1, 2, 3),
        (0, 1, 3, 4),
        (0, 1, 2, 3, 4, 5),
    ]
    assert NDRC.global_evaluation.maximum == 16
    assert NDRC.section("dossier").rater == "Tuteur, avec le professeur référent"
    assert NDRC.global_evaluation.points == ()


@pytest.mark.parametrize("grid", [MUC, NDRC], ids=["muc", "ndrc"])
def test_round_trip__toml_to_spreadsheet_to_toml__same_grid(grid: Grid) -> None:
    data = write_grid_workbook(grid)
    result = read_grid_workbook(data, "grille.xlsx")

    assert result.problems == []
    assert result.grid == grid  # every id, text, heading, block and level
    assert grid_to_toml(result.grid) == grid_to_toml(grid)
    assert parse_grid_text(grid_to_toml(grid), "base") == grid


def test_round_trip__texts_toml_finds_awkward__quotes_backslashes_tabs_triple_quotes() -> None:
    data = tomllib.loads(NDRC_FILE.read_text(encoding="utf-8"))
    data["sections"][0]["criteria"][0]["label"] = 'Le « bon » "chemin" C:\\dossier =SOMME(A1)'
    block = data["sections"][1]["blocks"][0]
    block["activities"] = 'Ligne 1 avec """trois guillemets"""\nLigne\t2 finit par "\n\\'
    block["resources"] = "Fin par une barre \\"
    grid = parse_grid(data, "bizarre.toml")

    assert parse_grid_text(grid_to_toml(grid), "base") == grid
    assert read_grid_workbook(write_grid_workbook(grid), "bizarre.xlsx").grid == grid


@pytest.mark.soffice
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) absent")
def test_round_trip__saved_again_by_libreoffice__reads_the_same(tmp_path: Path) -> None:
    sources = [_export(tmp_path, "bts_muc_stage", "muc.xlsx"), _export(tmp_path)]
    out = tmp_path / "libreoffice"
    subprocess.run(
        ["soffice", "--headless", "--norestore",
         f"-env:UserInstallation={(tmp_path / 'profil').as_uri()}",
         "--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", str(out),
         *map(str, sources)],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip

    for source, grid in zip(sources, (MUC, NDRC), strict=True):
        resaved = out / source.name
        assert resaved.read_bytes() != source.read_bytes()
        assert load_grid(resaved) == grid


def _untidy_ndrc(path: Path) -> Path:
    """The NDRC grid typed by hand: sheet names and headers in other cases and without
    accents, columns in another order, stray spaces, a title row, blank rows, sub-headings
    written once, levels as text or in any order, a column of remarks."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "grille"
    ws.append(["Ma grille NDRC, tapée à la main"])
    ws.append(["  RUBRIQUE ", "texte :", "Remarques"])
    ws.append(["identifiant", f"  {NDRC.id} "])
    ws.append(["VERSION", 1, "un nombre, pas un texte"])
    ws.append(["titre", "Évaluation  du stage de  première année en entreprise "])
    ws.append(["diplome", NDRC.diploma])
    ws.append([])
    ws.append(["Titre des objectifs", NDRC.objectives_title])
    for item in NDRC.objectives:
        ws.append(["objectif", f" {item}  "])
    ws.append(["introduction des competences", NDRC.competencies_intro])

    ws = wb.create_sheet("ECHELLE")
    ws.append(["libelle", " code "])
    for level in NDRC.scale:
        ws.append([f"{level.label} ", f" {level.code}"])

    ws = wb.create_sheet("sections")
    ws.append(["section", "feuille", "titre", "titre des criteres", "notée  par", "Remarques"])
    for s in NDRC.sections:
        ws.append([s.id, s.sheet, s.title, s.criteria_title, f"  {s.rater}", "à revoir"])

    ws = wb.create_sheet("criteres")
    ws.append(["SECTION", "Identifiant", "Sous titre", "critere"])
    previous = ""
    for c in NDRC.criteria:
        heading = c.heading if c.heading != previous else None  # written once per group
        previous = c.heading
        ws.append([c.section_id, c.id, heading, c.label.replace(" ", "  ", 1)])
        if c.id == "digital.crm":
            ws.append([None, None, None, "   "])

    ws = wb.create_sheet("Competences")
    ws.append(["partie", "code", "libellé"])
    for c in NDRC.competencies:
        ws.append(["Objectifs ", c.code, c.label])
    for s in NDRC.sections:
        for c in s.competencies:
            ws.append([s.id, c.code, c.label])

    ws = wb.create_sheet("referentiel")
    ws.append(["section", "referentiel", "activites", "moyens"])
    for s in NDRC.sections:
        for b in s.blocks:
            crlf = b.activities.replace("\n", "  \r\n")
            ws.append([s.id, b.referential + "\n", crlf, b.resources or None])

    ws = wb.create_sheet("evaluation globale")
    ws.append(["Rubrique", "Texte"])
    ge = NDRC.global_evaluation
    for key, value in (("feuille", ge.sheet), ("TITRE", ge.title), ("Introduction", ge.intro)):
        ws.append([key, value])
    ws.append(["notee par", ge.rater])

    ws = wb.create_sheet("DIMENSIONS")
    ws.append(["dimension", "intitule", "niveau", "descripteur"])
    for d in ge.dimensions:
        for index, level in enumerate(reversed(d.levels)):
            value: Any = str(level.value) if index % 2 else float(level.value)
            ws.append([d.id, d.label if index == 0 else None, value, level.text])

    ws = wb.create_sheet("conclusion")
    ws.append(["rubrique", "texte"])
    c = NDRC.closing
    ws.append(["feuille", c.sheet])
    ws.append(["Appréciation du tuteur", c.tutor_appreciation])
    ws.append(["Appréciation de l’équipe", c.team_appreciation])
    ws.append(["DATE", c.date])
    ws.append(["signature", c.signature])
    wb.save(path)
    return path


def test_untidy_typed_grid__spacing_case_accents_order__reads_the_same(tmp_path: Path) -> None:
    path = _untidy_ndrc(tmp_path / "tapée.xlsx")

    result = run(tmp_path, "grid", "check", str(path))

    assert result.exit_code == 0, result.output
    assert load_grid(path) == NDRC


# ------------------------------------------------------------------ export


def test_export__french_sheets_and_headers__lisezmoi_explains_every_column(
    tmp_path: Path,
) -> None:
    target = tmp_path / "ma_grille.xlsx"
    result = run(tmp_path, "grid", "export", str(target))

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "Grille « bts-muc-stage-acrc » version 1 — BTS Management des Unités Commerciales "
        f"(4 sections, 44 critères) écrite dans « {target} »."
    )
    wb = openpyxl.load_workbook(target)
    assert wb.sheetnames == SHEETS
    headers = {name: [c.value for c in wb[name][1]] for name in SHEETS[1:]}
    assert headers["Critères"] == ["Section", "Sous-titre", "Identifiant", "Critère"]
    assert headers["Dimensions"] == ["Dimension", "Intitulé", "Niveau", "Descripteur"]
    assert headers["Sections"] == ["Section", "Feuille", "Titre", "Titre des critères", "Notée par"]
    assert headers["Grille"] == headers["Conclusion"] == ["Rubrique", "Texte"]
    (row,) = [
        r for r in wb["Critères"].iter_rows(min_row=2) if r[2].value == "clientele.decouverte"
    ]
    assert [c.value for c in row] == [
        "clientele",
        "Déroulement de l’entretien, du rendez-vous",
        "clientele.decouverte",
        "Découverte",
    ]
    assert [c.value for c in wb["Dimensions"][8]] == [
        "responsabilites",
        "Sens des responsabilités",
        3,
        "S’acquitte correctement des responsabilités confiées",
    ]
    readme = wb["LISEZMOI"]
    explained = set()
    current = ""
    for row in readme.iter_rows(min_row=2, values_only=True):
        current = row[0] if row[0] in SHEETS else current
        if row[2] in ("oui", "non"):
            explained.add((current, str(row[1]).removesuffix(" (répétable)")))
    for name in SHEETS[1:]:
        keys = {str(r[0].value) for r in wb[name].iter_rows(min_row=2)}
        named = headers[name] if headers[name] != ["Rubrique", "Texte"] else keys
        for header in named:
            assert (name, header) in explained, (name, header)
    text = "\n".join(str(c.value) for row in readme.iter_rows() for c in row if c.value)
    assert "grille grid check ma_grille.xlsx" in text
    assert "clientele.ecoute_empathie" in text  # the MUC grid is the worked example


def test_export__never_overwrites_without_force(tmp_path: Path) -> None:
    target = tmp_path / "grille.xlsx"
    target.write_bytes(b"le travail de la professeure")

    refused = run(tmp_path, "grid", "export", str(target))

    assert refused.exit_code == 2
    assert refused.output == (
        f"Erreur : « {target} » existe déjà : choisissez un autre nom, ou ajoutez --force "
        "pour le remplacer.\n"
    )
    assert target.read_bytes() == b"le travail de la professeure"
    forced = run(tmp_path, "grid", "export", "--grid", "bts-ndrc-stage-1a", "--force", str(target))
    assert forced.exit_code == 0, forced.output
    assert load_grid(target) == NDRC
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_export__to_toml__the_shipped_grids_format(tmp_path: Path) -> None:
    source = _export(tmp_path)
    result = run(tmp_path, "grid", "export", "--grid", str(source), str(tmp_path / "g.toml"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g.toml").read_text(encoding="utf-8") == grid_to_toml(NDRC)
    assert load_grid(tmp_path / "g.toml") == NDRC


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["grille.ods"],
            "Erreur : « grille.ods » : la grille s'écrit dans un tableur Excel (.xlsx), ou pour "
            "un développeur dans un fichier .toml.\n",
        ),
        (
            ["--grid", "bts_sio", "g.xlsx"],
            "Erreur : grille « bts_sio » introuvable : ce n'est ni un fichier, ni une grille "
            "fournie (bts_muc_stage, bts_ndrc_stage), ni une grille de la campagne. Voyez "
            "« grille grid list ».\n",
        ),
    ],
    ids=["not_xlsx", "unknown_grid"],
)
def test_export__bad_usage__french_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run(tmp_path, "grid", "export", *args)
    assert (result.exit_code, result.output) == (2, message)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ check


def test_check__every_problem_at_once__with_sheet_and_cell__exit_2(tmp_path: Path) -> None:
    path = _export(tmp_path, name="n.xlsx")

    def damage(wb: Any) -> None:
        wb["Grille"]["B3"] = None  # Version
        wb["Échelle"].delete_rows(2, 3)  # no level left
        wb["Sections"]["B3"] = "Prospection [vente]"
        wb["Sections"]["B4"] = "Une feuille au nom beaucoup trop long pour Excel"
        wb["Sections"]["B5"] = "instructions"  # every tutor's workbook has one
        wb["Critères"]["A7"] = "prospektion"
        wb["Critères"]["C13"] = "digital.crm"  # the id of the row above
        wb["Critères"]["C14"] = "Digital E-réputation"
        wb["Dimensions"]["C10"] = "trois"

    result = run(tmp_path, "grid", "check", str(_edit(path, damage)))

    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Grille « n.xlsx » : 9 problèmes à corriger, puis relancez « grille grid check » :",
        "  - feuille « Grille », cellule B3 : « Version » n'est pas rempli.",
        "  - feuille « Échelle » : l'échelle n'a aucune note : une ligne par note, de la plus "
        "faible à la meilleure.",
        "  - feuille « Sections », cellule B3 : nom de feuille « Prospection [vente] » refusé "
        "par Excel ou par grille (caractère interdit [ ]) ; 31 caractères au plus, sans "
        "[ ] : * ? / \\.",
        "  - feuille « Sections », cellule B4 : nom de feuille « Une feuille au nom beaucoup "
        "trop long pour Excel » refusé par Excel ou par grille (48 caractères, 31 au plus) ; "
        "31 caractères au plus, sans [ ] : * ? / \\.",
        "  - feuille « Sections », cellule B5 : nom de feuille « instructions » refusé par "
        "Excel ou par grille (nom réservé par les classeurs de grille) ; 31 caractères au "
        "plus, sans [ ] : * ? / \\.",
        "  - feuille « Critères », cellule A7 : section « prospektion » inconnue : elle n'est "
        "pas dans la feuille « Sections » (sections : posture, prospection, digital, reseaux, "
        "dossier).",
        "  - feuille « Critères », cellule C13 : l'identifiant « digital.crm » est déjà celui "
        "du critère en C12 : chaque critère a le sien.",
        "  - feuille « Critères », cellule C14 : identifiant de critère « Digital E-réputation » "
        "invalide : minuscules sans accent, chiffres, point, tiret ou souligné ; pas d'espace.",
        "  - feuille « Dimensions », cellule C10 : niveau « trois » : un nombre entier, 0 ou "
        "plus, est attendu.",
    ]
    root = tmp_path / "c"
    assert run(root, "init").exit_code == 0
    generate = run(root, "generate", "--grid", str(path))
    assert generate.exit_code == 1
    assert generate.output.startswith(
        "Erreur : Grille « n.xlsx » : 9 problème(s) à corriger :\n"
        "  - feuille « Grille », cellule B3 : « Version » n'est pas rempli.\n"
    )
    assert not (root / "output" / "classeurs").exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda wb: wb["Critères"].delete_rows(19, 3),
            "feuille « Sections », cellule A6 : la section « dossier » n'a aucun critère dans "
            "la feuille « Critères ».",
        ),
        (
            lambda wb: wb.remove(wb["Dimensions"]),
            "feuille « Dimensions » absente : repartez d'un classeur fait par « grille grid "
            "export », ou rendez-lui son nom.",
        ),
        (
            lambda wb: wb["Critères"].delete_cols(3),
            "feuille « Critères » : colonne « Identifiant » absente de la ligne d'en-têtes "
            "(ligne 1).",
        ),
        (
            lambda wb: wb["Conclusion"].delete_rows(5),
            "feuille « Conclusion » : rubrique « Date » absente : ajoutez une ligne « Date » en "
            "colonne A et son texte en colonne B.",
        ),
        (
            lambda wb: wb["Grille"].append(["Diplôme", "BTS MCO"]),
            "feuille « Grille », cellule A12 : rubrique « Diplôme » en double (déjà en A5) ; "
            "gardez-en une.",
        ),
        (
            lambda wb: wb["Échelle"].append(["eca", "En cours"]),
            "feuille « Échelle », cellule A5 : le code « eca » est déjà celui de la note en A3.",
        ),
        (
            lambda wb: wb["Dimensions"].append(["assiduite", "Assiduité", 2, "Encore"]),
            "feuille « Dimensions », cellule C19 : le niveau 2 de la dimension « assiduite » "
            "est déjà décrit en C3.",
        ),
        (
            lambda wb: wb["Dimensions"].cell(row=3, column=2, value="Présence"),
            "feuille « Dimensions », cellule B3 : intitulé « Présence » différent de celui de "
            "la dimension « assiduite » en B2 (« Assiduité et ponctualité ») : laissez la "
            "cellule vide ou écrivez le même.",
        ),
        (
            lambda wb: wb["Conclusion"].cell(row=2, column=2, value="Bilan global"),
            "feuille « Conclusion », cellule B2 : la feuille « Bilan global » est déjà utilisée "
            "(feuille « Évaluation globale », cellule B2) : chaque feuille du classeur a un nom "
            "différent.",
        ),
        (
            lambda wb: wb["Compétences"].cell(row=2, column=1, value="introduction"),
            "feuille « Compétences », cellule A2 : section « introduction » inconnue : elle "
            "n'est pas dans la feuille « Sections » (sections : posture, prospection, digital, "
            "reseaux, dossier).",
        ),
    ],
    ids=[
        "section_without_criteria",
        "missing_sheet",
        "missing_column",
        "missing_field",
        "doubled_field",
        "duplicate_scale_code",
        "duplicate_level",
        "conflicting_dimension_label",
        "sheet_used_twice",
        "unknown_competency_part",
    ],
)
def test_check__one_fault__named_by_sheet_and_cell(
    tmp_path: Path, change: Callable[[Any], None], expected: str
) -> None:
    path = _edit(_export(tmp_path, name="n.xlsx"), change)
    result = run(tmp_path, "grid", "check", str(path))
    assert result.exit_code == 2
    assert f"  - {expected}" in result.output.splitlines(), result.output


def test_check__valid_grid__summary_exit_0(tmp_path: Path) -> None:
    result = run(tmp_path, "grid", "check", str(_export(tmp_path)))

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Grille « grille.xlsx » : aucun problème.",
        "  Évaluation du stage de première année en entreprise — BTS Négociation et "
        "Digitalisation de la Relation Client",
        "  identifiant « bts-ndrc-stage-1a », version 1",
        "  5 sections :",
        "    Posture professionnelle : 4 critères, notés par Tuteur",
        "    Prospection et vente : 6 critères, notés par Tuteur",
        "    Digitalisation : 4 critères, notés par Tuteur",
        "    Réseaux : 3 critères, notés par Tuteur",
        "    Fiches de situation : 3 critères, notés par Tuteur, avec le professeur référent",
        "  20 critères en tout, notés NA / ECA / A",
        "  4 dimensions d'évaluation globale, note maximale 16 points",
        "Pour l'utiliser : grille generate --grid grille.xlsx",
    ]


def test_check__toml_grid_too(tmp_path: Path) -> None:
    good = run(tmp_path, "grid", "check", str(DEFAULT_GRID))
    assert good.exit_code == 0, good.output
    assert "  44 critères en tout, notés TI / I / S / TS" in good.output
    bad = tmp_path / "g.toml"
    bad.write_text(DEFAULT_GRID.read_text(encoding="utf-8").replace('sheet = "Clientèle"', ""))
    result = run(tmp_path, "grid", "check", str(bad))
    assert (result.exit_code, result.output) == (
        2,
        "Erreur : Grille « g.toml », entrée « sections[clientele].sheet » : valeur manquante.\n",
    )


def test_reserved_sheet_names__match_the_tutor_workbook_and_are_refused_in_toml() -> None:
    from pipeline.grid import RESERVED_SHEETS

    assert {INSTRUCTIONS_SHEET, LISTS_SHEET, META_SHEET} <= set(RESERVED_SHEETS)
    data = tomllib.loads(DEFAULT_GRID.read_text(encoding="utf-8"))
    data["closing"]["sheet"] = "Listes"
    with pytest.raises(GridError, match="nom de feuille « Listes » invalide"):
        parse_grid(data, "g.toml")


# ------------------------------------------------------------------ hostile files


def _with_member(source: bytes, member: str, data: bytes) -> bytes:
    """`source` (an .xlsx) with `member` replaced by `data`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            content = data if info.filename == member else old.read(info)
            new.writestr(info.filename, content, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _criteria_bomb(size: int, *, lie: bool) -> bytes:
    """A real grid spreadsheet whose « Critères » sheet expands to `size` bytes; with
    `lie`, its headers say 1000 bytes."""
    real = write_grid_workbook(NDRC)
    member = XlsxPackage(real, "g").sheets["Critères"].path
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(real)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            if info.filename != member:
                new.writestr(info.filename, old.read(info), zipfile.ZIP_DEFLATED)
        info = zipfile.ZipInfo(member)
        info.compress_type = zipfile.ZIP_DEFLATED
        with new.open(info, "w") as stream:
            for _ in range(size // MiB):
                stream.write(b"<" + bytes(MiB - 1))
    return lie_about_size(out.getvalue(), member, 1000) if lie else out.getvalue()


ENTITIES = b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><workbook'


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: _criteria_bomb(30 * MiB, lie=False),
            "« xl/worksheets/sheet5.xml » est compressé de façon anormale (plus de 200 fois) : "
            "fichier refusé par sécurité (bombe zip ?).",
        ),
        (
            lambda: _criteria_bomb(30 * MiB, lie=True),
            "le classeur est endommagé ou incomplet ; ouvrez-le dans Excel ou LibreOffice et "
            "enregistrez-le à nouveau au format Excel (.xlsx).",
        ),
        (
            lambda: zip_bytes({"xl/workbook.xml": bytes(70 * MiB)}),
            "contenu décompressé annoncé de 70 Mo (maximum 60 Mo) : fichier refusé par sécurité "
            "(bombe zip ?).",
        ),
        (
            lambda: _with_member(
                write_grid_workbook(NDRC),
                "xl/workbook.xml",
                zipfile.ZipFile(io.BytesIO(write_grid_workbook(NDRC)))
                .read("xl/workbook.xml")
                .replace(b"<workbook", ENTITIES, 1),
            ),
            "la partie « xl/workbook.xml » contient une déclaration DOCTYPE ou ENTITY, jamais "
            "présente dans un classeur Excel : fichier refusé par sécurité.",
        ),
        (
            lambda: many_entries(5000),
            "trop d'éléments dans l'archive (5000, maximum 1000) : fichier refusé par sécurité.",
        ),
        (
            lambda: write_grid_workbook(NDRC)[:3000],
            "le classeur est endommagé ou incomplet ; ouvrez-le dans Excel ou LibreOffice et "
            "enregistrez-le à nouveau au format Excel (.xlsx).",
        ),
        (
            lambda: zip_bytes({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet"}),
            "c'est un classeur OpenDocument (.ods) ; dans LibreOffice, Fichier › Enregistrer "
            "sous › format Excel (.xlsx).",
        ),
        (
            lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4000),
            "ce classeur est au format Excel 97-2003 (.xls) ou protégé par un mot de passe ; "
            "enregistrez-le sans mot de passe au format Excel (.xlsx).",
        ),
        (
            lambda: bytes(range(256)) * 20,
            "le fichier doit être encodé en UTF-8.",
        ),
    ],
    ids=[
        "zip_bomb",
        "zip_bomb_lying_about_its_size",
        "zip_bomb_declared",
        "xml_entities",
        "too_many_members",
        "truncated",
        "ods",
        "xls",
        "binary_junk",
    ],
)
def test_hostile_grid_file__refused_in_french__check_exit_2__generate_exit_1(
    tmp_path: Path, make: Callable[[], bytes], message: str
) -> None:
    path = tmp_path / "grille.xlsx"
    path.write_bytes(make())

    checked = run(tmp_path, "grid", "check", str(path))
    root = tmp_path / "c"
    assert run(root, "init").exit_code == 0
    generated = run(root, "generate", "--grid", str(path))

    assert (checked.exit_code, checked.output) == (
        2,
        f"Erreur : Grille « grille.xlsx » : {message}\n",
    )
    assert (generated.exit_code, generated.output) == (
        1,
        f"Erreur : Grille « grille.xlsx » : {message}\n",
    )


def test_hostile_grid_file__too_big__refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "grille.xlsx"
    with path.open("wb") as handle:
        handle.truncate(11 * MiB)
    result = run(tmp_path, "grid", "check", str(path))
    assert (result.exit_code, result.output) == (
        2,
        "Erreur : Grille « grille.xlsx » : le fichier pèse 11 Mo, alors qu'une grille fait "
        "quelques dizaines de Ko ; vérifiez que c'est le bon fichier.\n",
    )


# ------------------------------------------------------------------ a campaign's grid


def test_load_grid__the_file_edited_since__is_read_again(tmp_path: Path) -> None:
    path = _export(tmp_path)
    assert load_grid(path).title == NDRC.title
    _edit(path, lambda wb: wb["Grille"].cell(row=4, column=2, value="Stage de 1re année"))
    assert load_grid(path).title == "Stage de 1re année"


def _stored_sources(root: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(root / "output" / "grille.sqlite") as db:
        rows = db.execute(
            "SELECT grid_id, grid_version, source FROM grids ORDER BY stored_at, rowid"
        )
        return [tuple(row) for row in rows]


def test_campaign__keeps_the_spreadsheet_grid_as_toml(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    root = _campaign(tmp_path, write_csv, _export(tmp_path))

    ((grid_id, version, source),) = _stored_sources(root)
    assert (grid_id, version) == ("bts-ndrc-stage-1a", "1")
    assert parse_grid_text(source, "base") == NDRC
    listed = run(root, "grid", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[-1].startswith(
        "  « bts-ndrc-stage-1a » version 1 — BTS Négociation et Digitalisation de la Relation "
        "Client (5 sections, 20 critères), enregistrée le "
    )
    assert listed.output.splitlines()[-1].endswith(" — en service")
    again = run(root, "grid", "export", str(tmp_path / "reprise.xlsx"))  # the campaign's grid
    assert again.exit_code == 0, again.output
    assert load_grid(tmp_path / "reprise.xlsx") == NDRC


def test_campaign__grid_edited_before_sending__same_version__the_edit_is_kept(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    grid_file = _export(tmp_path)
    root = _campaign(tmp_path, write_csv, grid_file)

    def reword(wb: Any) -> None:
        wb["Critères"]["D6"] = "Ciblage des prospects"
        wb["Critères"]["C7"] = "prospection.rendez_vous"  # nothing has left: allowed

    _edit(grid_file, reword)
    result = run(
        root, "generate", "--roster", str(tmp_path / "liste.csv"), "--grid", str(grid_file)
    )

    assert result.exit_code == 0, result.output
    assert "3 régénéré(s)" in result.output
    (stored,) = _stored_sources(root)  # replaced, not kept stale under the same version
    grid = parse_grid_text(stored[2], "base")
    assert grid.section("prospection").criteria[0].label == "Ciblage des prospects"
    assert grid.section("prospection").criteria[1].id == "prospection.rendez_vous"
    run(root, "grid", "export", str(tmp_path / "reprise.xlsx"))  # without --grid: the campaign's
    assert load_grid(tmp_path / "reprise.xlsx") == grid


def test_campaign__grid_edited_after_sending__renamed_or_removed_ids_refused__new_version_ok(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    grid_file = _export(tmp_path)
    root = _campaign(tmp_path, write_csv, grid_file)
    assert run(root, "send").exit_code == 0
    before = {name: workbook_of(root, name).read_bytes() for name in ("Abadie", "Bernard")}

    def rename_and_remove(wb: Any) -> None:
        wb["Critères"]["C6"] = "prospection.ciblage_clients"
        wb["Critères"].delete_rows(14)  # digital.e_reputation

    _edit(grid_file, rename_and_remove)
    expected = [
        "Grille « bts-ndrc-stage-1a » version 1 : des classeurs faits avec elle sont déjà "
        "partis ou revenus, et cette modification fausserait la lecture de leurs retours : "
        "2 critère(s) supprimé(s) ou renommé(s) :",
        "  - prospection.ciblage (Ciblage des prospects et qualification du fichier)",
        "  - digital.e_reputation (Veille sur l’e-réputation de l’entreprise)",
        "Annulez cette modification, ou donnez une nouvelle version à la grille (rubrique "
        "« Version » de la feuille « Grille » du tableur, ou « version » du fichier .toml) : "
        "les retours des classeurs déjà partis restent lus avec l'ancienne.",
    ]
    checked = run(root, "grid", "check", str(grid_file))
    refused = run(
        root, "generate", "--roster", str(tmp_path / "liste.csv"), "--grid", str(grid_file)
    )

    assert checked.exit_code == 2
    assert checked.output.splitlines() == [f"Erreur : {expected[0]}", *expected[1:]]
    assert refused.exit_code == 1
    assert refused.output.splitlines() == [f"Erreur : {expected[0]}", *expected[1:]]
    assert {n: workbook_of(root, n).read_bytes() for n in before} == before
    assert parse_grid_text(_stored_sources(root)[0][2], "base") == NDRC

    _edit(grid_file, lambda wb: wb["Grille"].cell(row=3, column=2, value="2"))
    accepted = run(
        root, "generate", "--roster", str(tmp_path / "liste.csv"), "--grid", str(grid_file)
    )

    assert accepted.exit_code == 0, accepted.output
    assert "  régénéré (grille modifiée) : ABADIE Chloé (NDRC 1)" in accepted.output
    assert [(g, v) for g, v, _ in _stored_sources(root)] == [
        ("bts-ndrc-stage-1a", "1"),
        ("bts-ndrc-stage-1a", "2"),
    ]
    listed = run(root, "grid", "list").output.splitlines()
    assert listed[-2].startswith("  « bts-ndrc-stage-1a » version 1 — ")
    assert not listed[-2].endswith("en service")
    assert listed[-1].endswith(" — en service") and "version 2" in listed[-1]


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (lambda wb: wb["Critères"].cell(row=6, column=4, value="Ciblage des prospects"), None),
        (lambda wb: wb["Critères"].insert_rows(3), None),  # a blank row changes nothing
        (
            lambda wb: wb["Critères"].cell(row=3, column=2, value="Savoir-être"),
            "3 critère(s) déplacé(s) dans le classeur :\n"
            "  - posture.presentation (Présentation et tenue adaptées à l’entreprise)\n",
        ),  # a sub-heading: every criterion below it moves down one row
        (
            lambda wb: wb["Critères"].append(["dossier", None, "dossier.bilan", "Bilan"]),
            "1 critère(s) ajouté(s), absent(s) des classeurs déjà partis :\n"
            "  - dossier.bilan (Bilan)\nAnnulez",
        ),  # no cell moves, but the returns of the sent workbooks would lack it
    ],
    ids=["label_reworded", "blank_row", "cells_moved", "criterion_added"],
)
def test_campaign__grid_edited_after_sending__same_version__only_if_answers_stay_put(
    tmp_path: Path,
    write_csv: Callable[..., Path],
    change: Callable[[Any], None],
    refusal: str | None,
) -> None:
    grid_file = _export(tmp_path)
    root = _campaign(tmp_path, write_csv, grid_file)
    assert run(root, "send").exit_code == 0

    roster = str(tmp_path / "liste.csv")
    result = run(root, "generate", "--roster", roster, "--grid", str(_edit(grid_file, change)))

    (stored,) = _stored_sources(root)
    if refusal is None:
        assert result.exit_code == 0, result.output
        assert parse_grid_text(stored[2], "base") == load_grid(grid_file)
    else:
        assert result.exit_code == 1
        assert refusal in result.output
        assert parse_grid_text(stored[2], "base") == NDRC


# ------------------------------------------------------------------ the whole season


def test_season_on_the_second_grid__from_its_spreadsheet__no_code_change(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    grid_file = _export(tmp_path, name="ndrc.xlsx")
    root = _campaign(tmp_path, write_csv, grid_file)
    assert run(root, "send").exit_code == 0
    workbook = openpyxl.load_workbook(workbook_of(root, "Abadie"))
    assert workbook.sheetnames[1:7] == [s.sheet for s in NDRC.sections] + ["Bilan global"]
    assert workbook["_grille"]["B4"].value == "bts-ndrc-stage-1a"

    answers = {**complete_answers(NDRC), "date": date(2026, 2, 20)}
    inbox = tmp_path / "retours"
    fill(workbook_of(root, "Abadie"), inbox / "a.xlsx", answers, NDRC)
    fill(
        workbook_of(root, "Bernard"),
        inbox / "b.xlsx",
        {**answers, "prospection.conclusion": None, "signature": "Marc Dubreuil"},
        NDRC,
    )
    fill(workbook_of(root, "Chevallier"), inbox / "c.xlsx", {**answers, "autonomie": 2}, NDRC)
    collected = run(root, "collect", str(inbox))
    assert collected.exit_code == 0, collected.output

    statuses = status_json(root)
    assert {n: s["status"] for n, s in statuses.items()} == {
        "Abadie": "complete",
        "Bernard": "incomplete",
        "Chevallier": "invalid",
    }
    assert statuses["Bernard"]["missing"] == [
        "Relation client et négociation-vente › Conclusion de la vente (cellule D17) : non "
        "renseigné."
    ]
    assert statuses["Chevallier"]["invalid"] == [
        "Appréciation globale du stagiaire › Autonomie (cellule B10) : « 2 » n'est pas un "
        "niveau possible (0, 1, 3, 4)."
    ]
    status = run(root, "status")
    assert "Total : 1 complet, 1 incomplet, 1 invalide" in status.output

    report = run(root, "report")
    assert report.exit_code == 0, report.output
    (bilan,) = (root / "output" / "rapports").rglob("bilan_ABADIE_*.docx")
    document = docx.Document(str(bilan))
    cells = [c.text for t in document.tables for row in t.rows for c in row.cells]
    assert cells[cells.index("Critère") :][:4] == ["Critère", "NA", "ECA", "A"]
    assert "Total : 16 / 16" in cells
    assert "Sens commercial" in cells and "5 / 5" in cells
    paragraphs = [p.text for p in document.paragraphs]
    assert "Préparation des fiches de situation professionnelle" in paragraphs

    reminded = run(root, "remind", "--dry-run")
    assert reminded.exit_code == 0, reminded.output
    assert (
        "      • BERNARD Yanis : feuille « Prospection et vente », cellule D17 "
        "(Conclusion de la vente) : non renseigné."
    ) in reminded.output.splitlines()
    assert "ABADIE" not in reminded.output

"""The evaluation grid is data: faithful to the seed, validated, replaceable."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from pipeline.errors import GridError
from pipeline.grid import DEFAULT_GRID, load_grid, parse_grid
from tests.tutors import ROSTER_HEADER, fill, run, status_json, workbook_of


def _data() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_GRID.read_text(encoding="utf-8"))


def test_default_grid__sections_in_seed_order_with_their_criteria_counts() -> None:
    grid = load_grid()
    assert (grid.id, grid.version) == ("bts-muc-stage-acrc", "1")
    assert [(s.title, len(s.criteria)) for s in grid.sections] == [
        ("Phase préparatoire du stage : intégration dans l’agence", 7),
        ("Fonctionnement courant de l’agence", 8),
        ("Contacts avec la clientèle", 18),
        ("Organisation du travail", 11),
    ]
    assert [(lv.code, lv.label) for lv in grid.scale] == [
        ("TI", "Très insuffisant"),
        ("I", "Insuffisant"),
        ("S", "Satisfaisant"),
        ("TS", "Très satisfaisant"),
    ]
    clientele = grid.section("clientele")
    assert clientele.headings() == [
        "Comportement commercial",
        "Préparation de l’entretien, du rendez-vous",
        "Déroulement de l’entretien, du rendez-vous",
        "Suivi de l’entretien, du rendez-vous",
    ]
    assert [c.code for c in grid.competencies] == ["C12", "C5", "C21", "C63", "C41", "C64", "C42"]


def test_default_grid__criterion_ids_unique_even_where_labels_repeat() -> None:
    grid = load_grid()
    ids = [c.id for c in grid.criteria]
    assert len(ids) == len(set(ids)) == 44
    repeated = [c.id for c in grid.criteria if c.label == "Capacité à travailler en équipe"]
    assert repeated == ["clientele.travail_equipe", "organisation.travail_equipe"]


def test_default_grid__global_levels_exactly_as_the_seed_gaps_included() -> None:
    ge = load_grid().global_evaluation
    assert [(d.label, d.values) for d in ge.dimensions] == [
        ("Autonomie", (0, 1, 2, 3)),
        ("Sens des responsabilités", (0, 1, 3, 4)),
        ("Implication", (0, 1, 3, 4)),
        ("Rigueur et qualité du travail", (0, 1, 3, 4)),
        ("Intégration à l’équipe commerciale", (0, 1, 2, 3)),
        ("Ecoute", (0, 1, 2, 3)),
        ("Contact commercial", (0, 1, 2, 3)),
    ]
    assert ge.maximum == 24
    assert (
        ge.dimensions[3].descriptor(0) == "Réalise son travail sans aucun souci de « bien faire »"
    )
    assert ge.dimensions[0].descriptor(3) == "Prend des initiatives utiles"


def test_default_grid__closing_labels() -> None:
    closing = load_grid().closing
    assert closing.tutor_appreciation == (
        "Appréciation du tuteur sur le travail et le comportement du stagiaire"
    )
    assert closing.team_appreciation == "Appréciation de l’équipe pédagogique"
    assert (closing.date, closing.signature) == ("Date", "Signature du tuteur")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["sections"][1]["criteria"].append(
                {"id": "integration.ponctualite", "label": "x"}
            ),
            "entrée « sections[fonctionnement].criteria[9].id » : l'identifiant « integration.ponctualite » est en double.",
        ),
        (
            lambda d: d["global_evaluation"]["dimensions"][0]["levels"][0].update(value="zéro"),
            "entrée « global_evaluation.dimensions[1].levels[1].value » : un nombre entier positif est attendu.",
        ),
        (
            lambda d: d["sections"][0].pop("title"),
            "entrée « sections[integration].title » : valeur manquante.",
        ),
        (
            lambda d: d["sections"][0].update(sheet="Une feuille au nom beaucoup trop long"),
            "entrée « sections[integration].sheet » : nom de feuille",
        ),
        (
            lambda d: d["global_evaluation"]["dimensions"][1]["levels"].reverse(),
            "entrée « global_evaluation.dimensions[2].levels » : les niveaux doivent être distincts et croissants.",
        ),
    ],
    ids=[
        "duplicate_id",
        "level_not_a_number",
        "missing_title",
        "sheet_name_too_long",
        "levels_unordered",
    ],
)
def test_malformed_grid__french_error_names_the_entry(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = _data()
    change(data)
    with pytest.raises(GridError) as error:
        parse_grid(data, "autre.toml")
    assert str(error.value).startswith("Grille « autre.toml », " + message)


def test_malformed_grid_file__cli_french_error_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "grille.toml"
    bad.write_text('id = "x"\nversion = \n', encoding="utf-8")
    root = tmp_path / "c"
    assert run(root, "init").exit_code == 0
    result = run(root, "generate", "--grid", str(bad))
    assert result.exit_code == 1
    assert result.output.startswith("Erreur : Grille « grille.toml » : syntaxe TOML invalide")


def _second_grid(path: Path) -> Path:
    """A smaller grid in another file: two sections, other id, same schema."""
    text = DEFAULT_GRID.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    assert data["id"] == "bts-muc-stage-acrc"
    text = text.replace('id = "bts-muc-stage-acrc"', 'id = "bts-mco-essai"', 1)
    path.write_text(text, encoding="utf-8")
    return path


def test_second_grid__generate_with_grid_option_and_returns_are_read_with_it(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    grid_file = _second_grid(tmp_path / "bts_mco.toml")
    root = tmp_path / "c"
    assert run(root, "init").exit_code == 0
    roster = write_csv(
        tmp_path / "l.csv",
        [
            ROSTER_HEADER,
            [
                "Abadie",
                "Chloé",
                "BTS MCO",
                "Agence",
                "Sophie Garnier",
                "sg@x.example",
                "05/01/2026",
                "27/02/2026",
            ],
        ],
    )
    result = run(root, "generate", "--roster", str(roster), "--grid", str(grid_file))
    assert result.exit_code == 0, result.output
    again = run(root, "generate", "--roster", str(roster))  # the campaign keeps its grid
    assert again.output.splitlines()[-1].startswith(
        "0 classeur(s) créé(s), 0 régénéré(s), 1 inchangé"
    )
    workbook = workbook_of(root, "Abadie")
    meta = openpyxl.load_workbook(workbook)["_grille"]
    assert meta["B4"].value == "bts-mco-essai"
    from tests.test_collect import _answers_for

    filled = fill(workbook, tmp_path / "r.xlsx", _answers_for("Sophie Garnier"))
    assert run(root, "collect", str(filled)).exit_code == 0
    assert status_json(root)["Abadie"]["status"] == "complete"

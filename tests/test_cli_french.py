"""Click's own messages reach the teacher in French, suggestions included."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.cli.base import _CLICK_FRENCH, CLICK_DEVELOPER_MESSAGES


@pytest.mark.parametrize(
    ("typed", "told"),
    [
        (["sedn"], "Erreur : Commande inconnue : 'sedn'. Vouliez-vous dire 'send' ?"),
        (
            ["remidn"],
            "Erreur : Commande inconnue : 'remidn'. (Vouliez-vous dire : 'grid', 'rebuild', 'remind' ?)",
        ),
        (
            ["send", "--dry-rn"],
            "Erreur : Option inconnue : '--dry-rn'. Vouliez-vous dire '--dry-run' ?",
        ),
    ],
)
def test_mistyped_command_or_option__suggestion_in_french__exit_2(
    typed: list[str], told: str
) -> None:
    result = CliRunner().invoke(cli, typed)

    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == told
    assert "Did you mean" not in result.output


def test_missing_option_value_and_wrong_choice__in_french() -> None:
    missing = CliRunner().invoke(cli, ["send", "--class"])
    choice = CliRunner().invoke(cli, ["status", "--format", "xml"])

    assert missing.exit_code == choice.exit_code == 2
    assert missing.output.splitlines()[-1] == "Erreur : L'option '--class' demande une valeur."
    assert choice.output.splitlines()[-1] == (
        "Erreur : Valeur invalide pour '--format' : 'xml' n'est pas parmi 'table', 'csv', 'json'."
    )


def test_every_message_click_may_show__has_its_french_text() -> None:
    """A click upgrade that adds a message fails here until the message is translated."""
    folder = Path(click.__file__).parent
    untranslated = set()
    for module in ("core", "decorators", "exceptions", "formatting", "parser", "termui", "types"):
        tree = ast.parse((folder / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in ("_", "ngettext"):
                continue
            untranslated |= {
                arg.value
                for arg in node.args
                if isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and arg.value not in _CLICK_FRENCH
                and arg.value not in CLICK_DEVELOPER_MESSAGES
            }

    assert untranslated == set()

"""The README stays true: CI runs its test command, every command it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.cli import cli

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


def test_readme__its_test_command_is_the_one_ci_runs() -> None:
    test_commands = [b.strip() for b in _shell_blocks() if "pytest" in b]
    assert len(test_commands) == 1
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_commands[0] in ci.splitlines()


def test_readme__demo_command_runs_grille_demo() -> None:
    assert any(b.strip().endswith("grille demo") for b in _shell_blocks())


def test_readme__every_grille_command_it_names_exists() -> None:
    named = set(re.findall(r"^grille (\w+)", "\n".join(_shell_blocks()), flags=re.M))
    assert named <= set(cli.commands), named - set(cli.commands)
    flow = {"init", "generate", "send", "collect", "status", "remind", "report", "archive"}
    assert flow <= named


def test_readme__every_picture_it_shows_is_in_docs() -> None:
    pictures = re.findall(r"\]\((docs/[^)]+\.png)\)", README)
    assert {"docs/ui_suivi.png", "docs/ui_archive.png"} <= set(pictures)
    assert [p for p in pictures if not (ROOT / p).is_file()] == []


def test_readme__first_section_opens_the_demo_in_the_interface_as_the_demo_says() -> None:
    first = README.split("\n## ")[1]
    assert first.startswith("Démarrer")
    shown = re.search(r"^\.venv/bin/(grille ui --dir \S+)$", first, flags=re.M)
    assert shown is not None
    demo = (ROOT / "pipeline" / "cli" / "demo.py").read_text(encoding="utf-8")
    assert "Pour l'ouvrir dans l'interface : grille ui --dir {directory}" in demo
    assert shown.group(1) == "grille ui --dir output/demo"  # where `grille demo` writes
    assert "](docs/ui_" in first  # with a picture of the interface

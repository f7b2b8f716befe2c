"""The `grille` command line: a thin French layer over the library, one command per step.

Each command opens the campaign, calls one library function and prints its result.
Library errors (`GrilleError`) become a French message and a non-zero exit code;
no traceback reaches the teacher.

The commands live in one module per stage of the season (`prepare`, `mailing`,
`returns`, `closing`, `demo`), over what they share (`base`); `grille --help` lists
them in the order of the flow.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli import closing, demo, grid, mailing, prepare, returns  # noqa: F401  (registers them)
from pipeline.cli.base import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the `grille` console script: never shows a traceback."""
    try:
        return cli.main(args=argv, prog_name="grille")
    except Exception:  # a bug: say so in French, keep the details in a log file
        import tempfile
        import traceback

        log = Path(tempfile.gettempdir()) / "grille-erreur.log"
        try:
            log.write_text(traceback.format_exc(), encoding="utf-8")
            where = f" Détails techniques dans {log} : joignez ce fichier à votre signalement."
        except OSError:
            where = ""
        click.echo(f"Erreur inattendue de grille (ce n'est pas de votre fait).{where}", err=True)
        sys.exit(3)

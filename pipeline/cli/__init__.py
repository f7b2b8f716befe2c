"""The `grille` command line: a thin French layer over the library, one command per step.

A command opens the campaign, calls the library's step (`step(campaign, …) -> Result`,
e.g. `campaign.generate_workbooks`, `mail.send_step`, `collect.collect_step`) and prints
its result; only `grille demo` chains steps, calling the same library functions. Library
errors (`GrilleError`) become a French message and their exit code
(`GrilleError.exit_code`); no traceback reaches the teacher.

The commands live in one module per stage of the season (`prepare`, `mailing`,
`returns`, `closing`, `grid`, `recovery`, `demo`), over what they share (`base`);
`grille --help` lists them in the order of the flow.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli import (  # noqa: F401  (registers them)
    closing,
    demo,
    grid,
    mailing,
    prepare,
    recovery,
    returns,
    ui,
)
from pipeline.cli.base import cli, current_campaign
from pipeline.errors import storage_problem
from pipeline.settings import CONFIG_NAME, Workspace

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the `grille` console script: never shows a traceback."""
    try:
        return cli.main(args=argv, prog_name="grille")
    except Exception as exc:  # a bug: say so in French, keep the details in a log file
        root = current_campaign()
        output = Workspace(root).output_dir if root is not None else None
        storage = storage_problem(exc, output)
        if storage is not None:  # not a bug: the disk refused
            click.echo(f"Erreur : {storage}", err=True)
            sys.exit(1)
        log = write_crash_log(root, argv)
        where = (
            f" Détails techniques dans {log} : joignez ce fichier à votre signalement."
            if log is not None
            else ""
        )
        click.echo(f"Erreur inattendue de grille (ce n'est pas de votre fait).{where}", err=True)
        sys.exit(3)


def write_crash_log(root: Path | None, argv: list[str] | None) -> Path | None:
    """Write the current exception's details in the campaign's `output/journal/`, one
    file per error; in a new temp file when there is no campaign or it cannot be written."""
    import platform
    import tempfile
    import traceback
    from datetime import datetime
    from importlib import metadata

    try:
        version = metadata.version("grille")
    except metadata.PackageNotFoundError:
        version = "?"
    text = (
        f"grille {version}, Python {platform.python_version()}, {platform.platform()}\n"
        f"commande : grille {' '.join(sys.argv[1:] if argv is None else argv)}\n"
        f"dossier : {root}\n\n{traceback.format_exc()}"
    ).encode("utf-8", "replace")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if root is not None and (Path(root) / CONFIG_NAME).is_file():
        journal = Workspace(root).journal_dir
        try:
            journal.mkdir(parents=True, exist_ok=True)
            for serial in range(1, 100):
                name = f"erreur-{stamp}.log" if serial == 1 else f"erreur-{stamp}-{serial}.log"
                try:
                    with (journal / name).open("xb") as handle:
                        handle.write(text)
                    return journal / name
                except FileExistsError:
                    continue
        except OSError:
            pass
    try:
        fd, name = tempfile.mkstemp(prefix=f"grille-erreur-{stamp}-", suffix=".log")
        with open(fd, "wb") as handle:
            handle.write(text)
        return Path(name)
    except OSError:
        return None

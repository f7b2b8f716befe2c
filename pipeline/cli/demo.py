"""`grille demo`: the whole season on the bundled class, step after step, each run and
printed as its own command does (`run_generate`, `run_send`, …)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from pipeline import demo as demo_data
from pipeline import mail
from pipeline.cli.base import (
    Context,
    cli,
    friendly_errors,
    open_campaign,
)
from pipeline.cli.closing import archive_command, run_reports
from pipeline.cli.mailing import run_remind, run_send
from pipeline.cli.prepare import run_generate
from pipeline.cli.returns import collect, status
from pipeline.parallel import default_jobs
from pipeline.settings import Workspace


@cli.command()
@click.argument(
    "directory",
    required=False,
    default=Path("output") / "demo",
    metavar="[DOSSIER]",
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--pdf", is_flag=True, help="Écrit aussi les PDF (LibreOffice).")
@click.option("--jobs", type=click.IntRange(min=1), default=default_jobs(), hidden=True)
@click.pass_context
def demo(click_ctx: click.Context, directory: Path, pdf: bool, jobs: int) -> None:
    """Démonstration complète sur une classe fictive : 12 stagiaires, deux classes.

    Exemple : grille demo   (écrit dans output/demo/)

    Crée la campagne, les classeurs, les messages aux tuteurs (dans output/envoi/),
    simule les réponses des tuteurs (complètes, une incomplète, une saisie hors liste,
    un fichier renommé, un retour dans un e-mail, deux sans réponse), collecte les
    retours, affiche le suivi, prépare les relances, écrit les bilans Word et l'archive.
    Relancer la commande ne refait que ce qui manque.
    """
    workspace = Workspace(directory)
    click_ctx.obj = Context(workspace.root)  # the commands below work on the demo campaign
    today = date.today()
    with friendly_errors():
        roster = demo_data.start_demo(workspace, today)

    def step(title: str) -> None:
        click.echo(click.style(f"\n== {title}", bold=True))

    step(f"1. Campagne de démonstration dans « {workspace.root} »")
    step("2. Un classeur par stagiaire (grille generate)")
    run_generate(workspace, (roster,), jobs=jobs)
    step("3. Un message par tuteur, prêt à partir (grille send)")
    run_send(workspace)
    step("4. Les tuteurs répondent (simulation)")
    replies = workspace.root / "retours_simules"
    if replies.is_dir() and any(replies.iterdir()):
        click.echo(f"Réponses simulées déjà présentes dans {replies.name}/.")
    else:
        with open_campaign(workspace, lock=False) as opened:
            simulated = demo_data.simulate_returns(opened, replies, today)
        for name, what in simulated:
            click.echo(f"  {name} : {what}")
    step(f"5. Collecte des retours (grille collect {replies.name})")
    click_ctx.invoke(collect, paths=(replies,), jobs=jobs)
    step("6. Où en est chaque stagiaire (grille status)")
    click_ctx.invoke(status, output_format="table", class_name=None)
    step("7. Relances des tuteurs (grille remind)")
    run_remind(workspace)
    step("8. Bilans Word (grille report)")
    run_reports(workspace, None, None, pdf)
    step("9. Archive de chaque classe (grille archive)")
    click_ctx.invoke(archive_command, class_name=None, school_year=None, pdf=False)
    step("Terminé. À regarder :")
    where = [
        (workspace.workbooks_dir, "les classeurs envoyés aux tuteurs"),
        (workspace.output_dir / mail.OUTBOX, "les messages aux tuteurs et les relances (.eml)"),
        (replies, "les réponses simulées des tuteurs"),
        (workspace.tracking_path, "le tableau de suivi"),
        (workspace.reports_dir, "les bilans Word"),
        (workspace.output_dir / "archive", "les archives, vérifiables"),
    ]
    for path, what in where:
        click.echo(f"  {path} : {what}")
    click.echo(f"Pour continuer sur cette campagne : grille --dir {directory} status")
    click.echo(f"Pour l'ouvrir dans l'interface : grille ui --dir {directory}")

"""`grille demo`: the whole season on the bundled class, step after step: each library
step (`campaign.generate_workbooks`, `mail.send_step`, `collect.collect_step`,
`remind.remind_step`, `report_files.write_reports`, `archive.build_archives`) is called
and what it did printed in French, as its command prints it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from pipeline import archive, collect_report, mail, remind, report_files, tracking
from pipeline import campaign as campaign_ops
from pipeline import collect as collect_ops
from pipeline import demo as demo_data
from pipeline.campaign import Campaign
from pipeline.cli.base import (
    cli,
    friendly_errors,
    open_campaign,
    refresh_tracking,
)
from pipeline.cli.mailing import (
    NOTHING_TO_REMIND,
    NOTHING_TO_SEND,
    print_sending,
    refresh_after_sending,
)
from pipeline.cli.prepare import print_generation
from pipeline.parallel import default_jobs
from pipeline.settings import Workspace


def _delivered(
    workspace: Workspace, opened: Campaign, result: mail.SendResult, nothing: str
) -> None:
    """What `mail.send_step` or `remind.remind_step` did, as `send` and `remind` print it."""
    refresh_after_sending(workspace, opened, result)
    print_sending(workspace, result, nothing)


def _collect(workspace: Workspace, opened: Campaign, replies: Path, jobs: int) -> None:
    """The simulated returns collected (`collect.collect_step`), said as `collect` says it."""
    result = collect_ops.collect_step(opened, [replies], jobs=jobs)
    refresh_tracking(workspace, opened.db)
    lines = collect_report.file_lines(result) + collect_report.summary_lines(result, workspace)
    for line in lines:
        click.echo(line.text, err=line.error)


def _statuses(opened: Campaign) -> None:
    """Each student's status (`tracking.student_statuses`), then the total by status."""
    statuses = tracking.student_statuses(opened.db)
    width = max((len(s.student.display_name) for s in statuses), default=0)
    counts: dict[str, int] = {}
    for s in statuses:
        click.echo(f"  {s.student.display_name.ljust(width)}  {s.class_name:<12}  {s.status_label}")
        counts[s.status_label] = counts.get(s.status_label, 0) + 1
    click.echo("Total : " + ", ".join(f"{n} {label}" for label, n in counts.items()))


def _reports(workspace: Workspace, opened: Campaign, pdf: bool) -> None:
    """The bilans written (`report_files.write_reports`), said as `report` says it."""
    result = report_files.write_reports(opened, pdf=pdf)
    for kind, line in result.lines(workspace):
        click.echo(line, err=kind == "attention")


def _archives(workspace: Workspace, opened: Campaign) -> None:
    """Each class archived (`archive.build_archives`), said as `archive` says it."""
    built = archive.build_archives(opened)
    for kind, line in built.lines(workspace.root):
        click.echo(line, err=kind == "attention")


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
def demo(directory: Path, pdf: bool, jobs: int) -> None:
    """Démonstration complète sur une classe fictive : 12 stagiaires, deux classes.

    Exemple : grille demo   (écrit dans output/demo/)

    Crée la campagne, les classeurs, les messages aux tuteurs (dans output/envoi/),
    simule les réponses des tuteurs (complètes, une incomplète, une saisie hors liste,
    un fichier renommé, un retour dans un e-mail, deux sans réponse), collecte les
    retours, affiche le suivi, prépare les relances, écrit les bilans Word et l'archive.
    Relancer la commande ne refait que ce qui manque.
    """
    workspace = Workspace(directory)
    today = date.today()
    with friendly_errors():
        roster = demo_data.start_demo(workspace, today)

    def step(title: str) -> None:
        click.echo(click.style(f"\n== {title}", bold=True))

    step(f"1. Campagne de démonstration dans « {workspace.root} »")
    replies = workspace.root / "retours_simules"
    with open_campaign(workspace) as opened:
        step("2. Un classeur par stagiaire (grille generate)")
        generated = campaign_ops.generate_workbooks(opened, [roster], jobs=jobs)
        if generated.generated:
            refresh_tracking(workspace, opened.db)
        print_generation(workspace, generated, [roster])
        step("3. Un message par tuteur, prêt à partir (grille send)")
        _delivered(workspace, opened, mail.send_step(opened), NOTHING_TO_SEND)
        step("4. Les tuteurs répondent (simulation)")
        if replies.is_dir() and any(replies.iterdir()):
            click.echo(f"Réponses simulées déjà présentes dans {replies.name}/.")
        else:
            for name, what in demo_data.simulate_returns(opened, replies, today):
                click.echo(f"  {name} : {what}")
        step(f"5. Collecte des retours (grille collect {replies.name})")
        _collect(workspace, opened, replies, jobs)
        step("6. Où en est chaque stagiaire (grille status)")
        _statuses(opened)
        step("7. Relances des tuteurs (grille remind)")
        _delivered(workspace, opened, remind.remind_step(opened), NOTHING_TO_REMIND)
        step("8. Bilans Word (grille report)")
        _reports(workspace, opened, pdf)
        step("9. Archive de chaque classe (grille archive)")
        _archives(workspace, opened)
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

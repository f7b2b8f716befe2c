"""Closing the season: `grille report`, `grille archive` (and `verify`), `grille purge`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline import archive, report_files
from pipeline import purge as purge_step
from pipeline.cli.base import (
    Context,
    class_option,
    cli,
    fail,
    friendly_errors,
    open_campaign,
    pass_context,
    progress_counter,
    refresh_tracking,
    student_option,
)
from pipeline.settings import Workspace


def run_reports(
    workspace: Workspace,
    student_ids: set[str] | None,
    class_name: str | None,
    pdf: bool,
) -> None:
    with open_campaign(workspace) as opened, progress_counter("Bilans écrits") as advance:
        result = report_files.write_reports(
            opened, student_ids=student_ids, class_name=class_name, pdf=pdf,
            progress=advance,
        )  # fmt: skip
    for kind, line in result.lines(workspace):
        click.echo(line, err=kind == "attention")
    if result.matched_nobody:
        fail("aucun stagiaire ne correspond à ces critères (--student, --class).")


@cli.command()
@student_option
@class_option
@click.option("--pdf", is_flag=True, help="Écrit aussi un PDF de chaque bilan (LibreOffice).")
@pass_context
def report(ctx: Context, student_ids: tuple[str, ...], class_name: str | None, pdf: bool) -> None:
    """Écrit les bilans Word : un par stagiaire et un bilan consolidé par classe.

    Exemple : grille report --class "BTS MUC 2A" --pdf

    Les bilans vont dans output/rapports/<classe>/. L'appréciation de l'équipe
    pédagogique est prise dans la colonne prévue de output/suivi.xlsx. Un bilan modifié
    à la main n'est jamais remplacé.
    """
    run_reports(ctx.workspace, set(student_ids) or None, class_name, pdf)


def _verify_archive(workspace: Workspace, path: Path) -> None:
    """Check an archive, print every problem and what was checked; exit 1 unless intact."""
    with friendly_errors():
        result = archive.verify_archive(path, workspace)
    for kind, line in result.lines():
        click.echo(line, err=kind == "attention")
    if result.verdict:
        fail(result.verdict)


@cli.group("archive", invoke_without_command=True, subcommand_metavar="[verify ARCHIVE]")
@class_option
@click.option(
    "--year",
    "school_year",
    default=None,
    metavar="AAAA-AAAA",
    help="Année scolaire, ex. 2026-2027. Par défaut : celle de grille.toml.",
)
@click.option("--pdf", is_flag=True, help="Ajoute le PDF de chaque bilan (LibreOffice).")
@click.option(
    "--verify",
    "to_verify",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    hidden=True,  # the former spelling of « grille archive verify »
)
@click.pass_context
def archive_command(
    click_ctx: click.Context,
    class_name: str | None,
    school_year: str | None,
    pdf: bool,
    to_verify: Path | None,
) -> None:
    """Archive chaque classe : bilans, retours, suivi, grille, avec un manifeste vérifiable.

    Exemple : grille archive --class "BTS MUC 2A"   puis, des années plus tard :
    grille archive verify output/archive/2026-2027/BTS_MUC_2A.zip

    Pour chaque classe (ou seulement --class), un dossier output/archive/<année>/<classe>/
    et le même contenu dans <classe>.zip à côté ; manifeste.json y donne l'empreinte
    SHA-256 de chaque fichier. Une archive existante n'est jamais remplacée : la nouvelle
    s'appelle <classe>_v2. La clé secrète et la base de la campagne n'y figurent jamais.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    shared = click_ctx.find_object(Context)
    assert shared is not None
    workspace = shared.workspace
    if to_verify is not None:
        _verify_archive(workspace, to_verify)
        return
    with open_campaign(workspace) as opened:
        built = archive.build_archives(
            opened, class_name=class_name, school_year=school_year, pdf=pdf
        )
    for kind, line in built.lines(workspace.root):
        click.echo(line, err=kind == "attention")
    click.echo("Contrôlez chaque archive : grille archive verify <archive.zip>")


@archive_command.command("verify")
@click.argument("path", metavar="ARCHIVE", type=click.Path(exists=True, path_type=Path))
@pass_context
def archive_verify(ctx: Context, path: Path) -> None:
    """Vérifie une archive : chaque fichier doit correspondre au manifeste.

    Exemple : grille archive verify output/archive/2026-2027/BTS_MUC_2A.zip

    Affiche l'empreinte SHA-256 du zip et signale chaque fichier absent, modifié ou ajouté
    depuis l'archivage. Lancé dans le dossier de la campagne, contrôle aussi la signature du
    manifeste et l'empreinte du zip enregistrée à sa création. Dit en une ligne ce qui a été
    vérifié et ce qui n'a pas pu l'être ; code de sortie 1 si l'archive n'est pas intègre.
    Fonctionne sans campagne, des années plus tard, sur un autre ordinateur ; accepte aussi
    le dossier de l'archive.
    """
    _verify_archive(ctx.workspace, path)


def _ask_yes(question: str) -> bool:
    """A French yes/no question; only « o », « oui » (or « y », « yes ») say yes."""
    answer = click.prompt(f"{question} (oui/non)", default="non", show_default=False)
    return str(answer).strip().lower() in ("o", "oui", "y", "yes")


@cli.command()
@class_option
@click.option("--oui", "yes", is_flag=True, help="Ne demande pas de confirmation.")
@pass_context
def purge(ctx: Context, class_name: str | None, yes: bool) -> None:
    """Supprime les données personnelles d'une classe archivée (règles de conservation).

    Exemple : grille purge --class "BTS MUC 2A"

    Seulement pour une classe dont la dernière archive a été vérifiée (grille archive
    verify) : supprime ses classeurs, ses retours, ses bilans, les messages .eml qui ne
    concernent qu'elle et ses lignes de la base, puis réécrit output/suivi.xlsx sans elle.
    L'archive et la configuration sont conservées. Demande confirmation, sauf avec --oui.
    """
    workspace = ctx.workspace
    with open_campaign(workspace) as opened:
        plan = purge_step.plan_purge(opened, class_name)
        for kind, line in plan.lines(workspace.root):
            click.echo(line, err=kind == "attention")
        if not plan.classes:
            fail("aucune classe ne peut être purgée ; rien n'a été supprimé.")
        if not yes and not _ask_yes("Supprimer définitivement ces données ?"):
            click.echo("Purge annulée : rien n'a été supprimé.")
            sys.exit(1)
        purged = purge_step.purge(opened, plan)
        refresh_tracking(workspace, opened.db)
    click.echo(f"Données personnelles supprimées : {', '.join(purged.classes)}.")
    if plan.refused:
        sys.exit(1)

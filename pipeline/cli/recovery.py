"""When something was lost: `grille restore` puts a backup of the database back;
`grille rebuild`, when no backup is left, builds it again from the campaign's files."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline import campaign as campaign_ops
from pipeline import rebuild as rebuild_ops
from pipeline import state
from pipeline.cli.base import (
    Context,
    cli,
    friendly_errors,
    jobs_option,
    pass_context,
    roster_option,
)
from pipeline.cli.prepare import check_roster
from pipeline.settings import Workspace


def _counts(backup: state.Backup) -> str:
    if backup.students is None:
        return "illisible"
    return f"{backup.students} stagiaire(s), {backup.returns} retour(s)"


def _print_backups(workspace: Workspace, copies: list[state.Backup]) -> None:
    folder = workspace.backups_dir.relative_to(workspace.root).as_posix()
    if not copies:
        click.echo(
            f"Aucune sauvegarde dans {folder} : grille en fait une avant et après chaque "
            "commande qui modifie la base."
        )
        return
    click.echo(f"Sauvegardes de la base ({folder}), de la plus récente à la plus ancienne :")
    for described in copies:
        click.echo(
            f"  {described.path.name}  {described.made_at:%d/%m/%Y %H:%M:%S}  "
            f"{described.size // 1024 + 1} Ko  {_counts(described)}"
        )
    click.echo("Pour en remettre une : grille restore NOM")


@cli.command()
@click.argument("name", required=False, metavar="[SAUVEGARDE]")
@click.option("--list", "list_only", is_flag=True, help="Liste les sauvegardes sans rien changer.")
@pass_context
def restore(ctx: Context, name: str | None, list_only: bool) -> None:
    """Remet une sauvegarde de la base de la campagne (output/grille.sqlite).

    Exemple : grille restore --list   puis   grille restore grille-20270315-101500.sqlite

    Avant et après chaque commande qui modifie la base, grille la copie dans
    output/.sauvegardes/ (les 5 dernières versions sont gardées). Sans NOM, la liste
    des sauvegardes est affichée. La base remplacée est elle-même sauvegardée d'abord
    (ou mise de côté si elle est abîmée) : une restauration peut se défaire.
    """
    workspace = ctx.workspace
    with friendly_errors(workspace.output_dir):
        if list_only or name is None:
            _print_backups(workspace, campaign_ops.list_backups(workspace))
            return
        done = campaign_ops.restore_backup(workspace, name)
    counts = f" ({_counts(done.described)})" if done.described is not None else ""
    click.echo(f"Base de la campagne remise depuis {done.restored.name}{counts}.")
    if done.saved_as is not None:
        click.echo(f"  La base remplacée est gardée dans la sauvegarde {done.saved_as.name}.")
    if done.set_aside is not None:
        click.echo(f"  La base remplacée, abîmée, est mise de côté : {done.set_aside.name}.")
    if done.mismatch:
        click.echo(f"Attention — {done.mismatch}", err=True)
        return
    click.echo("Vérifiez l'état de la campagne : grille status")


# ------------------------------------------------------------------ rebuild from the files


def _print_rebuilt(done: rebuild_ops.RebuildResult) -> None:
    """What `grille rebuild` put back, what it could not, and what is lost."""
    click.echo(
        f"Base de la campagne reconstruite à partir de ses fichiers : {done.students} "
        f"stagiaire(s), {done.workbooks} classeur(s), {done.sent + done.prepared} envoi(s) "
        f"({done.sent} envoyé(s), {done.prepared} message(s) prêt(s)), {done.returns} retour(s) "
        f"({done.refused} refusé(s)), {done.reports} bilan(s) et PDF."
    )
    if done.replaced is not None and done.replaced.saved_as is not None:
        click.echo(
            f"  La base remplacée est gardée dans la sauvegarde {done.replaced.saved_as.name}."
        )
    if done.replaced is not None and done.replaced.set_aside is not None:
        click.echo(
            f"  La base remplacée, abîmée, est mise de côté : {done.replaced.set_aside.name}."
        )
    if done.notes:
        click.echo(
            f"  Notes du professeur reprises de output/suivi.xlsx : {done.notes} stagiaire(s)."
        )
    for name in done.not_in_roster:
        click.echo(
            f"  Attention — {name} n'est pas dans la liste : reconstruit d'après son classeur, "
            "« retiré de la liste »."
        )
    if done.not_in_roster:
        click.echo(
            "  Si votre liste est répartie en plusieurs fichiers, recommencez en les donnant "
            "tous : grille rebuild --replace --roster FICHIER --roster FICHIER."
        )
    for name, why in done.to_generate:
        click.echo(f"  À refaire par « grille generate » ({why}) : {name}")
    for name in done.without_workbook:
        click.echo(f"  Sans classeur (« grille generate » le fera) : {name}")
    for name in done.not_sent:
        click.echo(
            f"  Attention — aucune trace d'envoi du classeur de {name} : « grille send » "
            "l'enverrait ; vérifiez d'abord avec « grille send --dry-run »."
        )
    for file in done.edited_reports:
        click.echo(
            f"  Bilan retouché à la main, laissé tel quel : {file} (le prochain « grille "
            "report » écrit la nouvelle version à côté)."
        )
    if done.skipped:
        click.echo("Non repris :")
        for file, why in done.skipped:
            click.echo(f"  {file} : {why}")
    click.echo("Perdu avec l'ancienne base :")
    click.echo(
        "  les décisions sur les retours « à confirmer » : "
        + (
            f"{done.to_confirm} retour(s) à confirmer de nouveau (« grille confirm »)."
            if done.to_confirm
            else "aucun retour n'est à confirmer."
        )
    )
    click.echo(
        f"  l'historique des relances : seules les dernières sont reprises ({done.reminders} "
        "stagiaire(s) relancé(s), d'après les copies des messages et output/suivi.xlsx)."
    )
    if done.mailbox_read:
        click.echo(
            "  les messages déjà relevés dans la boîte aux lettres : « grille collect --imap » "
            "les relira, et trouvera leurs retours déjà collectés."
        )
    if done.archives:
        click.echo(
            f"  les empreintes des {done.archives} archive(s) de output/archive : « grille "
            "archive verify » les contrôle toujours ; « grille archive » en refait une."
        )
    click.echo("Vérifiez l'état de la campagne : grille status")


@cli.command("rebuild")
@roster_option
@click.option(
    "--grid",
    "grid_paths",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    multiple=True,
    help="Fichier de la grille des classeurs, si ce n'est pas une grille fournie avec grille "
    "(répétable).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Reconstruit même si la base est présente (elle est sauvegardée d'abord).",
)
@jobs_option
@pass_context
def rebuild_command(
    ctx: Context,
    roster_paths: tuple[Path, ...],
    grid_paths: tuple[Path, ...],
    replace: bool,
    jobs: int,
) -> None:
    """Reconstruit la base de la campagne à partir de ses fichiers, sans sauvegarde.

    Exemple : grille rebuild   (ou : grille rebuild --roster 2A.xlsx --roster 2B.xlsx)

    Quand output/grille.sqlite est perdue et qu'aucune sauvegarde ne reste : les
    classeurs (leur identité signée) et la liste des stagiaires redonnent les stagiaires ;
    les retours gardés dans output/retours sont relus ; les messages de output/envoi
    (et envoyes/) redonnent les envois : aucun tuteur n'est sollicité de nouveau. Les
    décisions sur les retours « à confirmer » sont perdues. Code de sortie 1 si des
    fichiers n'ont pas pu être repris (ils sont listés).
    """
    workspace = ctx.workspace
    with friendly_errors(workspace.output_dir):
        done = rebuild_ops.rebuild_step(
            workspace, roster_paths, grid_paths, replace=replace, jobs=jobs
        )
    check_roster(workspace, done.roster, roster_paths, "la base n'a pas été reconstruite")
    for warning in done.tracking_warnings:
        click.echo(warning, err=True)
    _print_rebuilt(done)
    if done.skipped:  # the database is there; some files could not be used
        sys.exit(1)

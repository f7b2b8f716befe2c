"""When something was lost: `grille restore` puts a backup of the database back."""

from __future__ import annotations

import click

from pipeline import campaign as campaign_ops
from pipeline import state
from pipeline.cli.base import Context, cli, friendly_errors, pass_context
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

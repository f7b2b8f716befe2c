"""When something was lost: `grille restore` puts a backup of the database back."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.cli.base import Context, cli, fail, friendly_errors, pass_context
from pipeline.errors import GrilleError
from pipeline.settings import Workspace


def _counts(backup: state.Backup) -> str:
    if backup.students is None:
        return "illisible"
    return f"{backup.students} stagiaire(s), {backup.returns} retour(s)"


def _list_backups(workspace: Workspace) -> None:
    folder = workspace.backups_dir.relative_to(workspace.root).as_posix()
    copies = state.backups(workspace.backups_dir)
    if not copies:
        click.echo(
            f"Aucune sauvegarde dans {folder} : grille en fait une avant et après chaque "
            "commande qui modifie la base."
        )
        return
    click.echo(f"Sauvegardes de la base ({folder}), de la plus récente à la plus ancienne :")
    for path in reversed(copies):
        described = state.describe_backup(path)
        click.echo(
            f"  {path.name}  {described.made_at:%d/%m/%Y %H:%M:%S}  "
            f"{described.size // 1024 + 1} Ko  {_counts(described)}"
        )
    click.echo("Pour en remettre une : grille restore NOM")


def _chosen(workspace: Workspace, name: str) -> Path:
    """The backup the teacher named: a name from the list, or a path to a copy."""
    candidate = workspace.backups_dir / name
    if candidate.is_file():
        return candidate
    path = Path(name)
    if path.is_file():
        return path
    fail(
        f"sauvegarde « {name} » introuvable. « grille restore --list » montre celles de la "
        "campagne.",
        2,
    )


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
        workspace.load_config()  # a campaign folder, or say so
        if list_only or name is None:
            _list_backups(workspace)
            return
        chosen = _chosen(workspace, name)
        with state.run_lock(workspace.output_dir):
            done = state.restore(chosen, workspace.db_path, workspace.backups_dir)
            try:  # do the key and the campaign id still match the restored database?
                Campaign.open(workspace).close()
                mismatch = ""
            except GrilleError as exc:
                mismatch = str(exc)
    restored = state.describe_backup(chosen) if chosen.parent == workspace.backups_dir else None
    counts = f" ({_counts(restored)})" if restored is not None else ""
    click.echo(f"Base de la campagne remise depuis {chosen.name}{counts}.")
    if done.saved_as is not None:
        click.echo(f"  La base remplacée est gardée dans la sauvegarde {done.saved_as.name}.")
    if done.set_aside is not None:
        click.echo(f"  La base remplacée, abîmée, est mise de côté : {done.set_aside.name}.")
    if mismatch:
        click.echo(f"Attention — {mismatch}", err=True)
        return
    click.echo("Vérifiez l'état de la campagne : grille status")

"""Preparing the season: `grille init` (the campaign folder), `grille generate` (workbooks)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from pipeline import campaign as campaign_ops
from pipeline.cli.base import (
    Context,
    cli,
    fail,
    friendly_errors,
    jobs_option,
    open_campaign,
    parse_day,
    pass_context,
    print_problems,
    progress_bar,
    refresh_tracking,
    remember_campaign,
    roster_option,
)
from pipeline.roster import RosterResult
from pipeline.settings import Workspace


@cli.command()
@click.argument(
    "directory",
    required=False,
    metavar="[DOSSIER]",
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--school", default="", metavar="NOM", help="Nom de l'établissement.")
@click.option(
    "--session", default="", metavar="NOM", help="Classe ou session (ex. « BTS MUC 2027 »)."
)
@click.option("--teacher", default="", metavar="NOM", help="Nom du professeur coordinateur.")
@click.option(
    "--teacher-email", default="", metavar="E-MAIL", help="E-mail du professeur coordinateur."
)
@click.option(
    "--deadline", default=None, metavar="JJ/MM/AAAA", help="Date limite de retour (jj/mm/aaaa)."
)
@pass_context
def init(
    ctx: Context,
    directory: Path | None,
    school: str,
    session: str,
    teacher: str,
    teacher_email: str,
    deadline: str | None,
) -> None:
    """Crée un dossier de campagne : configuration, clé secrète, liste à remplir.

    Exemple : grille init campagne-2027 --school "Lycée Jean Moulin"

    Les fichiers existants ne sont jamais remplacés. Une campagne qui a déjà des
    classeurs ne reçoit jamais une nouvelle clé secrète, ni une base vide.
    """
    workspace = Workspace(directory if directory is not None else ctx.root)
    remember_campaign(workspace.root)
    with friendly_errors(workspace.output_dir):
        result = campaign_ops.init_campaign(
            workspace,
            school=school,
            session=session,
            teacher_name=teacher,
            teacher_email=teacher_email,
            deadline=parse_day(deadline),
        )
    click.echo(f"Campagne prête dans « {workspace.root} ».")
    for name in result.created:
        click.echo(f"  créé : {name}")
    for name in result.kept:
        click.echo(f"  conservé (déjà présent) : {name}")
    click.echo(
        "Ensuite : complétez grille.toml et input_templates/roster.xlsx, "
        "puis lancez « grille generate »."
    )


def run_generate(
    workspace: Workspace,
    roster_paths: tuple[Path, ...] = (),
    grid_path: Path | None = None,
    force: bool = False,
    jobs: int = 1,
    new_key: bool = False,
) -> None:
    """`grille generate`: exits 2 on a roster to correct."""
    with (
        open_campaign(workspace, grid_path, new_key=new_key) as opened,
        progress_bar("Classeurs") as progress,
    ):
        result = campaign_ops.generate_workbooks(
            opened, roster_paths, grid_file=grid_path, force=force, new_key=new_key, jobs=jobs,
            progress=progress,
        )  # fmt: skip
        if result.generated:
            refresh_tracking(workspace, opened.db)
    print_generation(workspace, result, roster_paths)


def check_roster(
    workspace: Workspace, roster: RosterResult, roster_paths: Sequence[Path], consequence: str
) -> None:
    """The problems of the roster read from `roster_paths` (by default the campaign's),
    its warnings too; exits 2 when it has errors (`consequence` says what was not done) or
    no student. Also run by `grille rebuild`."""
    paths = list(roster_paths) or [workspace.roster_path]  # as `read_rosters` was given them
    label = ", ".join(f"« {path.name or path} »" for path in paths)
    if not roster.valid:
        errors = [p for p in roster.problems if p.severity != "warning"]
        click.echo(
            f"Liste des stagiaires {label} : {len(errors)} problème(s) à corriger ; {consequence}.",
            err=True,
        )
        print_problems(roster.problems)
        sys.exit(2)
    print_problems([p for p in roster.problems if p.severity == "warning"])
    if not roster.students:
        fail(f"la liste des stagiaires {label} ne contient aucun stagiaire.", 2)


def print_generation(
    workspace: Workspace, result: campaign_ops.GenerateResult, roster_paths: Sequence[Path] = ()
) -> None:
    """The roster's problems (exit 2 when it blocks), then each workbook made. Also run by
    `grille demo`."""
    roster = result.roster
    check_roster(workspace, roster, roster_paths, "aucun classeur n'a été produit")
    if len(roster.files) > 1:
        click.echo(
            f"Liste des stagiaires : {len(roster.students)} stagiaire(s) dans "
            f"{len(roster.files)} fichier(s)."
        )
    for student in result.created:
        path = result.files[student.student_id].relative_to(workspace.root)
        click.echo(f"  créé : {student.label} → {path}")
    for student, reason in result.updated:
        path = result.files[student.student_id].relative_to(workspace.root)
        click.echo(f"  régénéré ({reason}) : {student.label} → {path}")
    for student in result.removed:
        click.echo(
            f"  Attention — {student.label} n'est plus dans la liste : son classeur est conservé."
        )
    if result.removed:
        click.echo(
            "  Si votre liste est répartie en plusieurs fichiers, donnez-les tous : "
            "--roster FICHIER --roster FICHIER, ou --roster DOSSIER."
        )
    folder = workspace.workbooks_dir.relative_to(workspace.root)
    click.echo(
        f"{len(result.created)} classeur(s) créé(s), {len(result.updated)} régénéré(s), "
        f"{len(result.unchanged)} inchangé(s), dans {folder}."
    )
    if result.new_key:
        click.echo(
            "Nouvelle clé secrète adoptée : sauvegardez .grille/cle_secrete. Les classeurs "
            "signés avec l'ancienne clé ne sont plus reconnus : envoyez les nouveaux aux "
            "tuteurs (« grille send » ; --class ou --student pour choisir lesquels)."
        )


@cli.command()
@roster_option
@click.option(
    "--grid",
    "grid_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Fichier de grille (tableur .xlsx ou .toml ; voir « grille grid »). Par défaut : la "
    "grille déjà utilisée par la campagne, sinon la grille BTS MUC fournie.",
)
@click.option("--force", is_flag=True, help="Refait aussi les classeurs inchangés.")
@click.option(
    "--new-key",
    is_flag=True,
    help="Seulement si la clé secrète (.grille/cle_secrete) est perdue sans sauvegarde : "
    "adopte une nouvelle clé et refait tous les classeurs, à renvoyer aux tuteurs.",
)
@jobs_option
@pass_context
def generate(
    ctx: Context,
    roster_paths: tuple[Path, ...],
    grid_path: Path | None,
    force: bool,
    jobs: int,
    new_key: bool = False,
) -> None:
    """Fabrique un classeur Excel d'évaluation par stagiaire de la liste.

    Exemple : grille generate --roster stagiaires.csv

    Une liste en plusieurs fichiers : grille generate --roster 2A.xlsx --roster 2B.xlsx,
    ou grille generate --roster DOSSIER (tous les .xlsx et .csv du dossier).

    Les classeurs vont dans output/classeurs/<classe>/. Relancer la commande ne refait
    que les classeurs dont la ligne a changé.
    """
    run_generate(ctx.workspace, roster_paths, grid_path, force, jobs, new_key)

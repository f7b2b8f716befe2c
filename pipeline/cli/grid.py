"""The evaluation grids: `grille grid export | check | list`.

A teacher writes a grid in a spreadsheet (`export` gives one to start from), checks it
(`check`: every problem at once, by sheet and cell), then uses it with
`grille generate --grid ma_grille.xlsx`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.campaign import find_grid
from pipeline.cli.base import Context, cli, fail, friendly_errors, open_campaign, pass_context
from pipeline.errors import GridError
from pipeline.files import atomic_write_bytes
from pipeline.grid import Grid, grid_to_toml, shipped_grids
from pipeline.grid_sheet import check_grid_file, problem_line, write_grid_workbook


def _in_campaign(ctx: Context) -> bool:
    return ctx.workspace.config_path.is_file()


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count > 1 else ''}"


def _describe(grid: Grid) -> str:
    return (
        f"« {grid.id} » version {grid.version} — {grid.diploma} "
        f"({_plural(len(grid.sections), 'section')}, {_plural(len(grid.criteria), 'critère')})"
    )


@cli.group(name="grid", subcommand_metavar="COMMANDE [ARGUMENTS]...")
def grid_group() -> None:
    """Les grilles d'évaluation : les écrire dans un tableur, les vérifier, les lister.

    \b
    Exemple, pour écrire votre propre grille :
    grille grid export ma_grille.xlsx      un tableur à modifier (la grille BTS MUC)
    grille grid check ma_grille.xlsx       vérifie la grille, tous les problèmes à la fois
    grille generate --grid ma_grille.xlsx  fabrique les classeurs avec elle
    """


@grid_group.command("export")
@click.argument("target", metavar="FICHIER.xlsx", type=click.Path(path_type=Path))
@click.option(
    "--grid",
    "grid_name",
    default=None,
    metavar="NOM_OU_FICHIER",
    help="La grille à écrire : une grille fournie (voir « grille grid list »), un fichier "
    ".toml ou .xlsx, ou l'identifiant d'une grille de la campagne. Par défaut : la grille "
    "de la campagne, sinon la grille BTS MUC fournie.",
)
@click.option("--force", is_flag=True, help="Remplace le fichier s'il existe déjà.")
@pass_context
def export(ctx: Context, target: Path, grid_name: str | None, force: bool) -> None:
    """Écrit une grille dans un tableur à modifier (Excel, LibreOffice, Google Sheets).

    Exemple : grille grid export --grid bts_muc_stage ma_grille.xlsx

    Une feuille par sorte d'éléments (sections, critères, échelle, dimensions…), une ligne
    par élément ; la feuille LISEZMOI explique chaque colonne. Un fichier existant n'est
    jamais remplacé sans --force. Un nom en .toml écrit la grille au format des grilles
    fournies (pour les développeurs).
    """
    kind = target.suffix.lower()
    if kind not in (".xlsx", ".toml"):
        fail(
            f"« {target.name} » : la grille s'écrit dans un tableur Excel (.xlsx), ou pour un "
            "développeur dans un fichier .toml.",
            2,
        )
    if target.is_dir():
        fail(f"« {target} » est un dossier : indiquez le nom du fichier à écrire.", 2)
    if target.exists() and not force:
        fail(
            f"« {target} » existe déjà : choisissez un autre nom, ou ajoutez --force pour le "
            "remplacer.",
            2,
        )
    with friendly_errors(ctx.workspace.output_dir):
        grid = find_grid(ctx.workspace, grid_name)
    with friendly_errors():
        data = write_grid_workbook(grid) if kind == ".xlsx" else grid_to_toml(grid).encode()
        atomic_write_bytes(target, data)
    click.echo(f"Grille {_describe(grid)} écrite dans « {target} ».")
    if kind == ".toml":
        return
    click.echo(
        "Modifiez-la dans Excel, LibreOffice ou Google Sheets (la feuille LISEZMOI explique "
        f"chaque colonne), puis vérifiez-la : grille grid check {target.name}"
    )


@grid_group.command("check")
@click.argument(
    "path", metavar="FICHIER", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@pass_context
def check(ctx: Context, path: Path) -> None:
    """Vérifie une grille (tableur .xlsx ou fichier .toml) : tous les problèmes à la fois.

    Exemple : grille grid check ma_grille.xlsx

    Chaque problème est nommé par sa feuille et sa cellule. Dans une campagne dont les
    classeurs sont partis, vérifie aussi que la grille ne retire ni ne renomme de critère.
    Code de sortie 2 s'il y a un problème.
    """
    result = check_grid_file(path)
    if result.grid is None:
        if result.unreadable:
            fail(result.problems[0].message, 2)
        click.echo(
            f"Grille « {path.name} » : {_plural(len(result.problems), 'problème')} à "
            "corriger, puis relancez « grille grid check » :",
            err=True,
        )
        for problem in result.problems:
            click.echo(f"  - {problem_line(problem)}", err=True)
        sys.exit(2)
    grid = result.grid
    if _in_campaign(ctx):
        with open_campaign(ctx.workspace, lock=False) as opened:
            try:
                opened.check_grid_edit(grid)
            except GridError as exc:
                fail(str(exc), 2)
    ge = grid.global_evaluation
    click.echo(f"Grille « {path.name} » : aucun problème.")
    click.echo(f"  {grid.title} — {grid.diploma}")
    click.echo(f"  identifiant « {grid.id} », version {grid.version}")
    click.echo(f"  {_plural(len(grid.sections), 'section')} :")
    for section in grid.sections:
        click.echo(
            f"    {section.sheet} : {_plural(len(section.criteria), 'critère')}, "
            f"notés par {section.rater}"
        )
    click.echo(
        f"  {_plural(len(grid.criteria), 'critère')} en tout, notés {' / '.join(grid.scale_codes)}"
    )
    click.echo(
        f"  {_plural(len(ge.dimensions), 'dimension')} d'évaluation globale, note maximale "
        f"{ge.maximum} points"
    )
    click.echo(f"Pour l'utiliser : grille generate --grid {path.name}")


@grid_group.command("list")
@pass_context
def list_grids(ctx: Context) -> None:
    """Liste les grilles fournies avec grille et celles de la campagne.

    Exemple : grille grid list
    """
    with friendly_errors():
        shipped = shipped_grids()
    click.echo("Grilles fournies (à utiliser avec grille grid export --grid NOM) :")
    for stem, grid in shipped:
        click.echo(f"  {stem} : {_describe(grid)}")
    if not _in_campaign(ctx):
        click.echo(
            "Pour voir les grilles d'une campagne, lancez la commande dans son dossier "
            "(ou avec --dir)."
        )
        return
    with open_campaign(ctx.workspace, lock=False) as opened:
        stored = opened.stored_grids()
        current = (opened.grid.id, opened.grid.version)
    if not stored:
        click.echo(
            "Aucune grille dans cette campagne pour l'instant : « grille generate » prend la "
            "grille BTS MUC fournie, ou celle donnée par --grid."
        )
        return
    click.echo("Grilles de cette campagne (gardées dans sa base) :")
    for grid, stored_at in stored:
        mark = " — en service" if (grid.id, grid.version) == current else ""
        day = f"{stored_at[8:10]}/{stored_at[5:7]}/{stored_at[:4]}"
        click.echo(f"  {_describe(grid)}, enregistrée le {day}{mark}")

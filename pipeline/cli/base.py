"""What every command shares: French click, the campaign context, errors, progress, options."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from pipeline import state
from pipeline.campaign import Campaign, rewrite_tracking
from pipeline.errors import GrilleError, Problem, french_os_error, problem_text, storage_problem
from pipeline.parallel import default_jobs
from pipeline.settings import Workspace

# ------------------------------------------------------------------ French click

_CLICK_FRENCH = {
    "Usage:": "Utilisation :",
    "Options": "Options",
    "Commands": "Commandes",
    "Show this message and exit.": "Affiche cette aide et quitte.",
    "Show the version and exit.": "Affiche la version et quitte.",
    "%(prog)s, version %(version)s": "%(prog)s, version %(version)s",
    "Error: {message}": "Erreur : {message}",
    "Try '{command} {option}' for help.": "Essayez « {command} {option} » pour l'aide.",
    "No such option {name!r}.": "Option inconnue : {name!r}.",
    "No such command {name!r}.": "Commande inconnue : {name!r}.",
    "Missing argument": "Argument manquant",
    "Missing option": "Option manquante",
    "Missing parameter": "Paramètre manquant",
    "Missing command.": "Commande manquante.",
    "Invalid value for {param_hint}: {message}": "Valeur invalide pour {param_hint} : {message}",
    "Invalid value: {message}": "Valeur invalide : {message}",
    "Option {name!r} does not take a value.": "L'option {name!r} ne prend pas de valeur.",
    "Argument {name!r} takes {nargs} values.": "L'argument {name!r} prend {nargs} valeurs.",
    "{name} {filename!r} does not exist.": "{name} {filename!r} introuvable.",
    "{name} {filename!r} is a directory.": "{name} {filename!r} est un dossier.",
    "{name} {filename!r} is a file.": "{name} {filename!r} est un fichier.",
    "{name} {filename!r} is not readable.": "{name} {filename!r} illisible.",
    "{name} {filename!r} is not writable.": "{name} {filename!r} non modifiable.",
    "{value!r} is not a valid {number_type}.": "{value!r} n'est pas un nombre valide.",
    "{value} is not in the range {range}.": "{value} n'est pas dans l'intervalle {range}.",
    "Choose from:\n\t{choices}": "Choisissez parmi :\n\t{choices}",
    "file": "Fichier",
    "directory": "Dossier",
    "path": "Chemin",
    "Aborted!": "Interrompu.",
    "default: {default}": "par défaut : {default}",
    "env var: {var}": "variable d'environnement : {var}",
    "Did you mean {possibility}?": "Vouliez-vous dire {possibility} ?",
    "(Did you mean one of: {possibilities}?)": "(Vouliez-vous dire : {possibilities} ?)",
    "Got unexpected extra argument ({args})": "Argument en trop ({args})",
    "Got unexpected extra arguments ({args})": "Arguments en trop ({args})",
    "Option {name!r} requires an argument.": "L'option {name!r} demande une valeur.",
    "Option {name!r} requires {nargs} arguments.": "L'option {name!r} demande {nargs} valeurs.",
    "{value!r} is not {choice}.": "{value!r} n'est pas {choice}.",
    "{value!r} is not one of {choices}.": "{value!r} n'est pas parmi {choices}.",
    "Missing parameter: {param_name}": "Paramètre manquant : {param_name}",
    "Missing {param_type}": "{param_type} manquant",
    "Positional arguments": "Arguments",
    "Takes {nargs} values but 1 was given.": "Prend {nargs} valeurs, 1 donnée.",
    "Takes {nargs} values but {len} were given.": "Prend {nargs} valeurs, {len} données.",
    "{len_type} values are required, but {len_value} was given.": (
        "{len_type} valeurs sont demandées, {len_value} donnée."
    ),
    "{len_type} values are required, but {len_value} were given.": (
        "{len_type} valeurs sont demandées, {len_value} données."
    ),
    "Value must be an iterable.": "La valeur doit être une liste.",
    "{value!r} does not match the format {format}.": ("{value!r} ne suit pas le format {format}."),
    "{value!r} does not match the formats {formats}.": (
        "{value!r} ne suit aucun des formats {formats}."
    ),
    "{value!r} is not a valid boolean. Recognized values: {states}": (
        "{value!r} n'est pas une valeur oui/non. Valeurs reconnues : {states}"
    ),
    "{value!r} is not a valid UUID.": "{value!r} n'est pas un identifiant UUID valide.",
    "{name} {filename!r} is not executable.": "{name} {filename!r} non exécutable.",
    "Could not open file {filename!r}: {message}": (
        "Ouverture du fichier {filename!r} impossible : {message}"
    ),
    "unknown error": "erreur inconnue",
    "(dynamic)": "(calculé)",
    "deprecated": "obsolète",
    "Do you want to continue?": "Voulez-vous continuer ?",
    "Confirm the action without prompting.": "Confirme sans poser la question.",
    "Press any key to continue...": "Appuyez sur une touche pour continuer…",
    "Repeat for confirmation": "Répétez pour confirmer",
    "Error: The two entered values do not match.": (
        "Erreur : les deux valeurs saisies sont différentes."
    ),
    "Error: invalid input": "Erreur : saisie invalide",
}
# Messages click raises only for a programming error in grille itself (never a teacher's
# typing): left in English, and listed so that a test can tell them from forgotten ones.
CLICK_DEVELOPER_MESSAGES = frozenset(
    {
        "Could not determine name for option with declarations {decls!r}",
        "No options defined but a name was passed ({name}). Did you mean to declare an "
        "argument instead? Did you mean to pass '--{name}'?",
        "Arguments take exactly one parameter declaration, got {length}: {decls}.",
        "Name '{name}' defined twice",
        "Boolean option {decl!r} cannot use the same flag for true/false.",
        "Invalid start character for option ({option})",
        "Unknown color {colour!r}",
        "Choice({choices})",
        "DeprecationWarning: The command {name!r} is deprecated.{extra_message}",
        "DeprecationWarning: The {param_type} {name!r} is deprecated.{extra_message}",
    }
)


def _french(message: str) -> str:
    return _CLICK_FRENCH.get(message, message)


def _french_n(singular: str, plural: str, n: int) -> str:
    return _french(singular if n == 1 else plural)


def _use_french_click() -> None:
    """Translate click's own messages (it prints them through gettext)."""
    import click.core
    import click.decorators
    import click.exceptions
    import click.formatting
    import click.parser
    import click.termui
    import click.types

    click.types.StringParamType.name = "texte"  # the metavars click derives from types
    click.types.IntParamType.name = "entier"
    click.types.IntRange.name = "entier"
    for module in (
        click.core,
        click.decorators,
        click.exceptions,
        click.formatting,
        click.parser,
        click.termui,
        click.types,
    ):
        module._ = _french  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = _french_n  # type: ignore[attr-defined]


_use_french_click()

# ------------------------------------------------------------------ plumbing


FLOW = (
    "init", "generate", "send", "collect", "confirm", "status", "remind", "report", "archive",
    "purge",
)  # fmt: skip


class FlowGroup(click.Group):
    """Lists commands in the order of the season (`FLOW`), not alphabetically; others last."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {name: index for index, name in enumerate(FLOW)}
        return sorted(self.commands, key=lambda name: (rank.get(name, len(FLOW)), name))


_campaign_root: list[Path] = []  # the campaign of this command, for the crash log


def remember_campaign(root: Path) -> None:
    """Note the campaign folder this command works on (its crash log goes there)."""
    _campaign_root[:] = [root]


def current_campaign() -> Path | None:
    """The campaign folder of the running command, if known."""
    return _campaign_root[0] if _campaign_root else None


@dataclass
class Context:
    """Shared by every command: the campaign folder."""

    root: Path

    def __post_init__(self) -> None:
        remember_campaign(self.root)

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.root)


pass_context = click.make_pass_decorator(Context)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a French error on stderr and exit with `code`."""
    click.echo(f"Erreur : {message}", err=True)
    sys.exit(code)


@contextmanager
def friendly_errors(output_dir: Path | None = None) -> Iterator[None]:
    """Turn library errors into French messages and exit codes, never a traceback.

    A full disk or a read-only campaign (whoever hits it first: SQLite or a file write)
    is named as such, exit code 1. `output_dir` is where the command writes.
    """
    try:
        yield
    except GrilleError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrompu par l'utilisateur.", 130)
    except OSError as exc:
        storage = storage_problem(exc, output_dir)
        if storage is not None:
            fail(storage)
        where = f" ({exc.filename})" if exc.filename else ""
        fail(f"accès au fichier impossible{where} : {french_os_error(exc)}.")
    except sqlite3.Error as exc:
        storage = storage_problem(exc, output_dir)
        if storage is not None:
            fail(storage)
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in (5, 6):  # BUSY, LOCKED
            fail(
                "la base de la campagne (output/grille.sqlite) est occupée par un autre "
                "programme depuis plus de 30 secondes : fermez-le, puis relancez la commande."
            )
        raise  # anything else from SQLite is a bug: an internal error, with its log


@contextmanager
def open_campaign(
    workspace: Workspace,
    grid_file: Path | None = None,
    *,
    lock: bool = True,
    new_key: bool = False,
) -> Iterator[Campaign]:
    """The opened campaign, closed after; library errors in French. With `lock` (commands
    that write): one command at a time on this campaign, leftovers of a killed run
    removed, and the database backed up before and after (when it changed)."""
    with (
        friendly_errors(workspace.output_dir),
        state.run_lock(workspace.output_dir) if lock else nullcontext(),
    ):
        opened = Campaign.open(workspace, grid_file, backup=lock, new_key=new_key)
        try:
            yield opened
            if lock:  # the newest copy holds this command's work too
                _backup_after(workspace)
        finally:
            opened.close()


def _backup_after(workspace: Workspace) -> None:
    """Copy the database once the command's work is done; a failure only warns: the work
    itself is safe in the database."""
    try:
        state.backup(workspace.db_path, workspace.backups_dir)
    except (GrilleError, OSError, sqlite3.Error) as exc:
        reason = problem_text(exc, workspace.backups_dir)
        click.echo(f"Attention — sauvegarde de la base non faite : {reason}", err=True)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for a step that says how far it is, `(done, total)`: shown
    once the step knows its total, if there is much to do (silent otherwise)."""
    bar: Any = None
    with ExitStack() as stack:

        def show(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                if total < 20 or not sys.stderr.isatty():
                    bar = False
                else:
                    bar = stack.enter_context(
                        click.progressbar(length=total, label=label, file=sys.stderr)
                    )
            if bar:
                bar.update(done - bar.pos)

        yield show


@contextmanager
def progress_counter(label: str) -> Iterator[Callable[[int], None]]:
    """A running count on stderr when the total is not known in advance."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        click.echo(f"\r{label} : {done}", nl=False, err=True)

    try:
        yield advance
    finally:
        if done:
            click.echo(err=True)


def refresh_tracking(workspace: Workspace, db: sqlite3.Connection) -> None:
    """Rewrite output/suivi.xlsx; if it cannot be (open in Excel…), warn and go on:
    the state is safe in the database and the next command rewrites it."""
    for warning in rewrite_tracking(workspace, db):
        click.echo(warning, err=True)


def print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        prefix = "Attention" if problem.severity == "warning" else "Erreur"
        click.echo(f"  {prefix} — {problem}", err=True)


def parse_day(value: str | None) -> date | None:
    if not value:
        return None
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(value.strip(), fmt).date()
        except ValueError:
            continue
    raise click.BadParameter(f"date « {value} » invalide : écrivez-la jj/mm/aaaa.")


# ------------------------------------------------------------------ commands

jobs_option = click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=default_jobs(),
    show_default="tous les cœurs",
    metavar="N",
    help="Nombre de processus.",
)
student_option = click.option(
    "--student",
    "student_ids",
    multiple=True,
    metavar="IDENTIFIANT",
    help="Identifiant d'un stagiaire (répétable ; voir grille status --format csv).",
)
class_option = click.option(
    "--class", "class_name", default=None, metavar="CLASSE", help="Seulement cette classe."
)
roster_option = click.option(
    "--roster",
    "roster_paths",
    type=click.Path(path_type=Path),
    multiple=True,
    metavar="FICHIER|DOSSIER",
    help="Liste des stagiaires (.xlsx ou .csv), ou dossier de listes (tous ses .xlsx et .csv). "
    "Répétez l'option pour lire plusieurs fichiers comme une seule liste. Par défaut : "
    "input_templates/roster.xlsx, sinon input_templates/roster.csv.",
)


@click.group(
    cls=FlowGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    subcommand_metavar="COMMANDE [ARGUMENTS]...",
)
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    envvar="GRILLE_DIR",
    help="Dossier de la campagne.",
)
@click.version_option(package_name="grille", message="grille %(version)s")
@click.pass_context
def cli(ctx: click.Context, root: Path) -> None:
    """grille : évaluation des stages de BTS avec les tuteurs en entreprise.

    \b
    Le déroulé d'une campagne :
      grille init         crée la campagne (configuration, liste des stagiaires)
      grille generate     fabrique un classeur Excel par stagiaire
      grille send         envoie à chaque tuteur les classeurs de ses stagiaires
      grille collect      lit les classeurs retournés (fichiers, dossiers, e-mails, zip)
      grille confirm      confirme ou rejette un retour « à confirmer » (identité cachée absente)
      grille status       affiche où en est chaque stagiaire
      grille remind       relance les tuteurs : ce qui manque, classeur joint
      grille report       écrit les bilans Word (un par stagiaire, un par classe)
      grille archive      archive chaque classe : bilans, retours, suivi, manifeste vérifiable
      grille purge        supprime les données personnelles d'une classe archivée et vérifiée
      grille demo         démonstration complète sur une classe fictive
      grille ui           la même campagne dans le navigateur, sans terminal

    \b
    Les outils :
      grille grid         écrit la grille dans un tableur, la vérifie, la liste
      grille restore      remet une sauvegarde de la base de la campagne
      grille rebuild      reconstruit la base à partir des fichiers de la campagne
    """
    ctx.obj = Context(root)

"""The `grille` command line: a thin French layer over the library, one command per step.

Each command opens the campaign, calls one library function and prints its result.
Library errors (`GrilleError`) become a French message and a non-zero exit code;
no traceback reaches the teacher.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click

from pipeline import archive, mail, state, tracking
from pipeline import campaign as campaign_ops
from pipeline import collect as collect_ops
from pipeline import demo as demo_data
from pipeline.errors import GrilleError, Problem, french_os_error
from pipeline.parallel import default_jobs
from pipeline.roster import RosterError, read_roster
from pipeline.settings import Workspace
from pipeline.validation import STATUS_LABELS

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
}


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
    import click.types

    for module in (
        click.core,
        click.decorators,
        click.exceptions,
        click.formatting,
        click.parser,
        click.types,
    ):
        module._ = _french  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = _french_n  # type: ignore[attr-defined]


_use_french_click()

# ------------------------------------------------------------------ plumbing


class FlowGroup(click.Group):
    """Lists commands in the order of the flow, not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@dataclass
class Context:
    """Shared by every command: the campaign folder."""

    root: Path

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.root)


pass_context = click.make_pass_decorator(Context)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a French error on stderr and exit with `code`."""
    click.echo(f"Erreur : {message}", err=True)
    sys.exit(code)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn library errors into French messages and exit codes, never a traceback."""
    try:
        yield
    except GrilleError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrompu par l'utilisateur.", 130)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        fail(f"accès au fichier impossible{where} : {french_os_error(exc)}.")


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for long work (silent when there is little to do)."""
    if total < 20 or not sys.stderr.isatty():
        yield lambda n: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


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
    try:
        tracking.write_tracking(workspace.tracking_path, tracking.student_statuses(db))
    except GrilleError as exc:
        click.echo(f"Attention — suivi non mis à jour : {exc}", err=True)


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
    help="Nombre de processus.",
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
      grille status       affiche où en est chaque stagiaire
      grille report       écrit les bilans Word (un par stagiaire, un par classe)
      grille archive      archive bilans, retours et suivi, avec un manifeste vérifiable
      grille demo         démonstration complète sur une classe fictive
    """
    ctx.obj = Context(root)


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--school", default="", help="Nom de l'établissement.")
@click.option("--session", default="", help="Classe ou session (ex. « BTS MUC 2027 »).")
@click.option("--teacher", default="", help="Nom du professeur coordinateur.")
@click.option("--teacher-email", default="", help="E-mail du professeur coordinateur.")
@click.option("--deadline", default=None, help="Date limite de retour (jj/mm/aaaa).")
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

    Les fichiers existants ne sont jamais remplacés.
    """
    workspace = Workspace(directory if directory is not None else ctx.root)
    with friendly_errors():
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


def _run_generate(
    workspace: Workspace,
    roster_path: Path | None,
    grid_path: Path | None,
    force: bool,
    jobs: int,
) -> None:
    roster_file = roster_path or workspace.roster_path
    with friendly_errors(), state.run_lock(workspace.output_dir):
        opened = campaign_ops.Campaign.open(workspace, grid_path)
        try:
            try:
                roster = read_roster(roster_file)
            except RosterError as exc:
                fail(str(exc), 2)
            warnings = [p for p in roster.problems if p.severity == "warning"]
            if not roster.valid:
                errors = [p for p in roster.problems if p.severity != "warning"]
                click.echo(
                    f"Liste des stagiaires « {roster_file.name} » : {len(errors)} problème(s) "
                    "à corriger ; aucun classeur n'a été produit.",
                    err=True,
                )
                print_problems(roster.problems)
                sys.exit(2)
            print_problems(warnings)
            if not roster.students:
                fail(f"« {roster_file.name} » ne contient aucun stagiaire.", 2)
            opened.remember_grid(grid_path)
            with progress_bar(len(roster.students), "Classeurs") as advance:
                result = campaign_ops.generate(
                    opened, roster.students, force=force, jobs=jobs, progress=advance
                )
            refresh_tracking(workspace, opened.db)
        finally:
            opened.close()
    for student in result.created:
        path = result.files[student.student_id].relative_to(workspace.root)
        click.echo(f"  créé : {student.display_name} ({student.class_name}) → {path}")
    for student, reason in result.updated:
        path = result.files[student.student_id].relative_to(workspace.root)
        click.echo(
            f"  régénéré ({reason}) : {student.display_name} ({student.class_name}) → {path}"
        )
    for name in result.removed:
        click.echo(f"  Attention — {name} n'est plus dans la liste : son classeur est conservé.")
    folder = workspace.workbooks_dir.relative_to(workspace.root)
    click.echo(
        f"{len(result.created)} classeur(s) créé(s), {len(result.updated)} régénéré(s), "
        f"{len(result.unchanged)} inchangé(s), dans {folder}."
    )


@cli.command()
@click.option(
    "--roster",
    "roster_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Liste des stagiaires (.xlsx ou .csv). Par défaut : input_templates/roster.xlsx.",
)
@click.option(
    "--grid",
    "grid_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Fichier de grille (.toml). Par défaut : la grille déjà utilisée par la campagne, "
    "sinon la grille BTS MUC fournie.",
)
@click.option("--force", is_flag=True, help="Refait aussi les classeurs inchangés.")
@jobs_option
@pass_context
def generate(
    ctx: Context, roster_path: Path | None, grid_path: Path | None, force: bool, jobs: int
) -> None:
    """Fabrique un classeur Excel d'évaluation par stagiaire de la liste.

    Exemple : grille generate --roster stagiaires.csv

    Les classeurs vont dans output/classeurs/<classe>/. Relancer la commande ne refait
    que les classeurs dont la ligne a changé.
    """
    _run_generate(ctx.workspace, roster_path, grid_path, force, jobs)


@cli.command()
@click.option("--dry-run", is_flag=True, help="N'envoie rien : écrit les messages (.eml) à relire.")
@click.option("--resend", is_flag=True, help="Renvoie aussi les classeurs déjà envoyés.")
@click.option(
    "--student", "student_ids", multiple=True, help="Identifiant d'un stagiaire (répétable)."
)
@click.option("--class", "class_name", default=None, help="Seulement cette classe.")
@pass_context
def send(
    ctx: Context, dry_run: bool, resend: bool, student_ids: tuple[str, ...], class_name: str | None
) -> None:
    """Envoie à chaque tuteur, en un seul message, les classeurs de ses stagiaires.

    Exemple : grille send --dry-run   (puis, après relecture : grille send)

    Le serveur d'envoi se règle dans la section [envoi] de grille.toml ; le mot de passe
    est demandé, ou lu dans la variable GRILLE_SMTP_MOT_DE_PASSE. Un classeur déjà
    envoyé ne l'est pas deux fois (sauf --resend).
    """
    workspace = ctx.workspace
    failures = 0
    with friendly_errors(), state.run_lock(workspace.output_dir):
        opened = campaign_ops.Campaign.open(workspace)
        try:
            pending = mail.pending_messages(
                opened.db,
                workspace.root,
                resend=resend,
                student_ids=set(student_ids) or None,
                class_name=class_name,
            )
            if not pending:
                click.echo("Rien à envoyer : chaque classeur a déjà été envoyé (voir --resend).")
                return
            built, errors = mail.build_messages(opened.config, pending)
            failures += len(errors)
            for error in errors:
                click.echo(f"  Erreur — {error}", err=True)
            if dry_run:
                folder = workspace.output_dir / "envois"
                for message, email in built:
                    path = mail.write_preview(email, folder)
                    click.echo(
                        f"  aperçu : {message.tutor_name} <{message.tutor_email}>, "
                        f"{len(message.workbooks)} classeur(s) → {path.relative_to(workspace.root)}"
                    )
                click.echo(f"{len(built)} message(s) à relire ; rien n'a été envoyé.")
            else:
                smtp = opened.config.smtp
                password = None
                if smtp.user:
                    password = os.environ.get("GRILLE_SMTP_MOT_DE_PASSE") or click.prompt(
                        f"Mot de passe de {smtp.user} sur {smtp.host}", hide_input=True
                    )
                db = opened.db
                report = mail.send_messages(
                    smtp,
                    password,
                    built,
                    on_sent=lambda m, mid: mail.record_sending(db, m, mid, state.now()),
                )
                for message, _ in report.sent:
                    click.echo(
                        f"  envoyé : {message.tutor_name} <{message.tutor_email}>, "
                        f"{len(message.workbooks)} classeur(s)"
                    )
                for message, reason in report.failed:
                    failures += 1
                    click.echo(
                        f"  Erreur — {message.tutor_name} <{message.tutor_email}> : {reason}",
                        err=True,
                    )
                refresh_tracking(workspace, db)
                click.echo(
                    f"{len(report.sent)} message(s) envoyé(s), {len(report.failed)} en échec."
                )
        finally:
            opened.close()
    if failures:
        sys.exit(1)


MAX_PROBLEMS_SHOWN = 8  # per return on screen; the tracking workbook has them all


def _describe(recorded: collect_ops.Recorded) -> str:
    outcome = recorded.outcome
    assert outcome is not None
    if outcome.match == collect_ops.MATCH_REJECTED:
        return f"  Refusé — {recorded.origin} : {outcome.match_note}"
    label = STATUS_LABELS.get(outcome.status or "", outcome.status or "")
    line = f"  {recorded.student_name} — {label} — {recorded.origin}"
    if outcome.match == collect_ops.MATCH_VISIBLE:
        line += f"\n      À confirmer — {outcome.match_note}"
    shown = outcome.problems[:MAX_PROBLEMS_SHOWN]
    for problem in shown:
        prefix = "" if problem["severity"] == "error" else "Attention — "
        line += f"\n      • {prefix}{problem['message']}"
    if len(outcome.problems) > len(shown):
        line += (
            f"\n      … et {len(outcome.problems) - len(shown)} autre(s) point(s) : "
            "la liste complète est dans output/suivi.xlsx et « grille status --format json »."
        )
    return line


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@jobs_option
@pass_context
def collect(ctx: Context, paths: tuple[Path, ...], jobs: int) -> None:
    """Lit les classeurs retournés : fichiers, dossiers, e-mails (.eml, mbox), archives .zip.

    Exemple : grille collect ~/Téléchargements/retours messages.mbox

    Chaque fichier est reconnu (identité signée), vérifié, et son état enregistré ;
    l'original est conservé dans output/retours/. Met à jour output/suivi.xlsx.
    Code de sortie 1 si des fichiers n'ont pas pu être lus.
    """
    workspace = ctx.workspace
    with friendly_errors(), state.run_lock(workspace.output_dir):
        opened = campaign_ops.Campaign.open(workspace)
        try:
            with progress_counter("Retours traités") as advance:
                result = collect_ops.collect(opened, list(paths), jobs=jobs, progress=advance)
            refresh_tracking(workspace, opened.db)
        finally:
            opened.close()
    for recorded in result.recorded:
        click.echo(_describe(recorded))
    for origin in result.duplicates:
        click.echo(f"  Déjà collecté — {origin} : ignoré.")
    print_problems(result.problems)
    rejected = sum(
        1 for r in result.recorded if r.outcome and r.outcome.match == collect_ops.MATCH_REJECTED
    )
    failed = rejected + sum(1 for p in result.problems if p.severity == "error")
    click.echo(
        f"{len(result.recorded) - rejected} retour(s) enregistré(s), {failed} fichier(s) "
        f"refusé(s) ou illisible(s), {len(result.duplicates)} déjà collecté(s). "
        f"Suivi : {workspace.tracking_path.relative_to(workspace.root)}."
    )
    if result.failed:
        sys.exit(1)


def _csv_safe(value: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@cli.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Présentation : tableau, CSV (;) ou JSON.",
)
@click.option("--class", "class_name", default=None, help="Seulement cette classe.")
@pass_context
def status(ctx: Context, output_format: str, class_name: str | None) -> None:
    """Affiche l'état de chaque stagiaire : généré, envoyé, incomplet, invalide, complet.

    Exemple : grille status --format json > etat.json
    """
    workspace = ctx.workspace
    with friendly_errors():
        opened = campaign_ops.Campaign.open(workspace)
        try:
            statuses = tracking.student_statuses(opened.db)
        finally:
            opened.close()
    if class_name:
        statuses = [s for s in statuses if s.class_name == class_name]
    if output_format == "json":
        import json

        click.echo(json.dumps([s.to_json() for s in statuses], ensure_ascii=False, indent=2))
        return
    if output_format == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
        writer.writerow(
            ["Identifiant", "Nom", "Prénom", "Classe", "Statut", "Manquant", "Invalide", "Fichier"]
        )
        for s in statuses:
            writer.writerow(
                [
                    _csv_safe(v)
                    for v in (
                        s.student_id,
                        s.last_name,
                        s.first_name,
                        s.class_name,
                        s.status_label,
                        " | ".join(s.missing),
                        " | ".join(s.invalid),
                        s.return_file or s.workbook_file,
                    )
                ]
            )
        click.echo(buffer.getvalue(), nl=False)
        return
    if not statuses:
        click.echo("Aucun stagiaire : lancez « grille generate ».")
        return
    width = max(len(f"{s.last_name.upper()} {s.first_name}") for s in statuses)
    click.echo(f"{'Stagiaire'.ljust(width)}  {'Classe':<12}  {'Statut':<24}  Manquant / invalide")
    for s in statuses:
        name = f"{s.last_name.upper()} {s.first_name}".ljust(width)
        todo = len(s.missing) + len(s.invalid)
        detail = f"{len(s.missing)} manquant(s), {len(s.invalid)} invalide(s)" if todo else ""
        click.echo(f"{name}  {s.class_name[:12]:<12}  {s.status_label:<24}  {detail}")
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.status_label] = counts.get(s.status_label, 0) + 1
    click.echo("Total : " + ", ".join(f"{n} {label}" for label, n in counts.items()))


def _run_reports(
    workspace: Workspace,
    student_ids: set[str] | None,
    class_name: str | None,
    pdf: bool,
) -> None:
    with friendly_errors(), state.run_lock(workspace.output_dir):
        opened = campaign_ops.Campaign.open(workspace)
        try:
            with progress_counter("Bilans écrits") as advance:
                result = archive.write_reports(
                    opened, student_ids=student_ids, class_name=class_name, pdf=pdf,
                    progress=advance,
                )  # fmt: skip
        finally:
            opened.close()
    for path in result.written:
        click.echo(f"  écrit : {path.relative_to(workspace.root)}")
    for edited, new in result.kept_edited:
        click.echo(
            f"  Attention — {edited.relative_to(workspace.root)} a été modifié à la main : "
            f"conservé ; nouvelle version dans {new.name}."
        )
    for name in result.without_return:
        click.echo(f"  Pas de bilan pour {name} : aucun retour du tuteur.")
    for path in result.pdfs:
        click.echo(f"  PDF : {path.relative_to(workspace.root)}")
    if result.pdf_problem:
        click.echo(f"Attention — {result.pdf_problem}", err=True)
    click.echo(
        f"{len(result.written)} bilan(s) écrit(s) dans "
        f"{workspace.reports_dir.relative_to(workspace.root)}."
    )
    if not result.written and not result.without_return:
        fail("aucun stagiaire ne correspond à ces critères (--student, --class).")


@cli.command()
@click.option(
    "--student", "student_ids", multiple=True, help="Identifiant d'un stagiaire (répétable)."
)
@click.option("--class", "class_name", default=None, help="Seulement cette classe.")
@click.option("--pdf", is_flag=True, help="Écrit aussi un PDF de chaque bilan (LibreOffice).")
@pass_context
def report(ctx: Context, student_ids: tuple[str, ...], class_name: str | None, pdf: bool) -> None:
    """Écrit les bilans Word : un par stagiaire et un bilan consolidé par classe.

    Exemple : grille report --class "BTS MUC 2A" --pdf

    Les bilans vont dans output/rapports/<classe>/. L'appréciation de l'équipe
    pédagogique est prise dans la colonne prévue de output/suivi.xlsx. Un bilan modifié
    à la main n'est jamais remplacé.
    """
    _run_reports(ctx.workspace, set(student_ids) or None, class_name, pdf)


@cli.command("archive")
@click.option(
    "--verify",
    "to_verify",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Contrôle une archive existante au lieu d'en créer une.",
)
@pass_context
def archive_command(ctx: Context, to_verify: Path | None) -> None:
    """Archive la campagne : bilans, retours, suivi, grille, état, avec un manifeste.

    Exemple : grille archive   puis, des années plus tard : grille archive --verify FICHIER.zip

    L'archive va dans output/archives/ ; chaque fichier y est accompagné de son empreinte
    SHA-256. La clé secrète de la campagne n'y figure jamais.
    """
    if to_verify is not None:
        problems = archive.verify_archive(to_verify)
        for problem in problems:
            click.echo(f"  Erreur — {problem}", err=True)
        if problems:
            fail(f"{to_verify.name} : {len(problems)} problème(s) ; l'archive n'est pas intègre.")
        click.echo(f"{to_verify.name} : archive intègre, chaque fichier correspond au manifeste.")
        return
    workspace = ctx.workspace
    with friendly_errors(), state.run_lock(workspace.output_dir):
        opened = campaign_ops.Campaign.open(workspace)
        try:
            path = archive.build_archive(opened)
        finally:
            opened.close()
    click.echo(f"Archive écrite : {path.relative_to(workspace.root)}")


@cli.command()
@click.argument(
    "directory",
    required=False,
    default=Path("output") / "demo",
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--pdf", is_flag=True, help="Écrit aussi les PDF (LibreOffice).")
@click.option("--jobs", type=click.IntRange(min=1), default=default_jobs(), hidden=True)
def demo(directory: Path, pdf: bool, jobs: int) -> None:
    """Démonstration complète sur une classe fictive de 30 stagiaires.

    Exemple : grille demo   (écrit dans output/demo/)

    Crée la campagne, les classeurs, simule les réponses des tuteurs, collecte les
    retours et écrit les bilans Word.
    """
    workspace = Workspace(directory)
    today = date.today()
    with friendly_errors():
        campaign_ops.init_campaign(
            workspace,
            school="Lycée de démonstration",
            session="BTS MUC — session de démonstration",
            teacher_name="Mme Claire Martin",
            teacher_email="claire.martin@lycee-demo.example",
            deadline=today + timedelta(days=14),
        )
        roster = demo_data.demo_roster(workspace.templates_dir / "demo_roster.csv", today)
    click.echo(f"1. Campagne de démonstration dans « {workspace.root} ».")
    click.echo("2. Classeurs :")
    _run_generate(workspace, roster, None, False, jobs)
    inbox = workspace.root / "retours_simules"
    existing = sorted(inbox.glob("*.xlsx")) if inbox.is_dir() else []
    if existing:  # a second run collects the same answers again: nothing new to record
        click.echo(f"3. Réponses simulées déjà présentes dans {inbox.name} ({len(existing)}).")
    else:
        with friendly_errors():
            opened = campaign_ops.Campaign.open(workspace)
            try:
                workbooks = demo_data.latest_workbooks(opened.db, workspace.root)
                count = demo_data.simulate_tutors(opened.grid, workbooks, inbox, today)
            finally:
                opened.close()
        click.echo(f"3. {count} réponses de tuteurs simulées dans {inbox.name}.")
    click.echo("4. Collecte des retours :")
    with friendly_errors(), state.run_lock(workspace.output_dir):
        opened = campaign_ops.Campaign.open(workspace)
        try:
            collected = collect_ops.collect(opened, [inbox], jobs=1)
            refresh_tracking(workspace, opened.db)
        finally:
            opened.close()
    click.echo(
        f"   {len(collected.recorded)} nouveau(x) retour(s), {len(collected.duplicates)} déjà "
        f"collecté(s) ; détail : grille --dir {directory} status"
    )
    click.echo("5. Bilans :")
    _run_reports(workspace, None, None, pdf)
    click.echo(
        f"Terminé. Ouvrez {workspace.tracking_path} et les bilans de {workspace.reports_dir}."
    )


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the `grille` console script: never shows a traceback."""
    try:
        return cli.main(args=argv, prog_name="grille")
    except Exception:  # a bug: say so in French, keep the details in a log file
        import tempfile
        import traceback

        log = Path(tempfile.gettempdir()) / "grille-erreur.log"
        try:
            log.write_text(traceback.format_exc(), encoding="utf-8")
            where = f" Détails techniques dans {log} : joignez ce fichier à votre signalement."
        except OSError:
            where = ""
        click.echo(f"Erreur inattendue de grille (ce n'est pas de votre fait).{where}", err=True)
        sys.exit(3)

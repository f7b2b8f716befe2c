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

from pipeline import archive, inbox, mail, remind, state, tracking
from pipeline import campaign as campaign_ops
from pipeline import collect as collect_ops
from pipeline import demo as demo_data
from pipeline.errors import GrilleError, Problem, french_os_error
from pipeline.parallel import default_jobs
from pipeline.roster import RosterError, read_roster
from pipeline.settings import SmtpSettings, Workspace
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

    click.types.StringParamType.name = "texte"  # the metavars click derives from types
    click.types.IntParamType.name = "entier"
    click.types.IntRange.name = "entier"
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
      grille remind       relance les tuteurs : ce qui manque, classeur joint
      grille report       écrit les bilans Word (un par stagiaire, un par classe)
      grille archive      archive chaque classe : bilans, retours, suivi, manifeste vérifiable
      grille purge        supprime les données personnelles d'une classe archivée et vérifiée
      grille demo         démonstration complète sur une classe fictive
    """
    ctx.obj = Context(root)


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


def _smtp_password(smtp: SmtpSettings) -> str | None:
    """The SMTP password: from GRILLE_SMTP_MOT_DE_PASSE, else asked (never echoed)."""
    if not smtp.configured or not smtp.user:
        return None
    return os.environ.get("GRILLE_SMTP_MOT_DE_PASSE") or click.prompt(
        f"Mot de passe de {smtp.user} sur {smtp.host}", hide_input=True
    )


def _deliver(
    workspace: Workspace,
    opened: campaign_ops.Campaign,
    pending: list[mail.TutorMessage],
    kind: str,
    dry_run: bool,
) -> int:
    """Build, then send or write, the messages of `pending`; print each; return failures."""
    template = mail.load_template(workspace, kind)
    built, errors = mail.build_messages(opened.config, pending, template)
    for error in errors:
        click.echo(f"  Erreur — {error}", err=True)
    smtp = opened.config.smtp
    outbox = (workspace.output_dir / mail.OUTBOX).relative_to(workspace.root)
    where = f"serveur {smtp.host}:{smtp.port}" if smtp.configured else f"dossier {outbox}/"
    if dry_run:
        for message, email in built:
            names = ", ".join(part.get_filename() or "?" for part in email.iter_attachments())
            click.echo(
                f"  à envoyer : {message.tutor_name} <{message.tutor_email}> — "
                f"« {email['Subject']} » — pièce(s) jointe(s) : {names}"
            )
            for book in message.workbooks:
                for item in book.todo:
                    click.echo(f"      • {book.student_name} : {item}")
        click.echo(
            f"{len(built)} message(s) prêt(s) pour le {where} ; rien n'a été fait (--dry-run)."
        )
        return len(errors)
    report = mail.deliver(opened.db, workspace, smtp, _smtp_password(smtp), built)
    for message, _ in report.sent:
        click.echo(
            f"  envoyé : {message.tutor_name} <{message.tutor_email}>, "
            f"{len(message.workbooks)} classeur(s)"
        )
    for message, path in report.written:
        click.echo(
            f"  prêt : {message.tutor_name} <{message.tutor_email}>, "
            f"{len(message.workbooks)} classeur(s) → {path.relative_to(workspace.root)}"
        )
    for message, reason in report.uncertain:
        click.echo(
            f"  Attention — {message.tutor_name} <{message.tutor_email}> : {reason} après "
            "l'envoi du contenu ; le message est peut-être parti. Vérifiez vos messages "
            "envoyés ; au besoin : grille send --resend --student IDENTIFIANT.",
            err=True,
        )
    for message, reason in report.failed:
        click.echo(f"  Erreur — {message.tutor_name} <{message.tutor_email}> : {reason}", err=True)
    refresh_tracking(workspace, opened.db)
    if smtp.configured:
        click.echo(
            f"{len(report.sent)} message(s) envoyé(s), {len(report.failed)} en échec"
            + (f", {len(report.uncertain)} incertain(s)." if report.uncertain else ".")
        )
    else:
        click.echo(
            f"{len(report.written)} message(s) prêt(s) à partir dans {outbox}/ (aucun serveur "
            "d'envoi dans grille.toml [envoi]) : ouvrez chaque fichier .eml avec Thunderbird "
            "ou Outlook et envoyez-le."
        )
    return len(errors) + len(report.failed) + len(report.uncertain)


@cli.command()
@click.option("--dry-run", is_flag=True, help="N'envoie rien : liste les messages à envoyer.")
@click.option("--resend", is_flag=True, help="Renvoie aussi les classeurs déjà envoyés.")
@student_option
@class_option
@pass_context
def send(
    ctx: Context, dry_run: bool, resend: bool, student_ids: tuple[str, ...], class_name: str | None
) -> None:
    """Envoie à chaque tuteur, en un seul message, les classeurs de ses stagiaires.

    Exemple : grille send --dry-run   (puis, après relecture : grille send)

    Sans serveur d'envoi dans la section [envoi] de grille.toml, les messages sont
    écrits, prêts à partir, dans output/envoi/ (à ouvrir avec Thunderbird ou Outlook).
    Avec un serveur, le mot de passe est demandé, ou lu dans la variable
    GRILLE_SMTP_MOT_DE_PASSE. Le texte du message se modifie dans
    input_templates/email_envoi.txt. Un classeur déjà envoyé ne l'est pas deux fois
    (sauf --resend), même après une interruption.
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
            failures = _deliver(workspace, opened, pending, mail.SEND, dry_run)
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
@click.argument(
    "paths", nargs=-1, metavar="[FICHIER_OU_DOSSIER]...", type=click.Path(path_type=Path)
)
@click.option(
    "--imap",
    "from_mailbox",
    is_flag=True,
    help="Relève aussi la boîte aux lettres de la section [reception] de grille.toml.",
)
@click.option(
    "--since",
    default=None,
    metavar="JJ/MM/AAAA",
    help="Avec --imap : les messages reçus depuis cette date (jj/mm/aaaa) ; "
    "remplace « depuis » de grille.toml.",
)
@click.option(
    "--folder",
    default=None,
    metavar="DOSSIER",
    help="Avec --imap : le dossier à relever ; remplace « dossier » de grille.toml.",
)
@click.option(
    "--mark-seen",
    is_flag=True,
    help="Avec --imap : marque comme lus les messages dont un classeur a été lu.",
)
@jobs_option
@pass_context
def collect(
    ctx: Context,
    paths: tuple[Path, ...],
    from_mailbox: bool,
    since: str | None,
    folder: str | None,
    mark_seen: bool,
    jobs: int,
) -> None:
    """Lit les classeurs retournés : fichiers, dossiers, e-mails (.eml, mbox), archives .zip,
    boîte aux lettres (--imap).

    Exemple : grille collect ~/Téléchargements/retours messages.mbox

    Exemple : grille collect --imap --since 01/03/2027

    Chaque fichier est reconnu (identité signée), vérifié, et son état enregistré ;
    l'original est conservé dans output/retours/. Met à jour output/suivi.xlsx.
    Avec --imap, les nouveaux messages du dossier réglé dans la section [reception] de
    grille.toml sont relevés (mot de passe demandé, ou lu dans la variable
    GRILLE_IMAP_MOT_DE_PASSE) et lus comme des fichiers .eml. Un message déjà traité ne
    l'est pas deux fois ; rien n'est supprimé ni modifié sur le serveur (sauf --mark-seen).
    Code de sortie 1 si des fichiers n'ont pas pu être lus.
    """
    if not paths and not from_mailbox:
        raise click.UsageError(
            "indiquez les fichiers ou dossiers à lire, ou --imap pour relever la boîte aux lettres."
        )
    if not from_mailbox and (since or folder or mark_seen):
        raise click.UsageError("--since, --folder et --mark-seen ne s'emploient qu'avec --imap.")
    since_day = parse_day(since)
    workspace = ctx.workspace
    mailbox: inbox.MailboxResult | None = None
    with friendly_errors(), state.run_lock(workspace.output_dir):
        opened = campaign_ops.Campaign.open(workspace)
        try:
            with progress_counter("Retours traités") as advance:
                if from_mailbox:
                    settings = inbox.mailbox_settings(
                        opened.config.imap, folder=folder, since=since_day
                    )
                    password: str = os.environ.get(inbox.PASSWORD_VARIABLE) or click.prompt(
                        f"Mot de passe de {settings.user} sur {settings.host}", hide_input=True
                    )
                    mailbox = inbox.collect_mailbox(
                        opened, settings, password, paths=list(paths), mark_seen=mark_seen,
                        jobs=jobs, progress=advance,
                    )  # fmt: skip
                    result = mailbox.collected
                else:
                    result = collect_ops.collect(opened, list(paths), jobs=jobs, progress=advance)
            refresh_tracking(workspace, opened.db)
        finally:
            opened.close()
    for recorded in result.recorded:
        click.echo(_describe(recorded))
    for origin in result.duplicates:
        click.echo(f"  Déjà collecté — {origin} : ignoré.")
    for description in mailbox.without_workbook if mailbox else []:
        click.echo(f"  Sans classeur — {description} : ignoré.")
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
    if mailbox is not None:
        seen = f" {mailbox.marked_seen} marqué(s) comme lu(s)." if mark_seen else ""
        click.echo(
            f"Boîte aux lettres {mailbox.mailbox} : {mailbox.read} message(s) relevé(s), "
            f"{mailbox.already} déjà traité(s), {len(mailbox.without_workbook)} sans classeur, "
            f"{mailbox.returns} retour(s) enregistré(s).{seen}"
        )
        if mailbox.interrupted:
            click.echo(f"Erreur : {mailbox.interrupted}", err=True)
    if result.failed or (mailbox is not None and mailbox.failed):
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
@class_option
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


@cli.command("remind")
@click.option("--dry-run", is_flag=True, help="N'envoie rien : liste les relances et leur contenu.")
@student_option
@class_option
@click.option(
    "--interval",
    type=click.IntRange(min=0),
    default=7,
    show_default=True,
    metavar="JOURS",
    help="Ne relance pas un tuteur déjà relancé depuis moins de ce nombre de jours.",
)
@click.option("--again", is_flag=True, help="Relance même les tuteurs relancés récemment.")
@pass_context
def remind_command(
    ctx: Context,
    dry_run: bool,
    student_ids: tuple[str, ...],
    class_name: str | None,
    interval: int,
    again: bool,
) -> None:
    """Relance les tuteurs dont une évaluation manque, est incomplète ou invalide.

    Exemple : grille remind --dry-run   (puis : grille remind)

    Un message par tuteur : pour chaque stagiaire, ce qui manque ou est à corriger, et
    le classeur à compléter en pièce jointe (celui que le tuteur a renvoyé, sinon
    l'original). Même envoi que « grille send » ; texte modifiable dans
    input_templates/email_relance.txt.
    """
    workspace = ctx.workspace
    failures = 0
    with friendly_errors(), state.run_lock(workspace.output_dir):
        opened = campaign_ops.Campaign.open(workspace)
        try:
            reminders = remind.pending_reminders(
                opened.db,
                workspace.root,
                student_ids=set(student_ids) or None,
                class_name=class_name,
                interval_days=interval,
                again=again,
            )
            for note in reminders.skipped:
                click.echo(f"  pas de relance : {note}")
            if not reminders.messages:
                click.echo("Aucun tuteur à relancer.")
                return
            failures = _deliver(workspace, opened, reminders.messages, mail.REMIND, dry_run)
        finally:
            opened.close()
    if failures:
        sys.exit(1)


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
    _run_reports(ctx.workspace, set(student_ids) or None, class_name, pdf)


_ARCHIVED_KINDS = (
    ("bilan", "bilan(s)"),
    ("bilan_classe", "bilan(s) de classe"),
    ("pdf", "PDF"),
    ("retour", "retour(s)"),
    ("suivi", "tableau de suivi"),
    ("grille", "grille(s)"),
)


def _verify_archive(workspace: Workspace, path: Path) -> None:
    """Check an archive, print every problem; exit 1 unless it is intact."""
    with friendly_errors():
        problems = archive.verify_archive(path)
    for problem in problems:
        click.echo(f"  Erreur — {problem}", err=True)
    if problems:
        fail(f"{path.name} : {len(problems)} problème(s) ; l'archive n'est pas intègre.")
    click.echo(f"{path.name} : archive intègre, chaque fichier correspond au manifeste.")
    try:
        classes = archive.record_verification(workspace, path)
    except (GrilleError, OSError, sqlite3.Error) as exc:
        click.echo(f"Attention — vérification non enregistrée dans la campagne : {exc}", err=True)
        return
    if classes:
        click.echo(
            f"Vérification enregistrée pour {', '.join(classes)} : « grille purge » est possible."
        )


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
    with friendly_errors(), state.run_lock(workspace.output_dir):
        opened = campaign_ops.Campaign.open(workspace)
        try:
            built = archive.build_archives(
                opened, class_name=class_name, school_year=school_year, pdf=pdf
            )
        finally:
            opened.close()
    warnings: list[str] = []
    for item in built:
        click.echo(f"Classe {item.class_name}, année {item.school_year} :")
        click.echo(f"  dossier : {item.folder.relative_to(workspace.root)}")
        click.echo(f"  archive : {item.zip_path.relative_to(workspace.root)}")
        click.echo(f"  empreinte SHA-256 de l'archive : {item.sha256}")
        counts = ", ".join(
            f"{item.counts[kind]} {label}"
            for kind, label in _ARCHIVED_KINDS
            if item.counts.get(kind)
        )
        click.echo(f"  {counts} ; {sum(item.counts.values())} fichier(s) au manifeste.")
        warnings += [w for w in item.warnings if w not in warnings]
    for warning in warnings:
        click.echo(f"Attention — {warning}", err=True)
    click.echo("Contrôlez chaque archive : grille archive verify <archive.zip>")


@archive_command.command("verify")
@click.argument("path", metavar="ARCHIVE", type=click.Path(exists=True, path_type=Path))
@pass_context
def archive_verify(ctx: Context, path: Path) -> None:
    """Vérifie une archive : chaque fichier doit correspondre au manifeste.

    Exemple : grille archive verify output/archive/2026-2027/BTS_MUC_2A.zip

    Signale chaque fichier absent, modifié ou ajouté depuis l'archivage ; code de sortie 1
    si l'archive n'est pas intègre. Fonctionne sans campagne, des années plus tard, sur un
    autre ordinateur ; accepte aussi le dossier de l'archive.
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
    with friendly_errors(), state.run_lock(workspace.output_dir):
        opened = campaign_ops.Campaign.open(workspace)
        try:
            plan = archive.plan_purge(opened, class_name)
            for reason in plan.refused:
                click.echo(f"  Refusé — {reason}", err=True)
            if not plan.classes:
                fail("aucune classe ne peut être purgée ; rien n'a été supprimé.")
            click.echo(
                f"Données personnelles à supprimer définitivement ({', '.join(plan.classes)}) :"
            )
            click.echo(
                f"  {plan.students} stagiaire(s) de la base, avec leurs envois, retours et réponses"
            )
            click.echo(f"  {len(plan.workbooks)} classeur(s) dans output/classeurs")
            click.echo(f"  {len(plan.returns)} fichier(s) retourné(s) dans output/retours")
            click.echo(f"  {len(plan.reports)} bilan(s) dans output/rapports")
            click.echo(f"  {len(plan.messages)} message(s) .eml (envoyés ou relevés) à leur sujet")
            click.echo(f"Conservées : {', '.join(plan.archives)} et la configuration.")
            if not yes and not _ask_yes("Supprimer définitivement ces données ?"):
                click.echo("Purge annulée : rien n'a été supprimé.")
                sys.exit(1)
            archive.purge(opened, plan)
            refresh_tracking(workspace, opened.db)
        finally:
            opened.close()
    click.echo(f"Données personnelles supprimées : {', '.join(plan.classes)}.")
    if plan.refused:
        sys.exit(1)


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
        campaign_ops.init_campaign(
            workspace,
            school="Lycée de démonstration",
            session="BTS MUC — session de démonstration",
            teacher_name="Mme Claire Martin",
            teacher_email="claire.martin@lycee-demo.example",
            deadline=today + timedelta(days=14),
        )
        roster = demo_data.demo_roster(workspace.templates_dir / "demo_roster.csv", today)

    def step(title: str) -> None:
        click.echo(click.style(f"\n== {title}", bold=True))

    step(f"1. Campagne de démonstration dans « {workspace.root} »")
    step("2. Un classeur par stagiaire (grille generate)")
    click_ctx.invoke(generate, roster_path=roster, grid_path=None, force=False, jobs=jobs)
    step("3. Un message par tuteur, prêt à partir (grille send)")
    click_ctx.invoke(send, dry_run=False, resend=False, student_ids=(), class_name=None)
    step("4. Les tuteurs répondent (simulation)")
    replies = workspace.root / "retours_simules"
    if replies.is_dir() and any(replies.iterdir()):
        click.echo(f"Réponses simulées déjà présentes dans {replies.name}/.")
    else:
        with friendly_errors():
            opened = campaign_ops.Campaign.open(workspace)
            try:
                students = demo_data.latest_workbooks(opened.db, workspace.root)
                simulated = demo_data.simulate_tutors(
                    opened.grid, students, replies, today, opened.config.teacher_email
                )
            finally:
                opened.close()
        for name, what in simulated:
            click.echo(f"  {name} : {what}")
    step(f"5. Collecte des retours (grille collect {replies.name})")
    click_ctx.invoke(collect, paths=(replies,), jobs=jobs)
    step("6. Où en est chaque stagiaire (grille status)")
    click_ctx.invoke(status, output_format="table", class_name=None)
    step("7. Relances des tuteurs (grille remind)")
    click_ctx.invoke(
        remind_command, dry_run=False, student_ids=(), class_name=None, interval=7, again=False
    )
    step("8. Bilans Word (grille report)")
    _run_reports(workspace, None, None, pdf)
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

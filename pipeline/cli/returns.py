"""What comes back: `grille collect` (files, mail, mailbox), `grille status`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from pipeline import collect as collect_ops
from pipeline import inbox, tracking
from pipeline.cli.base import (
    Context,
    class_option,
    cli,
    jobs_option,
    open_campaign,
    parse_day,
    pass_context,
    print_problems,
    progress_counter,
    refresh_tracking,
)
from pipeline.validation import STATUS_LABELS

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
    with open_campaign(workspace) as opened:
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
    with open_campaign(workspace, lock=False) as opened:
        statuses = tracking.student_statuses(opened.db)
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
    width = max(len(s.student.display_name) for s in statuses)
    click.echo(f"{'Stagiaire'.ljust(width)}  {'Classe':<12}  {'Statut':<24}  Manquant / invalide")
    for s in statuses:
        name = s.student.display_name.ljust(width)
        todo = len(s.missing) + len(s.invalid)
        detail = f"{len(s.missing)} manquant(s), {len(s.invalid)} invalide(s)" if todo else ""
        click.echo(f"{name}  {s.class_name[:12]:<12}  {s.status_label:<24}  {detail}")
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.status_label] = counts.get(s.status_label, 0) + 1
    click.echo("Total : " + ", ".join(f"{n} {label}" for label, n in counts.items()))

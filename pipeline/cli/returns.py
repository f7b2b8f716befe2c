"""What comes back: `grille collect` (files, mail, mailbox), `grille confirm`, `grille status`."""

from __future__ import annotations

import getpass
import os
import sqlite3
import sys
from pathlib import Path

import click

from pipeline import collect as collect_ops
from pipeline import inbox, state, tracking
from pipeline.cli.base import (
    Context,
    class_option,
    cli,
    fail,
    jobs_option,
    open_campaign,
    parse_day,
    pass_context,
    print_problems,
    progress_counter,
    refresh_tracking,
)
from pipeline.errors import GrilleError
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
        number = recorded.return_id
        line += f"\n      À confirmer (retour n° {number}) — {outcome.match_note}"
        kept = recorded.counted_instead
        if kept is not None:
            label = state.STANDING_LABELS[kept.standing]
            line += (
                f"\n      En attente de confirmation : le retour {label} n° {kept.return_id} "
                f"(« {kept.file_name} », reçu le {kept.collected_at[:10]}) compte toujours ; "
                "celui-ci ne le remplace pas tant que vous ne l'avez pas confirmé "
                f"(« grille confirm {number} »)."
            )
        else:
            line += (
                f"\n      En attente de confirmation : il compte pour ce stagiaire en attendant ; "
                f"confirmez-le (« grille confirm {number} ») ou rejetez-le "
                f"(« grille confirm {number} --reject »)."
            )
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


def _who() -> str:
    """The login of whoever runs the command, recorded with each decision."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "inconnu"


def _describe_pending(db: sqlite3.Connection, pending: state.ReturnStanding) -> str:
    status = STATUS_LABELS.get(pending.status, pending.status)
    counted = state.counted_return(db, pending.student.student_id)
    beside = tracking.waiting_note(
        pending,
        counted.return_id if counted else None,
        counted.standing if counted else "",
    )
    return (
        f"  n° {pending.return_id} — « {pending.file_name} » — reçu le {pending.collected_at} — "
        f"{pending.student.display_name} ({pending.student.class_name}) — {status}\n"
        f"      Pourquoi : {pending.match_note}\n"
        f"      {beside}"
    )


def _chosen_return(
    db: sqlite3.Connection, number: int | None, student_id: str | None
) -> int | None:
    """The return the teacher designated (None: list them); exits 2 when it is unclear."""
    if student_id is None:
        return number
    student_id = student_id.strip()
    known = db.execute("SELECT 1 FROM students WHERE student_id = ?", (student_id,)).fetchone()
    if known is None:
        fail(
            f"aucun stagiaire d'identifiant « {student_id} » (voir « grille status "
            "--format csv »).",
            2,
        )
    if number is not None:
        owner = db.execute("SELECT student_id FROM returns WHERE id = ?", (number,)).fetchone()
        if owner is None or owner[0] != student_id:
            fail(f"le retour n° {number} n'est pas rattaché au stagiaire « {student_id} ».", 2)
        return number
    pending = state.pending_returns(db, student_id)
    if not pending:
        fail(f"aucun retour à confirmer pour le stagiaire « {student_id} ».", 2)
    if len(pending) > 1:
        for item in pending:
            click.echo(_describe_pending(db, item), err=True)
        fail(
            f"{len(pending)} retours à confirmer pour ce stagiaire : choisissez-en un avec "
            "--return N.",
            2,
        )
    return pending[0].return_id


@cli.command()
@click.argument("number", metavar="[RETOUR]", required=False, type=click.IntRange(min=1))
@click.option(
    "--student",
    "student_id",
    default=None,
    metavar="IDENTIFIANT",
    help="Le retour à confirmer de ce stagiaire (voir grille status --format csv).",
)
@click.option(
    "--return",
    "chosen",
    default=None,
    type=click.IntRange(min=1),
    metavar="N",
    help="Avec --student, quand il a plusieurs retours à confirmer : le n° du retour.",
)
@click.option("--reject", is_flag=True, help="Rejette le retour : il ne comptera jamais.")
@pass_context
def confirm(
    ctx: Context, number: int | None, student_id: str | None, chosen: int | None, reject: bool
) -> None:
    """Confirme (ou rejette) un retour « à confirmer » ; sans argument, les liste.

    Exemple : grille confirm   (la liste ; puis : grille confirm 12, ou grille confirm 12 --reject)

    Exemple : grille confirm --student E6aad2e1b --return 12

    Un retour « à confirmer » est un classeur revenu sans son identité cachée (recopié dans
    un nouveau fichier, par exemple), rattaché au stagiaire dont le nom est écrit dessus.
    Tant que vous ne l'avez pas confirmé, il ne remplace pas un retour signé de ce
    stagiaire ; s'il est le seul, il compte en attendant, signalé « à confirmer » dans le
    suivi et sur chaque page du bilan. Confirmé, il compte comme un retour signé ; rejeté,
    il ne compte jamais. La décision est notée (qui, quand) ; relancez ensuite
    « grille report ».
    """
    if number is not None and chosen is not None:
        raise click.UsageError("donnez le n° du retour, ou --student avec --return, pas les deux.")
    if chosen is not None and student_id is None:
        raise click.UsageError("--return s'emploie avec --student.")
    workspace = ctx.workspace
    with open_campaign(workspace) as opened:
        db = opened.db
        target = _chosen_return(db, number if number is not None else chosen, student_id)
        if target is None:
            if reject:
                raise click.UsageError("--reject demande le n° du retour (ou --student).")
            pending = state.pending_returns(db)
            if not pending:
                click.echo("Aucun retour à confirmer.")
                return
            click.echo(
                f"{len(pending)} retour(s) à confirmer (classeurs revenus sans leur identité "
                "cachée, rattachés par le nom écrit dessus) :"
            )
            for item in pending:
                click.echo(_describe_pending(db, item))
            click.echo(
                "Vérifiez chacun, puis « grille confirm N » pour qu'il compte, ou "
                "« grille confirm N --reject » pour l'écarter."
            )
            return
        decision = state.STANDING_REJECTED if reject else state.STANDING_CONFIRMED
        try:
            before, after = state.decide_return(db, target, decision, _who())
        except GrilleError as exc:
            fail(str(exc), 2)
        counted = state.counted_return(db, after.student.student_id)
        refresh_tracking(workspace, db)
    who = f"{after.student.display_name} ({after.student.class_name})"
    label = state.STANDING_LABELS[decision]
    if before.standing == decision:
        click.echo(
            f"Le retour n° {target} (« {after.file_name} ») est déjà {label} (par "
            f"{after.decided_by}, le {after.decided_at}) : rien à faire."
        )
        return
    click.echo(
        f"Retour n° {target} (« {after.file_name} ») {label} pour {who}, par {after.decided_by} "
        f"le {after.decided_at}."
    )
    if before.standing != state.STANDING_PENDING:
        click.echo(
            f"  Cette décision remplace la précédente ({state.STANDING_LABELS[before.standing]} "
            f"par {before.decided_by}, le {before.decided_at}), qui reste notée."
        )
    if counted is None:
        click.echo("  Aucun retour ne compte plus pour ce stagiaire.")
    elif counted.return_id == target:
        status = STATUS_LABELS.get(counted.status, counted.status)
        click.echo(f"  Il compte désormais pour ce stagiaire ({status}).")
    else:
        status = STATUS_LABELS.get(counted.status, counted.status)
        standing = state.STANDING_LABELS[counted.standing]
        click.echo(
            f"  Le retour qui compte pour ce stagiaire : n° {counted.return_id} "
            f"(« {counted.file_name} », {standing}, {status})."
        )
    click.echo("Relancez « grille report » pour mettre à jour les bilans.")


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
            ["Identifiant", "Nom", "Prénom", "Classe", "Statut", "Manquant", "Invalide", "Fichier",
             "Retours à confirmer"]
        )  # fmt: skip
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
                        " | ".join(f"n° {n}" for n in s.pending_returns),
                    )
                ]
            )
        click.echo(buffer.getvalue(), nl=False)
        return
    if not statuses:
        click.echo("Aucun stagiaire : lancez « grille generate ».")
        return
    width = max(len(s.student.display_name) for s in statuses)
    click.echo(
        f"{'Stagiaire'.ljust(width)}  {'Classe':<12}  {'Statut':<24}  "
        "Manquant / invalide / à confirmer"
    )
    for s in statuses:
        name = s.student.display_name.ljust(width)
        details = []
        if s.missing or s.invalid:
            details.append(f"{len(s.missing)} manquant(s), {len(s.invalid)} invalide(s)")
        if s.pending_returns:
            numbers = ", ".join(f"n° {n}" for n in s.pending_returns)
            details.append(f"retour(s) à confirmer : {numbers}")
        detail = " ; ".join(details)
        click.echo(f"{name}  {s.class_name[:12]:<12}  {s.status_label:<24}  {detail}".rstrip())
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.status_label] = counts.get(s.status_label, 0) + 1
    pending = sum(len(s.pending_returns) for s in statuses)
    if pending:
        click.echo(
            f"{pending} retour(s) à confirmer : « grille confirm » les liste et dit pourquoi."
        )
    click.echo("Total : " + ", ".join(f"{n} {label}" for label, n in counts.items()))

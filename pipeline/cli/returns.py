"""What comes back: `grille collect` (files, mail, mailbox), `grille confirm`, `grille status`."""

from __future__ import annotations

import getpass
import sqlite3
import sys
from pathlib import Path

import click

from pipeline import collect as collect_ops
from pipeline import collect_report, state, tracking
from pipeline.classes import resolve_class
from pipeline.cli.base import (
    Context,
    class_option,
    cli,
    fail,
    jobs_option,
    open_campaign,
    parse_day,
    pass_context,
    progress_counter,
    refresh_tracking,
)
from pipeline.errors import GrilleError
from pipeline.kinds import Standing
from pipeline.settings import ImapSettings
from pipeline.validation import STATUS_LABELS


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
@click.option(
    "--use",
    "use",
    default=None,
    metavar="FICHIER_OU_N°",
    help="Retient cette version du classeur d'un stagiaire (n° du retour, fichier collecté ou "
    "son nom), quelle que soit sa date ; s'emploie seul.",
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
    use: str | None,
    jobs: int,
) -> None:
    """Lit les classeurs retournés : fichiers, dossiers, e-mails (.eml, mbox), archives .zip,
    boîte aux lettres (--imap).

    Exemple : grille collect ~/Téléchargements/retours messages.mbox

    Exemple : grille collect --imap --since 01/03/2027

    Exemple : grille collect --use 12   (retient le retour n° 12 de son stagiaire)

    Chaque fichier est reconnu (identité signée), vérifié, et son état enregistré ;
    l'original est conservé dans output/retours/. Quand un stagiaire a plusieurs versions
    de son classeur, la plus récente compte (date d'enregistrement du classeur, sinon de
    l'e-mail, sinon du fichier) ; les autres restent dans l'historique, et --use en retient
    une autre. Un fichier refusé ou illisible est noté (grille status --refused).
    Met à jour output/suivi.xlsx.
    Avec --imap, les nouveaux messages du dossier réglé dans la section [reception] de
    grille.toml sont relevés (mot de passe demandé, ou lu dans la variable
    GRILLE_IMAP_MOT_DE_PASSE) et lus comme des fichiers .eml. Un message déjà traité ne
    l'est pas deux fois ; rien n'est supprimé ni modifié sur le serveur (sauf --mark-seen).
    Code de sortie 1 si des fichiers n'ont pas pu être lus.
    """
    if use is not None:
        if paths or from_mailbox or since or folder or mark_seen:
            raise click.UsageError("--use s'emploie seul, sans fichier ni --imap.")
        _use(ctx, use)
        return
    if not paths and not from_mailbox:
        raise click.UsageError(
            "indiquez les fichiers ou dossiers à lire, ou --imap pour relever la boîte aux lettres."
        )
    if not from_mailbox and (since or folder or mark_seen):
        raise click.UsageError("--since, --folder et --mark-seen ne s'emploient qu'avec --imap.")
    request = (
        collect_ops.MailboxRequest(folder, parse_day(since), mark_seen) if from_mailbox else None
    )
    workspace = ctx.workspace
    with open_campaign(workspace) as opened:
        with progress_counter("Retours traités") as advance:
            result = collect_ops.collect_step(
                opened,
                list(paths),
                mailbox=request,
                password=_ask_password,
                jobs=jobs,
                progress=advance,
            )
        refresh_tracking(workspace, opened.db)
    lines = collect_report.file_lines(result)
    lines += collect_report.summary_lines(result, workspace, mark_seen=mark_seen)
    for line in lines:
        click.echo(line.text, err=line.error)
    if result.exit_code:
        sys.exit(result.exit_code)


def _ask_password(settings: ImapSettings) -> str:
    password: str = click.prompt(
        f"Mot de passe de {settings.user} sur {settings.host}", hide_input=True
    )
    return password


def _use(ctx: Context, designation: str) -> None:
    """« collect --use »: the teacher's choice of the version that counts."""
    workspace = ctx.workspace
    with open_campaign(workspace) as opened:
        try:
            choice = collect_ops.choose_version(opened, designation, _who())
        except GrilleError as exc:
            fail(str(exc), 2)
        refresh_tracking(workspace, opened.db)
    chosen, before = choice.chosen, choice.before
    line = (
        f"Retour n° {chosen.return_id} (« {chosen.file_name} », "
        f"{collect_report.when(chosen)}) retenu pour {choice.student_name}"
    )
    if before is None or before.return_id == chosen.return_id:
        click.echo(line + " ; c'était déjà lui qui comptait.")
    else:
        click.echo(line + f" ; il remplace le n° {before.return_id} (« {before.file_name} »).")
    if chosen.standing == Standing.PENDING:
        click.echo(
            f"  Il reste à confirmer : « grille confirm {chosen.return_id} » quand vous l'aurez "
            "vérifié."
        )
    click.echo("Relancez « grille report » pour mettre à jour les bilans.")


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
    if not state.student_exists(db, student_id):
        fail(
            f"aucun stagiaire d'identifiant « {student_id} » (voir « grille status "
            "--format csv »).",
            2,
        )
    if number is not None:
        if state.return_owner(db, number) != student_id:
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
        decision = Standing.REJECTED if reject else Standing.CONFIRMED
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
    if before.standing != Standing.PENDING:
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


def _version_json(version: state.ReturnVersion) -> dict[str, object]:
    return {
        "return_id": version.return_id,
        "file_name": version.file_name,
        "origin": version.origin,
        "version_date": f"{version.local_version_at:%d/%m/%Y %H:%M}",
        "date_source": version.version_source,
        "collected_at": version.collected_at,
        "status": version.status,
        "standing": version.standing,
        "counts": version.counts,
        "chosen": version.chosen,
    }


def _versions_detail(versions: list[state.ReturnVersion]) -> str:
    """« version retenue : n° 5 (choisie), sur 2 reçues » when there are several."""
    counted = next((v for v in versions if v.counts), None)
    if len(versions) < 2 or counted is None:
        return ""
    chosen = " (choisie)" if counted.chosen else ""
    return f"version retenue : n° {counted.return_id}{chosen}, sur {len(versions)} reçues"


def _refused_json(refused: state.RefusedFile) -> dict[str, str]:
    return {
        "file_name": refused.file_name,
        "origin": refused.origin,
        "reason": refused.reason,
        "code": refused.code,
        "sha256": refused.sha256,
        "first_seen_at": refused.first_seen_at,
        "last_seen_at": refused.last_seen_at,
    }


def _print_refused(refused: list[state.RefusedFile], output_format: str, limit: int) -> None:
    """The refused files: a list (`limit` of them, 0 for all) or CSV / JSON."""
    if output_format == "json":
        import json

        click.echo(json.dumps([_refused_json(r) for r in refused], ensure_ascii=False, indent=2))
        return
    if output_format == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
        writer.writerow(["Reçu le", "Fichier", "Provenance", "Raison", "SHA-256", "Revu le"])
        for r in refused:
            writer.writerow(
                [
                    _csv_safe(v)
                    for v in (
                        r.first_seen_at, r.file_name, r.origin, r.reason, r.sha256, r.last_seen_at
                    )
                ]
            )  # fmt: skip
        click.echo(buffer.getvalue(), nl=False)
        return
    if not refused:
        click.echo("Aucun fichier refusé.")
        return
    click.echo(f"Fichiers refusés ou illisibles ({len(refused)}) :")
    shown = refused if not limit else refused[:limit]
    for r in shown:
        digest = f" (SHA-256 {r.sha256[:12]}…)" if r.sha256 else ""
        click.echo(f"  {r.last_seen_at[:16]} — {r.origin}{digest} : {r.reason}")
    if len(refused) > len(shown):
        click.echo(
            f"  … et {len(refused) - len(shown)} autre(s) : « grille status --refused » les "
            "liste tous (aussi dans output/suivi.xlsx, feuille « Fichiers refusés »)."
        )


@cli.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Présentation : tableau, CSV (;) ou JSON.",
)
@click.option(
    "--refused",
    is_flag=True,
    help="Montre les fichiers refusés ou illisibles (au lieu des stagiaires).",
)
@class_option
@pass_context
def status(ctx: Context, output_format: str, refused: bool, class_name: str | None) -> None:
    """Affiche l'état de chaque stagiaire : généré, envoyé, incomplet, invalide, complet.

    Exemple : grille status --format json > etat.json

    Exemple : grille status --refused   (les fichiers refusés à la collecte, et pourquoi)

    Le tableau dit aussi quelle version compte quand un stagiaire en a plusieurs (en JSON :
    « versions »), et finit par le nombre de fichiers refusés ou illisibles (en JSON :
    « fichiers_refuses », à côté de « stagiaires »).
    """
    workspace = ctx.workspace
    with open_campaign(workspace, lock=False) as opened:
        if refused:
            if class_name:
                raise click.UsageError("--refused ne s'emploie pas avec --class.")
            _print_refused(state.refused_files(opened.db), output_format, 0)
            return
        wanted = resolve_class(opened, class_name) if class_name else None
        statuses = tracking.student_statuses(opened.db)
        versions = state.return_versions(opened.db)
        refused_files = state.refused_files(opened.db)
    if class_name:
        statuses = [s for s in statuses if s.class_name == wanted]
    if output_format == "json":
        import json

        students = [
            {**s.to_json(), "versions": [_version_json(v) for v in versions.get(s.student_id, [])]}
            for s in statuses
        ]
        refused_json = [_refused_json(r) for r in refused_files]
        click.echo(
            json.dumps(
                {"stagiaires": students, "fichiers_refuses": refused_json},
                ensure_ascii=False,
                indent=2,
            )
        )
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
        if several := _versions_detail(versions.get(s.student_id, [])):
            details.append(several)
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
    if refused_files:
        click.echo(
            f"{len(refused_files)} fichier(s) refusé(s) ou illisible(s) à la collecte : "
            "« grille status --refused » les liste (aussi dans output/suivi.xlsx, feuille "
            "« Fichiers refusés »)."
        )

"""Writing to the tutors: `grille send` (the workbooks), `grille remind` (what is missing)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from pipeline import mail, remind
from pipeline.campaign import Campaign
from pipeline.cli.base import (
    Context,
    class_option,
    cli,
    fail,
    open_campaign,
    pass_context,
    refresh_tracking,
    student_option,
)
from pipeline.settings import SmtpSettings, Workspace


def _ask_smtp_password(smtp: SmtpSettings) -> str:
    """The SMTP password, asked (never echoed)."""
    password: str = click.prompt(f"Mot de passe de {smtp.user} sur {smtp.host}", hide_input=True)
    return password


def _print_delivery(workspace: Workspace, delivery: mail.DeliveryResult) -> None:
    """What `mail.deliver_messages` built, sent or wrote, message by message, then in sum."""
    if delivery.dry_run:
        for error in delivery.errors:
            click.echo(f"  Erreur — {error}", err=True)
        smtp = delivery.smtp
        outbox = delivery.outbox.relative_to(workspace.root)
        where = f"serveur {smtp.host}:{smtp.port}" if smtp.configured else f"dossier {outbox}/"
        for message, email in delivery.built:
            names = ", ".join(part.get_filename() or "?" for part in email.iter_attachments())
            click.echo(
                f"  à envoyer : {message.tutor_name} <{message.tutor_email}> — "
                f"« {email['Subject']} » — pièce(s) jointe(s) : {names}"
            )
            for book in message.workbooks:
                for item in book.todo:
                    click.echo(f"      • {book.student_name} : {item}")
        click.echo(
            f"{len(delivery.built)} message(s) prêt(s) pour le {where} ; rien n'a été fait "
            "(--dry-run)."
        )
        return
    if delivery.fault:
        for error in delivery.errors:
            click.echo(f"  Erreur — {error}", err=True)
        fail(delivery.fault)
    for line in mail.delivery_lines(workspace, delivery):
        if line.per_tutor:
            click.echo(f"  {line.text}", err=line.kind != "ok")
        else:
            click.echo(line.text)


def print_sending(workspace: Workspace, result: mail.SendResult, nothing: str) -> None:
    """What `mail.send_step` or `remind.remind_step` did (`nothing`: the line when no
    message was due); exits 1 when a message failed. Also run by `grille demo`."""
    for note in result.skipped:
        click.echo(f"  pas de relance : {note}")
    if result.delivery is None:
        click.echo(nothing)
        return
    _print_delivery(workspace, result.delivery)
    if result.exit_code:
        sys.exit(result.exit_code)


NOTHING_TO_SEND = "Rien à envoyer : chaque classeur a déjà été envoyé (voir --resend)."
NOTHING_TO_REMIND = "Aucun tuteur à relancer."


def refresh_after_sending(workspace: Workspace, opened: Campaign, result: mail.SendResult) -> None:
    """Rewrite suivi.xlsx when messages left (or were written to the outbox)."""
    delivery = result.delivery
    if delivery is not None and not delivery.dry_run and not delivery.fault:
        refresh_tracking(workspace, opened.db)


def _run_sending(
    workspace: Workspace, step: Callable[..., mail.SendResult], nothing: str, **options: Any
) -> None:
    """Run `mail.send_step` or `remind.remind_step` with the command's options, then print
    what it did (exit 1 when a message failed)."""
    with open_campaign(workspace) as opened:
        result = step(opened, password=_ask_smtp_password, **options)
        refresh_after_sending(workspace, opened, result)
    print_sending(workspace, result, nothing)


def _mark_sent(workspace: Workspace, student_ids: tuple[str, ...], class_name: str | None) -> None:
    """`grille send --mark-sent` (`mail.mark_sent_by_hand`)."""
    with open_campaign(workspace) as opened:
        marked = mail.mark_sent_by_hand(
            opened, student_ids=set(student_ids) or None, class_name=class_name
        )
        refresh_tracking(workspace, opened.db)
    for student in marked:
        click.echo(f"  envoyé par vous : {student.label}")
    click.echo(
        f"{len(marked)} classeur(s) notés comme envoyés."
        if marked
        else "Aucun message préparé en attente : rien à noter."
    )


@cli.command()
@click.option("--dry-run", is_flag=True, help="N'envoie rien : liste les messages à envoyer.")
@click.option("--resend", is_flag=True, help="Renvoie aussi les classeurs déjà envoyés.")
@click.option(
    "--mark-sent",
    is_flag=True,
    help="Note que vous avez envoyé vous-même les messages préparés dans output/envoi/.",
)
@student_option
@class_option
@pass_context
def send(ctx: Context, /, **options: Any) -> None:
    """Envoie à chaque tuteur, en un seul message, les classeurs de ses stagiaires.

    Exemple : grille send --dry-run   (puis, après relecture : grille send)

    Sans serveur d'envoi dans la section [envoi] de grille.toml, les messages sont
    écrits, prêts à partir, dans output/envoi/ (à ouvrir avec Thunderbird ou Outlook).
    Avec un serveur, le mot de passe est demandé, ou lu dans la variable
    GRILLE_SMTP_MOT_DE_PASSE. Le texte du message se modifie dans
    input_templates/email_envoi.txt. Un classeur déjà envoyé ne l'est pas deux fois
    (sauf --resend), même après une interruption. Après avoir envoyé vous-même les
    messages préparés : grille send --mark-sent.
    """
    if not options.pop("mark_sent"):
        _run_sending(ctx.workspace, mail.send_step, NOTHING_TO_SEND, **options)
    elif options["dry_run"] or options["resend"]:
        raise click.UsageError("--mark-sent ne s'emploie ni avec --dry-run ni avec --resend.")
    else:
        _mark_sent(ctx.workspace, options["student_ids"], options["class_name"])


@cli.command("remind")
@click.option("--dry-run", is_flag=True, help="N'envoie rien : liste les relances et leur contenu.")
@student_option
@class_option
@click.option(
    "--interval",
    "interval_days",
    type=click.IntRange(min=0),
    default=7,
    show_default=True,
    metavar="JOURS",
    help="Ne relance pas un tuteur déjà relancé depuis moins de ce nombre de jours.",
)
@click.option("--again", is_flag=True, help="Relance même les tuteurs relancés récemment.")
@pass_context
def remind_command(ctx: Context, /, **options: Any) -> None:
    """Relance les tuteurs dont une évaluation manque, est incomplète ou invalide.

    Exemple : grille remind --dry-run   (puis : grille remind)

    Un message par tuteur : pour chaque stagiaire, ce qui manque ou est à corriger, et
    le classeur à compléter en pièce jointe (celui que le tuteur a renvoyé, sinon
    l'original). Même envoi que « grille send » ; texte modifiable dans
    input_templates/email_relance.txt.
    """
    _run_sending(ctx.workspace, remind.remind_step, NOTHING_TO_REMIND, **options)

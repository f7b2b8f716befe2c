"""The words grille stores in its database and compares: one `StrEnum` each.

Each member is the exact string kept in `output/grille.sqlite` (and in JSON output), so
a member compares equal to the stored text and can be written back as is.
"""

from __future__ import annotations

from enum import StrEnum


class ReturnStatus(StrEnum):
    """Where a student's evaluation stands (`tracking.student_statuses`)."""

    GENERATED = "generated"  # a workbook exists, never delivered
    PREPARED = "prepared"  # written to the outbox: the teacher sends it herself
    SENT = "sent"  # sent over SMTP, or marked sent by the teacher
    INCOMPLETE = "incomplete"  # returned with answers missing
    INVALID = "invalid"  # returned with answers that are not valid
    COMPLETE = "complete"  # returned, every answer given and valid


class MatchKind(StrEnum):
    """How a returned file was recognised (`returns.match`)."""

    SIGNED = "signed"  # its hidden, signed identity
    VISIBLE = "visible"  # the name written on it: to be confirmed by the teacher
    REJECTED = "rejected"  # not a workbook of this campaign


class SendingKind(StrEnum):
    """Why a workbook left (`sendings.kind`)."""

    SEND = "envoi"  # the first message to the tutor
    REMIND = "relance"  # a reminder


class Channel(StrEnum):
    """How a message left (`sendings.channel`)."""

    SMTP = "smtp"  # sent by grille over the school's server
    FILE = "fichier"  # written to output/envoi/ for the teacher to send
    BY_HAND = "manuel"  # an outbox message the teacher said she sent (`send --mark-sent`)

"""The words grille stores in its database and compares: one `StrEnum` each.

Each member is the exact string kept in `output/grille.sqlite` (and in `grille status
--format json`), so a member compares equal to the stored text, data stored before these
enums existed reads the same, and a member can be written back as is. This module imports
nothing of grille: any module can use it.
"""

from __future__ import annotations

from enum import StrEnum


class ReturnStatus(StrEnum):
    """Where a student's evaluation stands (`tracking.student_statuses`); the last three
    are also what the validation of a return found (`returns.status`)."""

    GENERATED = "generated"  # a workbook exists, never delivered
    PREPARED = "prepared"  # written to the outbox: the teacher sends it herself
    SENT = "sent"  # sent over SMTP, or marked sent by the teacher
    INCOMPLETE = "incomplete"  # returned with answers missing
    INVALID = "invalid"  # returned with answers that are not valid
    COMPLETE = "complete"  # returned, every answer given and valid


Status = ReturnStatus  # the name the returns modules use
# What the validation of a returned workbook can find: the statuses of a return.
RETURNED = (ReturnStatus.INCOMPLETE, ReturnStatus.INVALID, ReturnStatus.COMPLETE)


class MatchKind(StrEnum):
    """How a returned file was tied to a student (`returns.match`)."""

    SIGNED = "signed"  # hidden identity present and its signature verified
    VISIBLE = "visible"  # no usable hidden identity: matched on the name written on it
    REJECTED = "rejected"  # refused: another campaign, tampered, not a grille workbook…


Match = MatchKind  # the name the returns modules use


class Standing(StrEnum):
    """Where a recognised return stands with the teacher (view `return_standing`)."""

    SIGNED = "signed"  # hidden identity verified: counts without a decision
    CONFIRMED = "confirmed"  # matched « à confirmer », confirmed by the teacher
    REJECTED = "rejected"  # matched « à confirmer », rejected by the teacher: never counts
    PENDING = "pending"  # matched « à confirmer », no decision yet


class SendingKind(StrEnum):
    """Why a workbook left (`sendings.kind`)."""

    SEND = "envoi"  # the first message to the tutor
    REMIND = "relance"  # a reminder


class Channel(StrEnum):
    """How a message left (`sendings.channel`)."""

    SMTP = "smtp"  # sent by grille over the school's server
    FILE = "fichier"  # written to output/envoi/ for the teacher to send
    BY_HAND = "manuel"  # an outbox message the teacher said she sent (`send --mark-sent`)

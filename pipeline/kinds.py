"""The small vocabularies several steps share: how a return was matched, where it stands,
and the status of a student or of a return.

Each is a `StrEnum` whose values are the strings stored in the database and written in
`grille status --format json`: a member compares equal to its string, so data stored
before these enums existed reads the same. This module imports nothing of grille: any
module can use it.
"""

from __future__ import annotations

from enum import StrEnum


class Match(StrEnum):
    """How a returned file was tied to a student (`returns.match`)."""

    SIGNED = "signed"  # hidden identity present and its signature verified
    VISIBLE = "visible"  # no usable hidden identity: matched on the name written on it
    REJECTED = "rejected"  # refused: another campaign, tampered, not a grille workbook…


class Standing(StrEnum):
    """Where a recognised return stands with the teacher (view `return_standing`)."""

    SIGNED = "signed"  # hidden identity verified: counts without a decision
    CONFIRMED = "confirmed"  # matched « à confirmer », confirmed by the teacher
    REJECTED = "rejected"  # matched « à confirmer », rejected by the teacher: never counts
    PENDING = "pending"  # matched « à confirmer », no decision yet


class ReturnStatus(StrEnum):
    """What the validation of a return found (`returns.status`)."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    INVALID = "invalid"


class Status(StrEnum):
    """A student's status in the campaign: before any return, then its return's status."""

    GENERATED = "generated"
    PREPARED = "prepared"  # message written to the outbox, not sent by grille
    SENT = "sent"
    INCOMPLETE = "incomplete"
    INVALID = "invalid"
    COMPLETE = "complete"

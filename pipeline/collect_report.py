"""What `grille collect` says about each file, in French: the same sentences on the
terminal and in the interface (`grille ui`, page Retours).

`describe` is the line (and its detail lines) of one recorded return: for whom, its
status, « à confirmer », which return it replaces or why it is ignored, its problems.
`collect_lines` gives every line of a `CollectResult` in the order the command prints
them: each file recorded, the duplicates, the messages without workbook, the files refused
or unreadable, then the summary.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import state
from pipeline.collect import CollectResult, Recorded
from pipeline.kinds import Match, Standing
from pipeline.settings import Workspace
from pipeline.validation import STATUS_LABELS

MAX_PROBLEMS_SHOWN = 8  # per return on screen; the tracking workbook has them all


def when(version: state.ReturnVersion) -> str:
    """« enregistré le 12/11/2026 à 14:05 »: the date that orders a version, and what it is."""
    moment = version.local_version_at
    what = {
        state.VERSION_SAVED: "enregistré",
        state.VERSION_MAILED: "envoyé",
        state.VERSION_FILE: "fichier modifié",
    }.get(version.version_source, "reçu")
    return f"{what} le {moment:%d/%m/%Y} à {moment:%H:%M}"


def _version_clause(recorded: Recorded) -> str:
    """What this return does to the version that counts, said on its line."""
    outcome = recorded.outcome
    assert outcome is not None
    kept, replaced = recorded.counted_instead, recorded.replaced
    if replaced is not None:
        return f" — remplace le retour n° {replaced.return_id} ({when(replaced)})."
    if kept is None:
        return ""
    if kept.chosen:
        return (
            f" — le retour n° {kept.return_id} que vous avez retenu compte toujours ; "
            f"« grille collect --use {recorded.return_id} » pour retenir celui-ci."
        )
    if outcome.match == Match.VISIBLE and kept.standing != Standing.PENDING:
        return ""  # said below: it waits for the teacher's confirmation
    return (
        f" — plus ancien que le retour n° {kept.return_id} déjà reçu ({when(kept)}) : "
        "ignoré, gardé dans l'historique."
    )


def describe(recorded: Recorded) -> str:
    outcome = recorded.outcome
    assert outcome is not None
    if outcome.match == Match.REJECTED:
        return f"  Refusé — {recorded.origin} : {outcome.match_note}"
    label = STATUS_LABELS.get(outcome.status or "", outcome.status or "")
    line = f"  {recorded.student_name} — {label} — {recorded.origin}"
    if outcome.match == Match.VISIBLE:
        line += f" — à confirmer (retour n° {recorded.return_id})"
    if not recorded.in_roster:
        line += " — stagiaire retiré de la liste"
    line += _version_clause(recorded)
    if not recorded.in_roster:
        line += (
            "\n      Ce stagiaire n'est plus dans la liste des stagiaires (retiré lors d'un "
            "« grille generate ») : son retour est enregistré, il n'est plus relancé. S'il doit "
            "y revenir, remettez-le dans la liste et relancez « grille generate »."
        )
    if outcome.match == Match.VISIBLE:
        number = recorded.return_id
        line += f"\n      À confirmer (retour n° {number}) — {outcome.match_note}"
        kept = recorded.counted_instead
        if kept is not None and kept.standing != Standing.PENDING and not kept.chosen:
            label = state.STANDING_LABELS[kept.standing]
            line += (
                f"\n      En attente de confirmation : le retour {label} n° {kept.return_id} "
                f"(« {kept.file_name} », reçu le {kept.collected_at[:10]}) compte toujours ; "
                "celui-ci ne le remplacera que si vous le confirmez "
                f"(« grille confirm {number} ») et qu'il est le plus récent des deux."
            )
        elif kept is None:
            line += (
                f"\n      En attente de confirmation : il compte pour ce stagiaire en attendant ; "
                f"confirmez-le (« grille confirm {number} ») ou rejetez-le "
                f"(« grille confirm {number} --reject »)."
            )
    if recorded.counted_instead is not None and outcome.match != Match.VISIBLE:
        return line  # a version kept aside: its problems do not matter now
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


@dataclass(frozen=True)
class CollectLine:
    """One thing `collect` says: `kind` "ok" (a return recorded), "attention" (recorded,
    with something to check, or ignored) or "erreur" (refused or unreadable); `text` as the
    command prints it (detail lines after line breaks); `error`: printed on stderr."""

    kind: str
    text: str
    error: bool = False


def _kind(recorded: Recorded) -> str:
    outcome = recorded.outcome
    if outcome is None or outcome.match == Match.REJECTED:
        return "erreur"
    if outcome.match == Match.VISIBLE or not recorded.in_roster:
        return "attention"
    if recorded.counted_instead is not None or outcome.problems:
        return "attention"
    return "ok"


def file_lines(result: CollectResult) -> list[CollectLine]:
    """One line per file or message, in the order `grille collect` prints them."""
    lines = [CollectLine(_kind(recorded), describe(recorded)) for recorded in result.recorded]
    lines += [
        CollectLine("attention", f"  Déjà collecté — {origin} : ignoré.")
        for origin in result.duplicates
    ]
    mailbox = result.mailbox
    lines += [
        CollectLine("attention", f"  Sans classeur — {description} : ignoré.")
        for description in (mailbox.without_workbook if mailbox else [])
    ]
    for problem in result.problems:
        warning = problem.severity == "warning"
        prefix = "Attention" if warning else "Erreur"
        lines.append(
            CollectLine("attention" if warning else "erreur", f"  {prefix} — {problem}", True)
        )
    return lines


def summary_lines(
    result: CollectResult, workspace: Workspace, *, mark_seen: bool = False
) -> list[CollectLine]:
    """The summary `grille collect` ends with (and the mailbox's, when it was read)."""
    kind = "erreur" if result.failed else "ok"
    lines = [
        CollectLine(
            kind,
            f"{result.recorded_count} retour(s) enregistré(s), {result.failed_count} fichier(s) "
            f"refusé(s) ou illisible(s), {len(result.duplicates)} déjà collecté(s). "
            f"Suivi : {workspace.tracking_path.relative_to(workspace.root)}.",
        )
    ]
    mailbox = result.mailbox
    if mailbox is not None:
        seen = f" {mailbox.marked_seen} marqué(s) comme lu(s)." if mark_seen else ""
        lines.append(
            CollectLine(
                "ok",
                f"Boîte aux lettres {mailbox.mailbox} : {mailbox.read} message(s) relevé(s), "
                f"{mailbox.already} déjà traité(s), {len(mailbox.without_workbook)} sans "
                f"classeur, {mailbox.returns} retour(s) enregistré(s).{seen}",
            )
        )
        if mailbox.interrupted:
            lines.append(CollectLine("erreur", f"Erreur : {mailbox.interrupted}", True))
    return lines

"""The library's French sentences, as the interface shows them.

The steps' messages name the command that does a thing (« lancez d'abord « grille report » »):
the interface shows them as they are, so that both front ends say the same, and adds
where the same thing is done here: « grille report » (dans l'interface : page Bilans).
A command the interface does not offer (restore, rebuild…) is said to be typed in a
terminal.
"""

from __future__ import annotations

import re

# « grille <command> [<subcommand>] … »: the command named in a message
_COMMAND = re.compile(r"« grille ([a-z]+)(?: ([a-z]+))?[^»]*»")
_SAID = re.compile(r"(?: \(| ; )(?:dans l'interface|à taper)")  # where, already added

_PAGES = {
    "init": "page Campagne",
    "generate": "page Classeurs, « Générer les classeurs »",
    "send": "page Envoi",
    "remind": "page Relances",
    "collect": "page Retours",
    "confirm": "boutons « Confirmer » et « Rejeter » de la page du stagiaire",
    "status": "page Suivi",
    "report": "page Bilans, « Écrire les bilans »",
    "archive": "page Archive",
    "purge": "page Archive",
}
_SUBCOMMANDS = {("archive", "verify"): "page Archive, « Vérifier une archive »"}
_TERMINAL = "à taper dans un terminal"


def in_interface(text: str) -> str:
    """`text` with, after the first mention of each command, where the interface does
    the same: « grille report » (dans l'interface : page Bilans…), or, for a command in
    parentheses, (« grille report » ; dans l'interface : page Bilans…)."""
    told: set[str] = set()

    def where(match: re.Match[str]) -> str:
        command, sub = match.group(1), match.group(2) or ""
        if command in told or _SAID.match(text, match.end()):
            told.add(command)
            return match.group(0)
        told.add(command)
        here = _SUBCOMMANDS.get((command, sub)) or _PAGES.get(command)
        said = f"dans l'interface : {here}" if here else _TERMINAL
        if text[match.start() - 1 : match.start()] == "(":
            return f"{match.group(0)} ; {said}"
        return f"{match.group(0)} ({said})"

    return _COMMAND.sub(where, text)

"""The campaign's classes, and the one way a class typed by the teacher (`--class`) is
found among them: case, accents and spaces do not count. Every command's `--class` goes
through `resolve_class`; the closing steps (report, archive, purge) through
`select_classes`, which also gives every class when none is named."""

from __future__ import annotations

import sqlite3
from typing import Protocol

from pipeline import state
from pipeline.errors import UnknownClassError
from pipeline.text import fold


class _WithDatabase(Protocol):
    @property
    def db(self) -> sqlite3.Connection: ...


def _key(name: str) -> str:
    return fold(name).replace(" ", "")


def resolve_class(campaign: sqlite3.Connection | _WithDatabase, name: str) -> str:
    """The campaign's class that `name` designates: the class spelled exactly so, else the
    one class equal to it once case, accents and spaces are ignored (« bts muc2a » for
    « BTS MUC 2A »). Raises `UnknownClassError` (French, listing the classes) otherwise.

    `campaign` is an opened campaign, or its database.
    """
    db = campaign if isinstance(campaign, sqlite3.Connection) else campaign.db
    classes = state.class_names(db)
    if name in classes:
        return name
    found = [known for known in classes if _key(known) == _key(name)]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(f"« {known} »" for known in found or classes)
    if found:
        raise UnknownClassError(
            f"« {name.strip()} » désigne plusieurs classes de la campagne : {listed}. "
            "Écrivez-la exactement comme dans la liste des stagiaires."
        )
    if any(_key(purged) == _key(name) for purged in state.purged_classes(db)):
        raise UnknownClassError(
            f"classe « {name.strip()} » déjà purgée. Classes de la campagne : {listed or 'aucune'}."
        )
    if not classes:
        raise UnknownClassError(
            f"classe « {name.strip()} » inconnue : la campagne n'a encore aucun stagiaire. "
            "Lancez d'abord « grille generate »."
        )
    raise UnknownClassError(
        f"classe « {name.strip()} » inconnue de la campagne. Ses classes : {listed}."
    )


def select_classes(
    campaign: sqlite3.Connection | _WithDatabase, class_name: str | None
) -> list[str]:
    """The campaign's classes (sorted), or only the one `class_name` designates
    (`resolve_class`)."""
    db = campaign if isinstance(campaign, sqlite3.Connection) else campaign.db
    if class_name is None:
        return state.class_names(db)
    return [resolve_class(db, class_name)]

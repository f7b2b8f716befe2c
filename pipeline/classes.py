"""The campaign's classes, and the one way a class typed by the teacher (`--class`) is
found among them: case, accents and spaces do not count."""

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
    if not classes:
        raise UnknownClassError(
            f"classe « {name.strip()} » inconnue : la campagne n'a encore aucun stagiaire. "
            "Lancez d'abord « grille generate »."
        )
    raise UnknownClassError(
        f"classe « {name.strip()} » inconnue de la campagne. Ses classes : {listed}."
    )

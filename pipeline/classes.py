"""Which of the campaign's classes a closing step works on: `select_classes`.

`grille report`, `grille archive` and `grille purge` resolve their `--class` here, and
nowhere else: the class is found whatever its case and spaces (« bts 2a » is « BTS 2A »),
and an unknown one gets one French message that lists the campaign's classes.
"""

from __future__ import annotations

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.errors import GrilleError


def _folded(name: str) -> str:
    """A class name with case and spaces ignored."""
    return "".join(name.split()).casefold()


def select_classes(campaign: Campaign, class_name: str | None) -> list[str]:
    """The campaign's classes (sorted), or only the one `class_name` names; a French error
    listing the classes when it names none of them."""
    classes = state.class_names(campaign.db)
    if class_name is None:
        return classes
    if class_name in classes:
        return [class_name]
    wanted = _folded(class_name)
    found = [klass for klass in classes if _folded(klass) == wanted]
    if len(found) == 1:
        return found
    known = ", ".join(classes) or "aucune"
    if found:
        raise GrilleError(
            f"Classe « {class_name} » ambiguë : écrivez-la exactement comme l'une de "
            f"{', '.join(found)}. Classes de la campagne : {known}."
        )
    purged = any(_folded(klass) == wanted for klass in state.purged_classes(campaign.db))
    what = "déjà purgée" if purged else "inconnue"
    raise GrilleError(f"Classe « {class_name} » {what}. Classes de la campagne : {known}.")

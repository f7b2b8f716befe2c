"""Text as people type it: the one way grille compares names, and the one e-mail check.

`fold` is how a typed text is compared with what grille knows (names, classes, headers):
case, accents, apostrophe styles and runs of spaces do not count. It is also the key of
the identifiers `roster.derive_student_id` computes, so it must not change what it gives
for a name already folded: existing campaigns would see their students renamed.

`is_email` accepts exactly one plain address (no display name, comma, space or line break).

`display_name` is the one way grille writes a student's name (« DUPONT Jean »).
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Typographic apostrophes (’ ‘), the modifier letter of « NʼDiaye », and the acute accent
# typed as an apostrophe: all become the plain one.
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "´": "'"})
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def fold(text: str) -> str:
    """`text` for comparisons: case and accents dropped, apostrophes made plain, every run
    of spaces (any Unicode space, tab or line break) one space, none at the ends.

    A letter that is not an accented letter for Unicode stays itself, lower case: « Ø »
    folds to « ø », never to nothing.
    """
    if text.isascii():  # the usual case: no accent or apostrophe to unify
        return " ".join(text.lower().split())
    return _fold_unicode(text)


@functools.lru_cache(maxsize=4096)  # classes and first names repeat down a roster
def _fold_unicode(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


def is_email(text: str) -> bool:
    """True for exactly one plain e-mail address (dot-atom, a domain with a dot)."""
    return _EMAIL.fullmatch(text) is not None and ".." not in text


def display_name(last_name: str, first_name: str) -> str:
    """« DUPONT Jean »: the last name in capitals, then the first name, the way French
    school documents name a student."""
    return f"{last_name.upper()} {first_name}"


def french_count(number: int) -> str:
    """100000 → « 100 000 » (non-breaking space), as French texts write numbers."""
    return f"{number:,}".replace(",", "\u00a0")

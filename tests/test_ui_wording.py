"""The library's sentences in the interface: the command they name, then where the
interface does the same (`pipeline.ui.wording`)."""

from __future__ import annotations

from pipeline.ui.wording import in_interface


def test_in_interface__a_command_gets_its_page__once__said_again_unchanged() -> None:
    text = "Aucun bilan à archiver : lancez d'abord « grille report »."
    shown = in_interface(text)
    assert shown == (
        "Aucun bilan à archiver : lancez d'abord « grille report » (dans l'interface : page "
        "Bilans, « Écrire les bilans »)."
    )
    assert in_interface(shown) == shown  # a page may pass a message through twice


def test_in_interface__in_parentheses__the_page_inside_them__each_command_told_once() -> None:
    shown = in_interface(
        "confirmez-le (« grille confirm 12 ») ou rejetez-le (« grille confirm 12 --reject »)"
    )
    assert shown == (
        "confirmez-le (« grille confirm 12 » ; dans l'interface : boutons « Confirmer » et "
        "« Rejeter » de la page du stagiaire) ou rejetez-le (« grille confirm 12 --reject »)"
    )


def test_in_interface__subcommand_and_commands_only_typed_in_a_terminal() -> None:
    assert in_interface("puis « grille archive verify <archive.zip> ».") == (
        "puis « grille archive verify <archive.zip> » (dans l'interface : page Archive, "
        "« Vérifier une archive »)."
    )
    assert in_interface("« grille restore --list » montre les sauvegardes.") == (
        "« grille restore --list » (à taper dans un terminal) montre les sauvegardes."
    )
    assert in_interface("Rien à faire.") == "Rien à faire."

"""Network faults in French: the one table the mail server (`mail`) and the mailbox
(`inbox`) describe a failed connection with."""

from __future__ import annotations

import socket
import ssl

_FAULTS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    ((ssl.SSLEOFError, ssl.SSLZeroReturnError), "connexion coupée par le serveur"),
    (ssl.SSLError, "échec de la négociation TLS (« securite » et « port » cohérents ?)"),
    (TimeoutError, "le serveur ne répond pas (délai dépassé)"),
    (socket.gaierror, "nom de serveur inconnu"),
    (ConnectionRefusedError, "connexion refusée (serveur arrêté, ou mauvais port)"),
    (ConnectionError, "connexion coupée par le serveur"),
    (EOFError, "connexion coupée par le serveur"),
)


def network_fault(exc: BaseException) -> str | None:
    """What went wrong with a connection, in French; None when `exc` is no network fault
    (the caller then names its protocol's own faults)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        shown = " ".join((exc.verify_message or "").split())
        return (
            f"certificat du serveur refusé{f' ({shown})' if shown else ''} : vérifiez le nom "
            "du serveur, celui que donne votre service informatique"
        )
    for kind, text in _FAULTS:
        if isinstance(exc, kind):
            return text
    return None

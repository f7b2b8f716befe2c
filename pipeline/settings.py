"""The campaign folder: its paths, its configuration file and its secret key.

A campaign folder is made by `grille init DIR`:

    DIR/grille.toml                   configuration the teacher edits (French keys)
    DIR/.grille/cle_secrete           per-campaign HMAC key; stays here, never sent
    DIR/input_templates/roster.xlsx   the roster to fill
    DIR/output/                       everything grille writes (workbooks, returns, reports)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, toml_position
from pipeline.files import atomic_write_bytes
from pipeline.kinds import SendingKind

CONFIG_NAME = "grille.toml"
ROSTER_XLSX_NAME = "roster.xlsx"
ROSTER_CSV_NAME = "roster.csv"  # a CSV roster put in place by the web interface
KEY_RELATIVE = Path(".grille") / "cle_secrete"
BACKUPS_RELATIVE = Path("output") / ".sauvegardes"
BUNDLED_TEMPLATES = Path(__file__).parent / "data"  # grille's own texts, copied by init
# The tutors' messages, editable in input_templates/ (grille's own text when absent).
TEMPLATE_NAMES = {SendingKind.SEND: "email_envoi.txt", SendingKind.REMIND: "email_relance.txt"}
_FINGERPRINT_MESSAGE = b"grille: empreinte de la cle de campagne"


SECURITY_CHOICES = ("starttls", "ssl", "aucune")


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the school's outgoing mail server; no host: messages go to files."""

    host: str = ""
    port: int = 587
    security: str = "starttls"  # "starttls", "ssl" or "aucune"
    user: str = ""
    sender: str = ""
    pause_seconds: float = 1.0  # between two messages, not to be taken for a spammer

    @property
    def configured(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class ImapSettings:
    """Where the tutors' answers arrive: an IMAP mailbox folder."""

    host: str = ""
    port: int = 993
    security: str = "ssl"  # "ssl", "starttls" or "aucune"
    user: str = ""
    folder: str = "INBOX"
    since: date | None = None

    @property
    def configured(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class CampaignConfig:
    """What the teacher filled in `grille.toml`."""

    campaign_id: str
    school: str
    session: str
    school_year: str
    teacher_name: str
    teacher_email: str
    deadline: date | None
    smtp: SmtpSettings
    protection_password: str = ""
    imap: ImapSettings = ImapSettings()


@dataclass(frozen=True)
class Workspace:
    """Paths of one campaign folder."""

    root: Path

    def __post_init__(self) -> None:
        # absolute, so that every path derived from it compares with the files found
        object.__setattr__(self, "root", Path(self.root).resolve())

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def key_path(self) -> Path:
        return self.root / KEY_RELATIVE

    @property
    def templates_dir(self) -> Path:
        return self.root / "input_templates"

    @property
    def roster_path(self) -> Path:
        """The roster `generate` reads by default: input_templates/roster.xlsx, or
        roster.csv when only that one is there (a CSV put in place by `grille ui`)."""
        xlsx = self.templates_dir / ROSTER_XLSX_NAME
        csv = self.templates_dir / ROSTER_CSV_NAME
        return csv if csv.is_file() and not xlsx.exists() else xlsx

    @property
    def report_template_path(self) -> Path:
        return self.templates_dir / "modele_rapport.docx"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def workbooks_dir(self) -> Path:
        return self.output_dir / "classeurs"

    @property
    def returns_dir(self) -> Path:
        return self.output_dir / "retours"

    @property
    def reports_dir(self) -> Path:
        return self.output_dir / "rapports"

    @property
    def tracking_path(self) -> Path:
        return self.output_dir / "suivi.xlsx"

    @property
    def db_path(self) -> Path:
        return self.output_dir / "grille.sqlite"

    @property
    def backups_dir(self) -> Path:
        """Rolling copies of the database, made before each command that writes."""
        return self.root / BACKUPS_RELATIVE

    @property
    def journal_dir(self) -> Path:
        """Where the details of an internal error are written, one file per error."""
        return self.output_dir / "journal"

    def load_config(self) -> CampaignConfig:
        """Read `grille.toml`; a French `ConfigError` names the key at fault."""
        if not self.config_path.is_file():
            raise ConfigError(
                f"Aucune campagne dans « {self.root} » (fichier {CONFIG_NAME} absent). "
                "Lancez d'abord « grille init » dans ce dossier, ou indiquez le dossier "
                "de la campagne avec --dir."
            )
        try:
            data = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise _syntax_error(exc) from exc
        return _parse_config(data)

    def load_key(self) -> bytes:
        """The campaign's secret HMAC key."""
        try:
            text = self.key_path.read_text(encoding="ascii").strip()
            key = bytes.fromhex(text)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"Clé de la campagne illisible ou absente ({self.key_path}) : sans elle, les "
                "classeurs retournés ne peuvent être authentifiés. Restaurez le fichier "
                f"{KEY_RELATIVE.as_posix()} depuis votre sauvegarde de la campagne (une campagne "
                "qui n'a encore produit aucun classeur peut en recevoir une nouvelle avec "
                "« grille init »)."
            ) from exc
        if len(key) < 16:
            raise ConfigError(f"Clé de la campagne trop courte ({self.key_path}).")
        return key


def parse_config_text(text: str) -> CampaignConfig:
    """The configuration written in `text` (grille.toml's content); a French
    `ConfigError` names the syntax fault or the key at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc) from exc
    return _parse_config(data)


def _syntax_error(exc: ValueError) -> ConfigError:
    return ConfigError(
        f"{CONFIG_NAME} : syntaxe invalide {toml_position(exc)}. Corrigez-le : les textes "
        "s'écrivent entre guillemets, les dates AAAA-MM-JJ sans guillemets, chaque section "
        "[…] une seule fois."
    )


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{CONFIG_NAME} : [{name}] doit être une section.")
    return value


def _text(section: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    value = section.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{CONFIG_NAME} : « {where}.{key} » doit être un texte entre guillemets.")
    value = value.strip()
    if required and not value:
        raise ConfigError(f"{CONFIG_NAME} : « {where}.{key} » est obligatoire. Renseignez-le.")
    return value


def _parse_config(data: dict[str, Any]) -> CampaignConfig:
    campaign = _section(data, "campagne")
    teacher = _section(data, "professeur")
    mail = _section(data, "envoi")
    deadline = campaign.get("date_limite_retour")
    if deadline in ("", None):
        deadline = None
    elif not isinstance(deadline, date):
        raise ConfigError(
            f"{CONFIG_NAME} : « campagne.date_limite_retour » doit être une date sans guillemets, "
            "au format AAAA-MM-JJ (exemple : 2027-03-15)."
        )
    inbox = _section(data, "reception")
    since = inbox.get("depuis")
    if since in ("", None):
        since = None
    elif not isinstance(since, date):
        raise ConfigError(
            f"{CONFIG_NAME} : « reception.depuis » doit être une date sans guillemets, "
            "au format AAAA-MM-JJ (exemple : 2027-03-01)."
        )
    pause = mail.get("pause_secondes", 1)
    if isinstance(pause, bool) or not isinstance(pause, int | float) or not 0 <= pause <= 600:
        raise ConfigError(
            f"{CONFIG_NAME} : « envoi.pause_secondes » doit être un nombre de secondes "
            "entre 0 et 600 (ex. 1)."
        )
    return CampaignConfig(
        campaign_id=_text(campaign, "identifiant", "campagne", required=True),
        school=_text(campaign, "etablissement", "campagne"),
        session=_text(campaign, "session", "campagne"),
        school_year=_text(campaign, "annee_scolaire", "campagne"),
        teacher_name=_text(teacher, "nom", "professeur"),
        teacher_email=_text(teacher, "email", "professeur"),
        deadline=deadline,
        protection_password=_text(campaign, "mot_de_passe_protection", "campagne"),
        smtp=SmtpSettings(
            host=_text(mail, "serveur", "envoi"),
            port=_port(mail, "envoi", 587),
            security=_security(mail, "envoi", "starttls"),
            user=_text(mail, "utilisateur", "envoi"),
            sender=_text(mail, "expediteur", "envoi"),
            pause_seconds=float(pause),
        ),
        imap=ImapSettings(
            host=_text(inbox, "serveur", "reception"),
            port=_port(inbox, "reception", 993),
            security=_security(inbox, "reception", "ssl"),
            user=_text(inbox, "utilisateur", "reception"),
            folder=_text(inbox, "dossier", "reception") or "INBOX",
            since=since,
        ),
    )


def _port(section: dict[str, Any], where: str, default: int) -> int:
    port = section.get("port", default)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(
            f"{CONFIG_NAME} : « {where}.port » doit être un numéro de port (ex. {default})."
        )
    return port


def _security(section: dict[str, Any], where: str, default: str) -> str:
    security = _text(section, "securite", where) or default
    if security not in SECURITY_CHOICES:
        raise ConfigError(
            f"{CONFIG_NAME} : « {where}.securite » vaut « {security} » ; "
            "choisissez starttls, ssl ou aucune."
        )
    return security


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def default_school_year(today: date) -> str:
    """« 2026-2027 » for a date between September 2026 and August 2027."""
    start = today.year if today.month >= 9 else today.year - 1
    return f"{start}-{start + 1}"


def render_config(
    *,
    campaign_id: str,
    school: str,
    session: str,
    school_year: str,
    teacher_name: str,
    teacher_email: str,
    deadline: date | None,
    protection_password: str,
) -> str:
    """The text of a fresh `grille.toml`, commented in French for the teacher."""
    deadline_line = (
        f"date_limite_retour = {deadline.isoformat()}"
        if deadline
        else "# date_limite_retour = 2027-03-15"
    )
    return f"""\
# Configuration de la campagne d'évaluation des stages (grille).
# Modifiez les valeurs entre guillemets ; les dates s'écrivent AAAA-MM-JJ, sans guillemets.

[campagne]
# Identifiant unique de la campagne : ne le modifiez pas (il authentifie les classeurs).
identifiant = {_toml_string(campaign_id)}
etablissement = {_toml_string(school)}
session = {_toml_string(session)}
annee_scolaire = {_toml_string(school_year)}
# Date limite de retour des grilles par les tuteurs.
{deadline_line}
# Mot de passe de la protection des feuilles des classeurs (pour les déverrouiller).
mot_de_passe_protection = {_toml_string(protection_password)}

[professeur]
nom = {_toml_string(teacher_name)}
email = {_toml_string(teacher_email)}

[envoi]
# Serveur d'envoi (SMTP) de l'établissement pour envoyer les classeurs aux tuteurs.
# Laissé vide, « grille send » écrit les messages prêts à partir (.eml) dans
# output/envoi/ : ouvrez-les avec Thunderbird ou Outlook et envoyez-les vous-même.
serveur = ""
# 587 avec starttls, 465 avec ssl.
port = 587
# starttls, ssl ou aucune
securite = "starttls"
utilisateur = ""
# Adresse d'expédition (par défaut : l'e-mail du professeur).
expediteur = ""
# Pause entre deux messages, en secondes (les serveurs limitent les envois en rafale).
pause_secondes = 1
# Le mot de passe n'est jamais écrit ici : grille le demande, ou le lit dans la
# variable d'environnement GRILLE_SMTP_MOT_DE_PASSE.

[reception]
# Boîte aux lettres (IMAP) où arrivent les réponses des tuteurs, pour
# « grille collect --imap ». Exemple : serveur = "imap.ac-academie.fr"
serveur = ""
# 993 avec ssl, 143 avec starttls.
port = 993
# ssl, starttls ou aucune
securite = "ssl"
utilisateur = ""
# Dossier de la boîte à relever.
dossier = "INBOX"
# Ne relever que les messages reçus depuis cette date (AAAA-MM-JJ, sans guillemets).
# depuis = 2027-03-01
# Mot de passe : demandé, ou lu dans la variable GRILLE_IMAP_MOT_DE_PASSE.
"""


def new_campaign_id() -> str:
    return f"campagne-{uuid.uuid4().hex[:12]}"


def key_fingerprint(key: bytes) -> str:
    """What the database remembers of the key: an HMAC of a fixed text, never the key."""
    return hmac.new(key, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()


def create_key(workspace: Workspace) -> None:
    """Create the campaign's secret key; never overwrites an existing one."""
    if workspace.key_path.exists():
        return
    atomic_write_bytes(workspace.key_path, secrets.token_hex(32).encode("ascii") + b"\n")

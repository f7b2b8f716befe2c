"""Setting a campaign up from a form (the web interface): create it, edit the settings of
`grille.toml`, put a roster in place.

- `create_campaign` checks the typed fields, then calls `campaign.init_campaign` (the
  step of `grille init`).
- `edit_settings` writes `grille.toml` with tomlkit, which keeps the file's comments and
  layout: only the values changed are rewritten. The text written is checked first with
  the same rules as when a command loads it (`settings.parse_config_text`), and a value a
  form can get wrong (an e-mail, a date, a port) is refused in French, naming its field.
  A file edited meanwhile in a text editor is never overwritten (`SettingsChanged`).
- `install_roster` puts a roster file, already read without error, where `grille
  generate` reads it by default: `input_templates/roster.xlsx` (or `roster.csv`, see
  `Workspace.roster_path`); the one it replaces is kept in `input_templates/anciennes_listes/`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from pipeline import state
from pipeline.campaign import InitResult, init_campaign
from pipeline.errors import ConfigError
from pipeline.files import atomic_write_bytes
from pipeline.settings import (
    CONFIG_NAME,
    ROSTER_CSV_NAME,
    ROSTER_XLSX_NAME,
    SECURITY_CHOICES,
    Workspace,
    default_school_year,
    parse_config_text,
)
from pipeline.text import is_email

OLD_ROSTERS = "anciennes_listes"  # under input_templates/: the rosters replaced
_YEAR = re.compile(r"(\d{4})\s*[-/]\s*(\d{4})")
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class Setting:
    """One value of `grille.toml` a form edits: `key` is « section.name »."""

    key: str
    label: str  # French, as the form shows it
    kind: str = "text"  # text, email, date, year, port, security, pause
    hint: str = ""  # French example or advice, shown under the field

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]


SETTINGS: tuple[Setting, ...] = (
    Setting("campagne.etablissement", "Établissement", hint="Ex. Lycée Jean Moulin"),
    Setting("campagne.session", "Classe ou session", hint="Ex. BTS MCO 2027"),
    Setting("campagne.annee_scolaire", "Année scolaire", "year", "Ex. 2026-2027"),
    Setting("campagne.date_limite_retour", "Date limite de retour", "date", "JJ/MM/AAAA"),
    Setting(
        "campagne.mot_de_passe_protection",
        "Mot de passe de protection des feuilles",
        hint="Pour déverrouiller les feuilles des classeurs dans Excel.",
    ),
    Setting("professeur.nom", "Nom du professeur coordinateur"),
    Setting("professeur.email", "E-mail du professeur", "email", "Ex. claire.martin@lycee.fr"),
    Setting("envoi.serveur", "Serveur d'envoi (SMTP)", hint="Vide : messages écrits en .eml."),
    Setting("envoi.port", "Port du serveur d'envoi", "port", "587 avec starttls, 465 avec ssl"),
    Setting("envoi.securite", "Sécurité du serveur d'envoi", "security"),
    Setting("envoi.utilisateur", "Identifiant sur le serveur d'envoi"),
    Setting(
        "envoi.expediteur",
        "Adresse d'expédition",
        "email",
        "Vide : l'e-mail du professeur.",
    ),
    Setting("envoi.pause_secondes", "Pause entre deux messages (secondes)", "pause", "Ex. 1"),
    Setting("reception.serveur", "Serveur de réception (IMAP)", hint="Ex. imap.ac-academie.fr"),
    Setting("reception.port", "Port du serveur de réception", "port", "993 avec ssl"),
    Setting("reception.securite", "Sécurité du serveur de réception", "security"),
    Setting("reception.utilisateur", "Identifiant sur le serveur de réception"),
    Setting("reception.dossier", "Dossier de la boîte à relever", hint="Ex. INBOX"),
    Setting("reception.depuis", "Relever les messages reçus depuis le", "date", "JJ/MM/AAAA"),
)
SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}
# What the workbooks show: a change makes `generate` make them again.
WORKBOOK_SECTIONS = ("campagne", "professeur")


class SettingsError(ConfigError):
    """Typed values refused: `faults` maps each field's key to its French reason."""

    def __init__(self, faults: dict[str, str]):
        self.faults = faults
        super().__init__(" ".join(faults.values()))


class SettingsChanged(ConfigError):
    """grille.toml changed on disk since the form was shown: nothing written."""


def _fault(setting: Setting, typed: str, what: str) -> str:
    return f"« {setting.label} » ({CONFIG_NAME} : {setting.key}) : « {typed} » {what}"


def _parse_date(setting: Setting, typed: str) -> date:
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(typed, fmt).date()
        except ValueError:
            continue
    raise ValueError(
        _fault(setting, typed, "n'est pas une date : écrivez-la JJ/MM/AAAA (ex. 15/03/2027).")
    )


def typed_value(setting: Setting, typed: str) -> Any:
    """The TOML value of what was typed in `setting`'s field (None: remove the key); a
    French `ValueError` naming the field when it cannot be one."""
    typed = typed.strip()
    if setting.kind == "date":
        return _parse_date(setting, typed) if typed else None
    if setting.kind == "email":
        if typed and not is_email(typed):
            raise ValueError(
                _fault(
                    setting,
                    typed,
                    "n'est pas une adresse e-mail valide : écrivez une seule adresse, "
                    "sans espace ni virgule (ex. prenom.nom@lycee.fr).",
                )
            )
        return typed
    if setting.kind == "year":
        found = _YEAR.fullmatch(typed)
        if typed and (found is None or int(found[2]) != int(found[1]) + 1):
            raise ValueError(
                _fault(setting, typed, "n'est pas une année scolaire : écrivez-la ex. 2026-2027.")
            )
        return f"{found[1]}-{found[2]}" if found else typed
    if setting.kind == "port":
        if not typed.isdigit() or not 0 < int(typed) < 65536:
            raise ValueError(
                _fault(setting, typed, "n'est pas un numéro de port (un nombre, ex. 587).")
            )
        return int(typed)
    if setting.kind == "pause":
        try:
            number = float(typed.replace(",", "."))
        except ValueError:
            number = -1.0
        if not 0 <= number <= 600:
            raise ValueError(
                _fault(setting, typed, "n'est pas un nombre de secondes entre 0 et 600.")
            )
        return int(number) if number.is_integer() else number
    if setting.kind == "security" and typed not in SECURITY_CHOICES:
        raise ValueError(_fault(setting, typed, "n'est pas un choix possible."))
    return typed


def shown_value(value: Any) -> str:
    """A value of grille.toml as a form field shows it (a date as AAAA-MM-JJ)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class SettingsFile:
    """What `read_settings` found in grille.toml: each setting's value as a form shows
    it, the campaign's id, and the fingerprint of the text (to notice an edit meanwhile)."""

    values: dict[str, str]
    campaign_id: str
    fingerprint: str


def _fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _document(workspace: Workspace) -> tuple[bytes, tomlkit.TOMLDocument]:
    try:
        data = workspace.config_path.read_bytes()
    except FileNotFoundError:
        workspace.load_config()  # the French « Aucune campagne… »
        raise
    try:
        return data, tomlkit.parse(data.decode("utf-8"))
    except (tomlkit.exceptions.TOMLKitError, UnicodeDecodeError):
        workspace.load_config()  # names the syntax fault as every command does
        raise


def read_settings(workspace: Workspace) -> SettingsFile:
    """The values of grille.toml the form edits; a French `ConfigError` when the file is
    absent or does not load (as a command would say)."""
    workspace.load_config()
    data, document = _document(workspace)
    plain: dict[str, Any] = document.unwrap()
    values: dict[str, str] = {}
    for setting in SETTINGS:
        section = plain.get(setting.section)
        raw = section.get(setting.name) if isinstance(section, dict) else None
        values[setting.key] = shown_value(raw)
    campaign = plain.get("campagne")
    campaign_id = campaign.get("identifiant", "") if isinstance(campaign, dict) else ""
    return SettingsFile(values, str(campaign_id), _fingerprint(data))


def check_values(typed: Mapping[str, str]) -> dict[str, Any]:
    """The TOML value of each setting given in `typed`; `SettingsError` names every field
    refused."""
    values: dict[str, Any] = {}
    faults: dict[str, str] = {}
    for key, text in typed.items():
        setting = SETTINGS_BY_KEY[key]
        try:
            values[key] = typed_value(setting, text)
        except ValueError as exc:
            faults[key] = str(exc)
    if faults:
        raise SettingsError(faults)
    return values


@dataclass(frozen=True)
class EditResult:
    """What `edit_settings` changed: the settings whose value was written."""

    changed: list[Setting]

    @property
    def workbooks_affected(self) -> bool:
        """True when the workbooks show a changed value (`generate` makes them again)."""
        return any(setting.section in WORKBOOK_SECTIONS for setting in self.changed)


def edit_settings(
    workspace: Workspace, typed: Mapping[str, str], *, fingerprint: str | None = None
) -> EditResult:
    """Write in grille.toml the settings of `typed` (key → text as typed) whose value
    changed, keeping the rest of the file as it is, under the campaign's run lock.

    `fingerprint` is the one `read_settings` gave when the form was shown: when the file
    changed since, nothing is written (`SettingsChanged`). Values are refused in French,
    naming each field (`SettingsError`), and the new text is checked as a command loads
    it before it replaces the file.
    """
    values = check_values(typed)
    with state.run_lock(workspace.output_dir):
        data, document = _document(workspace)
        if fingerprint is not None and fingerprint != _fingerprint(data):
            raise SettingsChanged(
                f"{CONFIG_NAME} a été modifié (dans un éditeur de texte ?) depuis l'ouverture "
                "de cette page : rien n'a été enregistré, pour ne pas effacer ce changement. "
                "Rechargez la page pour voir son contenu actuel, puis refaites vos changements."
            )
        before = read_settings(workspace).values
        changed: list[Setting] = []
        for key, value in values.items():
            setting = SETTINGS_BY_KEY[key]
            if shown_value(value) == before.get(key, ""):
                continue
            placeholder = _placeholder(setting, document, value)
            if placeholder is not None:  # « # depuis = 2027-03-01 » becomes the value
                document = placeholder
                changed.append(setting)
                continue
            section = document.get(setting.section)
            if not isinstance(section, Mapping):
                section = tomlkit.table()
                document[setting.section] = section
            if value is None:
                if setting.name in section:
                    del section[setting.name]  # type: ignore[attr-defined]
            else:
                section[setting.name] = value  # type: ignore[index]
            changed.append(setting)
        if not changed:
            return EditResult([])
        text = tomlkit.dumps(document)
        parse_config_text(text)  # the checks a command makes when it loads the file
        atomic_write_bytes(workspace.config_path, text.encode("utf-8"))
    return EditResult(changed)


def _placeholder(
    setting: Setting, document: tomlkit.TOMLDocument, value: Any
) -> tomlkit.TOMLDocument | None:
    """The document with `setting` written in place of its commented example line (as
    `grille init` leaves « # date_limite_retour = 2027-03-15 »), when it has no value
    yet and the file has exactly one such line; else None."""
    section = document.get(setting.section)
    if value is None or (isinstance(section, Mapping) and setting.name in section):
        return None
    text = tomlkit.dumps(document)
    line = re.compile(rf"^#[ \t]*{re.escape(setting.name)}[ \t]*=.*$", re.MULTILINE)
    if len(line.findall(text)) != 1:
        return None
    written = f"{setting.name} = {tomlkit.item(value).as_string()}"
    return tomlkit.parse(line.sub(lambda _: written, text))


CREATION_FIELDS = (
    "campagne.etablissement",
    "campagne.session",
    "campagne.annee_scolaire",
    "professeur.nom",
    "professeur.email",
    "campagne.date_limite_retour",
)


def create_campaign(
    workspace: Workspace, typed: Mapping[str, str], *, today: date | None = None
) -> InitResult:
    """`grille init` from a form: `typed` holds the texts of `CREATION_FIELDS`. Every field
    is checked before anything is written (`SettingsError`); a folder that already holds
    a campaign is refused (`ConfigError`: open it instead)."""
    if workspace.config_path.exists():
        raise ConfigError(
            f"Le dossier « {workspace.root} » contient déjà une campagne ({CONFIG_NAME}) : "
            "ouvrez-le plutôt (« Ouvrir une campagne existante »)."
        )
    if workspace.root.exists() and not workspace.root.is_dir():
        raise ConfigError(f"« {workspace.root} » est un fichier, pas un dossier.")
    given = {key: typed.get(key, "") for key in CREATION_FIELDS}
    values = check_values(given)
    result = init_campaign(
        workspace,
        school=values["campagne.etablissement"],
        session=values["campagne.session"],
        teacher_name=values["professeur.nom"],
        teacher_email=values["professeur.email"],
        deadline=values["campagne.date_limite_retour"],
        today=today,
    )
    year = values["campagne.annee_scolaire"]
    if year and year != default_school_year(today or date.today()):
        edit_settings(workspace, {"campagne.annee_scolaire": year})
    return result


# ------------------------------------------------------------------ the roster


@dataclass(frozen=True)
class InstalledRoster:
    """Where `install_roster` put the roster, and where the replaced ones were kept."""

    path: Path
    kept: list[Path]


def install_roster(
    workspace: Workspace, source: Path, *, now: datetime | None = None
) -> InstalledRoster:
    """Copy the roster `source` (read without error beforehand) to where `grille generate`
    reads it by default: `input_templates/roster.xlsx`, or `roster.csv` for a CSV (its
    kind told by its bytes, never by its name). The roster it replaces is moved, never
    deleted, to `input_templates/anciennes_listes/`. Call it under the run lock."""
    data = source.read_bytes()
    name = ROSTER_XLSX_NAME if data.startswith(_ZIP_MAGIC) else ROSTER_CSV_NAME
    folder = workspace.templates_dir
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    kept: list[Path] = []
    olds = [folder / old for old in (ROSTER_XLSX_NAME, ROSTER_CSV_NAME)]
    for old in olds:
        if not old.is_file():
            continue
        aside = folder / OLD_ROSTERS
        target = aside / f"{old.stem}-{stamp}{old.suffix}"
        serial = 2
        while target.exists():
            target = aside / f"{old.stem}-{stamp}-{serial}{old.suffix}"
            serial += 1
        atomic_write_bytes(target, old.read_bytes())  # kept before anything is replaced
        kept.append(target)
    path = folder / name
    atomic_write_bytes(path, data)
    for old in olds:
        if old != path and old.is_file():
            old.unlink()  # its copy is in anciennes_listes/
    return InstalledRoster(path, kept)


__all__ = [
    "CREATION_FIELDS",
    "SETTINGS",
    "EditResult",
    "InstalledRoster",
    "Setting",
    "SettingsChanged",
    "SettingsError",
    "SettingsFile",
    "create_campaign",
    "edit_settings",
    "install_roster",
    "read_settings",
]

"""Campaign-level operations behind the CLI: create a campaign, generate workbooks.

Each function takes a `Workspace`, does one step of the flow by calling the step's
module, records it in the state database and returns a result object; the CLI only
prints that result.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pipeline import state
from pipeline.errors import ConfigError, GridError, GrilleError
from pipeline.files import atomic_write_bytes
from pipeline.grid import Grid, edit_fault, grid_source, load_grid, parse_grid_text
from pipeline.mail import BUNDLED_TEMPLATES, TEMPLATE_NAMES
from pipeline.parallel import map_batches
from pipeline.report import write_default_template
from pipeline.roster import Student, write_roster_template
from pipeline.settings import (
    KEY_RELATIVE,
    CampaignConfig,
    Workspace,
    create_key,
    default_school_year,
    key_fingerprint,
    new_campaign_id,
    render_config,
)
from pipeline.workbook import (
    TemplateOptions,
    WorkbookStamper,
    build_template,
    identity_values,
    sign_identity,
    student_file_name,
    template_bytes,
)

KEY_NAME = KEY_RELATIVE.as_posix()


class KeyChangedError(GrilleError):
    """The campaign's key is not the one that signed its workbooks."""


class DatabaseLostError(GrilleError):
    """The database is missing or blank while the campaign has files on disk."""


def campaign_traces(workspace: Workspace) -> list[str]:
    """What the campaign already made on disk, in French (« 12 classeur(s) dans … »)."""
    output = workspace.output_dir
    kinds = (
        (workspace.workbooks_dir, "*.xlsx", "classeur(s)"),
        (workspace.returns_dir, "*", "retour(s)"),
        (output / "envoi", "*.eml", "message(s) aux tuteurs"),
        (output / "courrier", "*.eml", "message(s) relevé(s)"),
        (workspace.reports_dir, "*.docx", "bilan(s)"),
        (output / "archive", "*.zip", "archive(s)"),
    )
    found = []
    for folder, pattern, label in kinds:
        if not folder.is_dir():
            continue
        count = sum(1 for p in folder.rglob(pattern) if p.is_file() and not p.name.startswith("."))
        if count:
            found.append(f"{count} {label} dans {folder.relative_to(workspace.root).as_posix()}")
    return found


def check_database_present(workspace: Workspace) -> None:
    """Refuse to go on with a missing or blank database beside a campaign's files.

    Starting again from an empty database would quietly redo everything: new workbooks,
    every tutor mailed again, the returns forgotten.
    """
    blank = state.blank_database(workspace.db_path)
    if blank is None:
        return
    traces = campaign_traces(workspace)
    if not traces:
        return
    database = workspace.db_path.relative_to(workspace.root).as_posix()
    saved = workspace.backups_dir.relative_to(workspace.root).as_posix()
    copies = state.backups(workspace.backups_dir)
    if copies:
        recovery = (
            f"Remettez la dernière sauvegarde de la base : « grille restore {copies[-1].name} » "
            f"(« grille restore --list » montre les {len(copies)} sauvegarde(s) de {saved})."
        )
    elif workspace.workbooks_dir.is_dir() and any(workspace.workbooks_dir.rglob("*.xlsx")):
        recovery = (
            f"Aucune sauvegarde dans {saved} : reconstruisez la base à partir des fichiers de "
            "la campagne (classeurs, retours, messages envoyés, bilans) avec « grille rebuild » "
            "(donnez-lui votre liste des stagiaires comme à « grille generate » : --roster), "
            f"ou remettez {database} depuis votre propre sauvegarde du dossier de la campagne."
        )
    else:
        recovery = (
            f"Aucune sauvegarde dans {saved} : remettez {database} depuis votre propre "
            "sauvegarde du dossier de la campagne."
        )
    raise DatabaseLostError(
        f"La base de la campagne ({database}) est {blank}, alors que la campagne a déjà "
        f"{', '.join(traces)}. Repartir d'une base vide referait tout : nouveaux classeurs, "
        f"tuteurs de nouveau sollicités, retours oubliés ; grille s'arrête donc. {recovery} "
        "Pour vraiment recommencer une campagne, déplacez d'abord le dossier output ailleurs."
    )


def _key_changed() -> KeyChangedError:
    return KeyChangedError(
        f"La clé secrète de la campagne ({KEY_NAME}) n'est plus celle qui a signé ses "
        "classeurs : elle a été remplacée ou recréée. Tous les retours des tuteurs seraient "
        f"refusés. Restaurez {KEY_NAME} depuis votre sauvegarde de la campagne ; si elle est "
        "perdue, refaites les classeurs avec la nouvelle clé (« grille generate --new-key ») "
        "et envoyez-les aux tuteurs (« grille send ») : les classeurs déjà envoyés "
        "ne pourront plus être reconnus, les retours déjà collectés sont conservés."
    )


def check_identity(db: sqlite3.Connection, config: CampaignConfig, key: bytes) -> None:
    """Refuse a key or campaign id that no longer matches the campaign's workbooks.

    The first time (a database made before this check), the key is compared with the
    signatures of the latest workbooks, then its fingerprint is recorded.
    """
    fingerprint = key_fingerprint(key)
    recorded = state.recorded_identity(db)
    if recorded is None:
        signed = state.latest_signatures(db)
        if signed and not any(
            sign_identity(key, config.campaign_id, r["student_id"], r["grid_id"], r["grid_version"])
            == r["signature"]
            for r in signed
        ):
            raise _key_changed()
        state.record_identity(db, config.campaign_id, fingerprint)
        return
    if recorded["campaign_id"] != config.campaign_id:
        raise KeyChangedError(
            f"L'identifiant de la campagne dans grille.toml (« {config.campaign_id} ») n'est "
            f"plus celui de ses classeurs (« {recorded['campaign_id']} ») : tous les retours "
            "seraient refusés comme venant d'une autre campagne. Dans grille.toml, section "
            f'[campagne], remettez : identifiant = "{recorded["campaign_id"]}"'
        )
    if recorded["key_fingerprint"] != fingerprint:
        raise _key_changed()


@dataclass(frozen=True)
class InitResult:
    """What `init_campaign` created (paths relative to the campaign folder)."""

    created: list[str]
    kept: list[str]


def init_campaign(
    workspace: Workspace,
    *,
    school: str = "",
    session: str = "",
    teacher_name: str = "",
    teacher_email: str = "",
    deadline: date | None = None,
    today: date | None = None,
) -> InitResult:
    """Create the campaign folder; files that already exist are kept as they are.

    Refuses (before writing anything) to start a blank database beside a campaign's files,
    and to make a new key for a campaign whose workbooks were signed with the lost one.
    Call it under the run lock (`state.run_lock(workspace.output_dir)`).
    """
    created: list[str] = []
    kept: list[str] = []
    root = workspace.root
    check_database_present(workspace)
    if not workspace.key_path.exists():
        _refuse_new_key(workspace)
    root.mkdir(parents=True, exist_ok=True)
    (workspace.output_dir).mkdir(exist_ok=True)

    def note(path: Path, made: bool) -> None:
        (created if made else kept).append(path.relative_to(root).as_posix())

    if workspace.config_path.exists():
        note(workspace.config_path, False)
    else:
        text = render_config(
            campaign_id=new_campaign_id(),
            school=school,
            session=session,
            school_year=default_school_year(today or date.today()),
            teacher_name=teacher_name,
            teacher_email=teacher_email,
            deadline=deadline,
            protection_password=secrets.token_urlsafe(6),
        )
        atomic_write_bytes(workspace.config_path, text.encode("utf-8"))
        note(workspace.config_path, True)
    key_existed = workspace.key_path.exists()
    create_key(workspace)
    note(workspace.key_path, not key_existed)
    if workspace.roster_path.exists():
        note(workspace.roster_path, False)
    else:
        workspace.templates_dir.mkdir(parents=True, exist_ok=True)
        write_roster_template(workspace.roster_path)
        note(workspace.roster_path, True)
    if workspace.report_template_path.exists():
        note(workspace.report_template_path, False)
    else:
        write_default_template(workspace.report_template_path)
        note(workspace.report_template_path, True)
    for name in TEMPLATE_NAMES.values():  # the tutors' messages, editable
        target = workspace.templates_dir / name
        if target.exists():
            note(target, False)
        else:
            atomic_write_bytes(target, (BUNDLED_TEMPLATES / name).read_bytes())
            note(target, True)
    db = state.connect(workspace.db_path)
    try:
        try:
            config = workspace.load_config()
        except ConfigError:  # the teacher's file, kept as is; the next command names the fault
            return InitResult(created, kept)
        key = workspace.load_key()
        if key_existed:
            check_identity(db, config, key)
        else:  # no workbook was signed with a previous key (`_refuse_new_key`)
            state.record_identity(db, config.campaign_id, key_fingerprint(key))
    finally:
        db.close()
    return InitResult(created, kept)


def _refuse_new_key(workspace: Workspace) -> None:
    """A new key is refused once workbooks were signed: their returns would be refused."""
    signed = 0
    if workspace.db_path.is_file() and state.blank_database(workspace.db_path) is None:
        db = state.connect(workspace.db_path)
        try:
            signed = len(state.latest_signatures(db, limit=1))
        finally:
            db.close()
    on_disk = workspace.workbooks_dir.is_dir() and any(workspace.workbooks_dir.rglob("*.xlsx"))
    if signed or on_disk:
        raise KeyChangedError(
            f"La clé secrète de la campagne ({KEY_NAME}) a disparu, alors que des classeurs "
            "ont déjà été signés avec elle : une nouvelle clé ferait refuser tous les retours "
            f"des tuteurs. grille n'en crée donc pas. Restaurez {KEY_NAME} depuis votre "
            "sauvegarde de la campagne, puis relancez la commande. Si elle est perdue pour "
            "de bon : « grille generate --new-key » crée une nouvelle clé et refait les "
            "classeurs, à envoyer aux tuteurs (« grille send »)."
        )


@dataclass
class Campaign:
    """An opened campaign: its folder, configuration, key, grid and database."""

    workspace: Workspace
    config: CampaignConfig
    key: bytes
    grid: Grid
    db: sqlite3.Connection

    @classmethod
    def open(
        cls,
        workspace: Workspace,
        grid_file: Path | None = None,
        *,
        backup: bool = False,
        new_key: bool = False,
    ) -> Campaign:
        """Open a campaign with `grid_file`, or else the grid its workbooks were made with.

        Refuses a missing or blank database beside the campaign's files, and a key that
        did not sign its workbooks (unless `new_key`: the caller makes them again). With
        `backup` (commands that write), the database is first copied to
        `output/.sauvegardes/`.
        """
        config = workspace.load_config()
        check_database_present(workspace)
        if new_key:
            create_key(workspace)
        key = workspace.load_key()
        if backup:
            state.backup(workspace.db_path, workspace.backups_dir)
        db = state.connect(workspace.db_path)
        try:
            if not new_key:
                check_identity(db, config, key)
            grid = load_grid(grid_file)
            if grid_file is None:
                row = db.execute(
                    "SELECT g.grid_id, g.grid_version, g.source FROM workbooks w JOIN grids g "
                    "ON g.grid_id = w.grid_id AND g.grid_version = w.grid_version "
                    "ORDER BY w.id DESC LIMIT 1"
                ).fetchone()
                if row is not None and (row[0], row[1]) != (grid.id, grid.version):
                    grid = parse_grid_text(row[2], f"{row[0]} v{row[1]}")
        except BaseException:
            db.close()
            raise
        return cls(workspace, config, key, grid, db)

    def key_matches(self) -> bool:
        """True when the database records this campaign's key as the one that signs."""
        recorded = state.recorded_identity(self.db)
        return recorded is not None and recorded["key_fingerprint"] == key_fingerprint(self.key)

    def adopt_key(self) -> None:
        """Record the current key as the one that signs this campaign's workbooks."""
        state.record_identity(self.db, self.config.campaign_id, key_fingerprint(self.key))

    def remember_grid(self, grid_file: Path | None) -> None:
        """Keep the grid's text (TOML, even from a spreadsheet) in the database: returns are
        read with it, even years later. An edit of a grid already stored under the same id
        and version replaces it, unless `check_grid_edit` refuses it."""
        key = (self.grid.id, self.grid.version)
        row = self.db.execute(
            "SELECT source FROM grids WHERE grid_id = ? AND grid_version = ?", key
        ).fetchone()
        if row is not None and parse_grid_text(row[0], f"{key[0]} v{key[1]}") == self.grid:
            return
        self.check_grid_edit(self.grid)
        with state.transaction(self.db) as db:
            db.execute(
                "INSERT OR REPLACE INTO grids VALUES (?, ?, ?, ?)",
                (*key, grid_source(grid_file), state.now()),
            )

    def check_grid_edit(self, grid: Grid) -> None:
        """Refuse (French `GridError`) a grid that changes, under the same id and version, a
        stored grid whose workbooks have left (sent, prepared or returned) in a way that
        would misread their returns: a criterion or dimension gone or renamed, or an answer
        cell moved. A new version is always accepted: old returns keep the old one."""
        key = (grid.id, grid.version)
        row = self.db.execute(
            "SELECT source FROM grids WHERE grid_id = ? AND grid_version = ?", key
        ).fetchone()
        if row is None:
            return
        used = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM sendings s JOIN workbooks w ON w.id = s.workbook_id "
            "WHERE w.grid_id = ?1 AND w.grid_version = ?2) OR EXISTS (SELECT 1 FROM returns "
            "WHERE grid_id = ?1 AND grid_version = ?2)",
            key,
        ).fetchone()[0]
        if used:
            fault = edit_fault(parse_grid_text(row[0], f"{key[0]} v{key[1]}"), grid)
            if fault:
                raise GridError(fault)

    def stored_grids(self) -> list[tuple[Grid, str]]:
        """The grids kept in the database, with when each was stored, oldest first."""
        return [
            (parse_grid_text(row[2], f"{row[0]} v{row[1]}"), row[3])
            for row in self.db.execute(
                "SELECT grid_id, grid_version, source, stored_at FROM grids "
                "ORDER BY stored_at, rowid"
            )
        ]

    def grids(self) -> dict[tuple[str, str], Grid]:
        """Every grid this campaign generated workbooks with, by (id, version)."""
        found = {(self.grid.id, self.grid.version): self.grid}
        for row in self.db.execute("SELECT grid_id, grid_version, source FROM grids"):
            key = (row["grid_id"], row["grid_version"])
            if key not in found:
                found[key] = parse_grid_text(row["source"], f"{key[0]} v{key[1]}")
        return found

    def close(self) -> None:
        self.db.close()

    def template_options(self) -> TemplateOptions:
        c = self.config
        return TemplateOptions(
            campaign_id=c.campaign_id,
            school=c.school,
            session=c.session,
            school_year=c.school_year,
            teacher_name=c.teacher_name,
            teacher_email=c.teacher_email,
            deadline=c.deadline,
            protection_password=c.protection_password,
        )


@dataclass
class GenerateResult:
    """Per student, what `generate` did."""

    created: list[Student] = field(default_factory=list)
    updated: list[tuple[Student, str]] = field(default_factory=list)  # with the reason
    unchanged: list[Student] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # display names no longer in the roster
    files: dict[str, Path] = field(default_factory=dict)


_stamper: WorkbookStamper | None = None


def _init_stamper(template: bytes) -> None:
    global _stamper
    _stamper = WorkbookStamper(template)


def _stamp_batch(batch: Sequence[tuple[str, dict[str, str]]]) -> list[str]:
    """Write each (path, values) workbook; return their sha256 (worker side)."""
    assert _stamper is not None
    digests = []
    for path, values in batch:
        data = _stamper.stamp(values)
        atomic_write_bytes(Path(path), data, durable=False)
        digests.append(hashlib.sha256(data).hexdigest())
    return digests


def _regeneration_reason(
    ws: Workspace,
    before: sqlite3.Row,
    fingerprint: str,
    template_digest: str,
    grid: Grid,
    force: bool,
) -> str | None:
    """Why a student's workbook must be made again (French), or None to keep it."""
    if force:
        return "demandé par --force"
    if before["fingerprint"] != fingerprint:
        return "ligne de la liste modifiée"
    if (before["grid_id"], before["grid_version"]) != (grid.id, grid.version):
        return "grille modifiée"
    if before["template_digest"] != template_digest:
        return "configuration de la campagne modifiée"
    if not (ws.root / before["file"]).is_file():
        return "fichier absent"
    return None


def generate(
    campaign: Campaign,
    students: Sequence[Student],
    *,
    force: bool = False,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> GenerateResult:
    """Write one workbook per student whose roster line or template changed."""
    ws = campaign.workspace
    grid = campaign.grid
    template = template_bytes(build_template(grid, campaign.template_options()))
    template_digest = WorkbookStamper(template).digest
    result = GenerateResult()
    previous = {
        row["student_id"]: row
        for row in campaign.db.execute(
            "SELECT w.student_id, w.file, w.fingerprint, w.template_digest, w.grid_id, "
            "w.grid_version FROM workbooks w "
            "WHERE w.id = (SELECT MAX(id) FROM workbooks WHERE student_id = w.student_id)"
        )
    }
    todo: list[tuple[Student, Path, str]] = []
    for student in students:
        fingerprint = student.fingerprint()
        folder = state.class_folder(campaign.db, student.class_name)
        path = ws.workbooks_dir / folder / student_file_name(student)
        result.files[student.student_id] = path
        before = previous.get(student.student_id)
        if before is None:
            result.created.append(student)
        else:
            reason = _regeneration_reason(ws, before, fingerprint, template_digest, grid, force)
            if reason is None:
                result.unchanged.append(student)
                continue
            result.updated.append((student, reason))
        todo.append((student, path, fingerprint))

    roster_ids = {s.student_id for s in students}
    for row in campaign.db.execute(
        "SELECT student_id, last_name, first_name, class_name FROM students WHERE in_roster = 1"
    ):
        if row["student_id"] not in roster_ids:
            result.removed.append(
                f"{row['last_name'].upper()} {row['first_name']} ({row['class_name']})"
            )

    batch = [
        (str(path), identity_values(student, grid, campaign.config.campaign_id, campaign.key))
        for student, path, _ in todo
    ]
    digests = [
        digest
        for _, chunk_digests in map_batches(
            _stamp_batch,
            batch,
            jobs=jobs,
            parallel=len(batch) >= 400,  # below that, starting processes costs more
            chunk_size=50,
            initializer=_init_stamper,
            initargs=(template,),
            progress=progress,
        )
        for digest in chunk_digests
    ]
    stamp = state.now()
    with state.transaction(campaign.db) as db:
        db.execute("UPDATE students SET in_roster = 0")
        db.executemany(
            "INSERT INTO students (student_id, last_name, first_name, class_name, company, "
            "tutor_name, tutor_email, tutor_phone, student_email, referent, start_date, "
            "end_date, in_roster, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1,?) "
            "ON CONFLICT(student_id) DO UPDATE SET last_name=excluded.last_name, "
            "first_name=excluded.first_name, class_name=excluded.class_name, "
            "company=excluded.company, tutor_name=excluded.tutor_name, "
            "tutor_email=excluded.tutor_email, tutor_phone=excluded.tutor_phone, "
            "student_email=excluded.student_email, referent=excluded.referent, "
            "start_date=excluded.start_date, end_date=excluded.end_date, in_roster=1, "
            "updated_at=excluded.updated_at",
            [
                (
                    s.student_id,
                    s.last_name,
                    s.first_name,
                    s.class_name,
                    s.company,
                    s.tutor_name,
                    s.tutor_email,
                    s.tutor_phone,
                    s.student_email,
                    s.referent,
                    s.start.isoformat(),
                    s.end.isoformat(),
                    stamp,
                )
                for s in students
            ],
        )
        db.executemany(
            "INSERT INTO workbooks (student_id, file, sha256, signature, grid_id, grid_version, "
            "fingerprint, template_digest, generated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (
                    student.student_id,
                    path.relative_to(ws.root).as_posix(),
                    digest,
                    values["signature"],
                    grid.id,
                    grid.version,
                    fingerprint,
                    template_digest,
                    stamp,
                )
                for (student, path, fingerprint), (_, values), digest in zip(
                    todo, batch, digests, strict=True
                )
            ],
        )
    return result


__all__ = [
    "Campaign",
    "GenerateResult",
    "GrilleError",
    "InitResult",
    "generate",
    "init_campaign",
]

"""The campaign (`Campaign`: folder, configuration, key, grid, database) and the steps that
make it: `init_campaign`, `generate_workbooks`, `restore_backup`.

A step takes the opened campaign (`generate_workbooks(campaign, …)`), or its `Workspace`
when there is none to open yet or the database is what is repaired (`init_campaign`,
`list_backups`, `restore_backup`); it does its work through the modules of the flow,
records it in the state database and returns a result object, which the front end (the
CLI, later a web interface) only shows.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pipeline import state, tracking
from pipeline.errors import ConfigError, GridError, GrilleError, RequestError
from pipeline.files import atomic_write_bytes
from pipeline.grid import (
    Grid,
    edit_fault,
    find_shipped_grid,
    grid_source,
    load_grid,
    parse_grid_text,
    shipped_grids,
)
from pipeline.parallel import map_batches
from pipeline.report import write_default_template
from pipeline.roster import RosterResult, Student, read_rosters
from pipeline.roster_template import write_roster_template
from pipeline.settings import (
    BUNDLED_TEMPLATES,
    KEY_RELATIVE,
    TEMPLATE_NAMES,
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
    Takes the campaign's run lock (`state.run_lock`) while it works.
    """
    with state.run_lock(workspace.output_dir):
        return _init_campaign(
            workspace,
            school=school,
            session=session,
            teacher_name=teacher_name,
            teacher_email=teacher_email,
            deadline=deadline,
            today=today,
        )


def _init_campaign(
    workspace: Workspace,
    *,
    school: str,
    session: str,
    teacher_name: str,
    teacher_email: str,
    deadline: date | None,
    today: date | None,
) -> InitResult:
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


@dataclass(frozen=True)
class RestoreResult:
    """What `restore_backup` did."""

    restored: Path  # the copy put back
    described: state.Backup | None  # what it holds, when it is one of the campaign's copies
    saved_as: Path | None  # the backup that holds the replaced database
    set_aside: Path | None  # the replaced database, damaged, moved aside
    mismatch: str  # why the restored database does not fit the key or grille.toml ("": it does)


def list_backups(workspace: Workspace) -> list[state.Backup]:
    """The copies of the campaign's database (`output/.sauvegardes/`), newest first, with
    what each holds. Raises `ConfigError` when `workspace` is no campaign."""
    workspace.load_config()
    return [state.describe_backup(path) for path in reversed(state.backups(workspace.backups_dir))]


def restore_backup(workspace: Workspace, name: str) -> RestoreResult:
    """`grille restore NAME`: put back the backup called `name` (a name from
    `list_backups`, or the path of a copy), under the run lock; the replaced database is
    itself backed up first (or set aside when damaged). Then say whether the campaign's key
    and grille.toml still fit the restored database (`mismatch`)."""
    workspace.load_config()  # a campaign folder, or say so
    chosen = workspace.backups_dir / name
    if not chosen.is_file():
        chosen = Path(name)
    if not chosen.is_file():
        raise RequestError(
            f"sauvegarde « {name} » introuvable. « grille restore --list » montre celles de la "
            "campagne."
        )
    with state.run_lock(workspace.output_dir):
        done = state.restore(chosen, workspace.db_path, workspace.backups_dir)
        try:
            Campaign.open(workspace).close()
            mismatch = ""
        except GrilleError as exc:
            mismatch = str(exc)
    described = state.describe_backup(chosen) if chosen.parent == workspace.backups_dir else None
    return RestoreResult(chosen, described, done.saved_as, done.set_aside, mismatch)


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
                row = state.latest_generation_grid(db)
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
        grid = self.grid
        stored = state.stored_grid_source(self.db, grid.id, grid.version)
        if stored is not None and parse_grid_text(stored, f"{grid.id} v{grid.version}") == grid:
            return
        self.check_grid_edit(grid)
        state.store_grid(self.db, grid.id, grid.version, grid_source(grid_file))

    def check_grid_edit(self, grid: Grid) -> None:
        """Refuse (French `GridError`) a grid that changes, under the same id and version, a
        stored grid whose workbooks have left (sent, prepared or returned) in a way that
        would misread their returns: a criterion or dimension gone or renamed, or an answer
        cell moved. A new version is always accepted: old returns keep the old one."""
        stored = state.stored_grid_source(self.db, grid.id, grid.version)
        if stored is None:
            return
        if state.grid_in_use(self.db, grid.id, grid.version):
            fault = edit_fault(parse_grid_text(stored, f"{grid.id} v{grid.version}"), grid)
            if fault:
                raise GridError(fault)

    def stored_grids(self) -> list[tuple[Grid, str]]:
        """The grids kept in the database, with when each was stored, oldest first."""
        return [
            (parse_grid_text(row["source"], f"{row['grid_id']} v{row['grid_version']}"),
             row["stored_at"])
            for row in state.stored_grids(self.db)
        ]  # fmt: skip

    def grids(self) -> dict[tuple[str, str], Grid]:
        """Every grid this campaign generated workbooks with, by (id, version)."""
        found = {(self.grid.id, self.grid.version): self.grid}
        for row in state.stored_grids(self.db):
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
    """Per student, what `generate` did; with `generate_workbooks`, the roster it read.

    Nothing was generated when the roster has errors or no student (`generated` is False).
    """

    created: list[Student] = field(default_factory=list)
    updated: list[tuple[Student, str]] = field(default_factory=list)  # with the reason
    unchanged: list[Student] = field(default_factory=list)
    removed: list[Student] = field(default_factory=list)  # no longer in the roster
    files: dict[str, Path] = field(default_factory=dict)
    roster: RosterResult = field(default_factory=RosterResult)
    generated: bool = False
    new_key: bool = False  # the campaign adopted a new key: every workbook was made again


def generate_workbooks(
    campaign: Campaign,
    rosters: Sequence[Path] = (),
    *,
    grid_file: Path | None = None,
    force: bool = False,
    new_key: bool = False,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> GenerateResult:
    """`grille generate`: read the roster (`rosters`, files or folders read as one; by
    default input_templates/roster.xlsx) and, when it has no error and some students, keep
    the grid and write the workbooks that changed (`generate`).

    `grid_file` is the grid the campaign was opened with (its text is kept in the
    database). `new_key` (the campaign was opened with `new_key`): every workbook is made
    again and signed with the new key, which is adopted once they all are; refused
    (`RequestError`) when the key did not change. `progress(done, total)` follows the
    workbooks written. Raises `RosterError` when a roster file cannot be read at all.
    """
    if new_key and campaign.key_matches():
        raise RequestError(
            "--new-key : la clé secrète de la campagne est toujours celle de ses classeurs ; "
            "rien n'est à refaire."
        )
    roster = read_rosters(list(rosters) or [campaign.workspace.roster_path])
    if not roster.valid or not roster.students:
        return GenerateResult(roster=roster)
    campaign.remember_grid(grid_file)
    total = len(roster.students)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    result = generate(
        campaign, roster.students, force=force or new_key, jobs=jobs, progress=advance
    )
    if new_key:  # only once every workbook is signed with it
        campaign.adopt_key()
        result.updated = [(student, "nouvelle clé secrète") for student, _ in result.updated]
    result.roster, result.generated, result.new_key = roster, True, new_key
    return result


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
    previous = state.latest_workbooks(campaign.db)
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
    result.removed = [
        s for s in state.roster_students(campaign.db) if s.student_id not in roster_ids
    ]

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
    state.record_generation(
        campaign.db,
        students,
        [
            state.NewWorkbook(
                student.student_id, path.relative_to(ws.root).as_posix(), digest,
                values["signature"], grid.id, grid.version, fingerprint, template_digest,
            )
            for (student, path, fingerprint), (_, values), digest in zip(
                todo, batch, digests, strict=True
            )
        ],
    )  # fmt: skip
    return result


__all__ = [
    "Campaign",
    "GenerateResult",
    "GrilleError",
    "InitResult",
    "RestoreResult",
    "generate",
    "generate_workbooks",
    "init_campaign",
    "list_backups",
    "restore_backup",
]


def rewrite_tracking(workspace: Workspace, db: sqlite3.Connection) -> list[str]:
    """Rewrite output/suivi.xlsx from the database (what the teacher typed in it is read
    back first, `tracking.write_tracking`); the French warnings to show. A file that cannot
    be written (open in Excel…) is only a warning: the state is safe in the database and
    the next step rewrites it."""
    try:
        outcome = tracking.write_tracking(workspace.tracking_path, db)
    except GrilleError as exc:
        return [f"Attention — suivi non mis à jour : {exc}"]
    return outcome.warnings(workspace.root)


def find_grid(workspace: Workspace, name: str | None) -> Grid:
    """The grid `name` designates (`grille grid export --grid`): a grid file, a shipped
    grid, or the latest version of a grid stored in the campaign of `workspace`; without
    `name`, the campaign's grid, else (no campaign there) the shipped BTS MUC grid. Raises
    `RequestError` (French, listing the shipped grids) when none is called so."""
    in_campaign = workspace.config_path.is_file()
    if name is None and not in_campaign:
        return load_grid()
    if name is not None and Path(name).is_file():
        return load_grid(Path(name))
    shipped = find_shipped_grid(name) if name is not None else None
    if shipped is not None:
        return shipped
    if in_campaign:
        opened = Campaign.open(workspace)
        try:
            if name is None:
                return opened.grid
            stored = [grid for grid, _ in opened.stored_grids() if grid.id == name.strip()]
        finally:
            opened.close()
        if stored:
            return stored[-1]
    names = ", ".join(stem for stem, _ in shipped_grids())
    raise RequestError(
        f"grille « {name} » introuvable : ce n'est ni un fichier, ni une grille fournie "
        f"({names}), ni une grille de la campagne. Voyez « grille grid list »."
    )

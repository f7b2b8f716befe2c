"""The evaluation grid as data: loaded from a TOML grid file into typed objects.

No grid content lives in Python code. The default grid (`grids/bts_muc_stage.toml`)
transcribes the seed document; another grid is another file with the same schema
(see the comments at the top of the default grid), or a spreadsheet a teacher wrote
(`grid_sheet`). Loading validates the file and raises `GridError` with a French
message naming the entry at fault. `grid_to_toml` writes a grid back as TOML: that is
the text a campaign keeps in its database, whatever file the grid came from.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.errors import GridError, french_os_error, toml_position
from pipeline.files import container_of

GRIDS_DIR = Path(__file__).parent / "grids"
DEFAULT_GRID = GRIDS_DIR / "bts_muc_stage.toml"
MAX_GRID_BYTES = 10 * 1024 * 1024  # a grid is a few dozen KB, as TOML or as a spreadsheet

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_SHEET_FORBIDDEN = set("[]:*?/\\")
# Sheets every tutor's workbook already has (pipeline/workbook.py), and Excel's own
# reserved name: a grid sheet may not take them.
RESERVED_SHEETS = ("Instructions", "Listes", "_grille", "History")


def sheet_name_fault(name: str) -> str | None:
    """Why Excel or the tutor's workbook would refuse `name` as a sheet name (French)."""
    if len(name) > 31:
        return f"{len(name)} caractères, 31 au plus"
    forbidden = sorted(_SHEET_FORBIDDEN & set(name))
    if forbidden:
        return "caractère interdit " + " ".join(forbidden)
    if name.startswith("'") or name.endswith("'"):
        return "une apostrophe droite ne peut ni commencer ni finir le nom"
    if name.casefold() in {reserved.casefold() for reserved in RESERVED_SHEETS}:
        return "nom réservé par les classeurs de grille"
    return None


@dataclass(frozen=True)
class ScaleLevel:
    """One rating of the criteria scale, e.g. TS / Très satisfaisant."""

    code: str
    label: str


@dataclass(frozen=True)
class Competency:
    """A competency of the référentiel, e.g. C12 / Organiser le travail."""

    code: str
    label: str


@dataclass(frozen=True)
class ActivityBlock:
    """One row of a section's table: référentiel, activities, means and resources."""

    referential: str
    activities: str
    resources: str


@dataclass(frozen=True)
class Criterion:
    """A rated line of a section; `heading` is the sub-heading it sits under, if any."""

    id: str
    label: str
    heading: str
    section_id: str


@dataclass(frozen=True)
class Section:
    """A rated section of the grid (integration phase or an activity domain)."""

    id: str
    sheet: str
    title: str
    competencies: tuple[Competency, ...]
    blocks: tuple[ActivityBlock, ...]
    criteria_title: str
    rater: str
    criteria: tuple[Criterion, ...]

    def headings(self) -> list[str]:
        """Sub-headings in order of first appearance (empty strings excluded)."""
        seen: list[str] = []
        for criterion in self.criteria:
            if criterion.heading and criterion.heading not in seen:
                seen.append(criterion.heading)
        return seen


@dataclass(frozen=True)
class Level:
    """One level of a global dimension: its number and its descriptor."""

    value: int
    text: str


@dataclass(frozen=True)
class Dimension:
    """A dimension of the final global evaluation, with its own level set."""

    id: str
    label: str
    levels: tuple[Level, ...]

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(level.value for level in self.levels)

    @property
    def maximum(self) -> int:
        return max(self.values)

    def descriptor(self, value: int) -> str:
        for level in self.levels:
            if level.value == value:
                return level.text
        raise KeyError(value)


@dataclass(frozen=True)
class GlobalEvaluation:
    """The final global evaluation: intro text, its points and the dimensions."""

    sheet: str
    title: str
    intro: str
    points: tuple[str, ...]
    rater: str
    dimensions: tuple[Dimension, ...]

    @property
    def maximum(self) -> int:
        return sum(d.maximum for d in self.dimensions)


@dataclass(frozen=True)
class Closing:
    """Labels of the closing part: appreciations, date and signature."""

    sheet: str
    tutor_appreciation: str
    team_appreciation: str
    date: str
    signature: str


@dataclass(frozen=True)
class Grid:
    """A whole evaluation grid, in the seed's order."""

    id: str
    version: str
    title: str
    diploma: str
    objectives_title: str
    objectives: tuple[str, ...]
    competencies_intro: str
    competencies: tuple[Competency, ...]
    scale: tuple[ScaleLevel, ...]
    sections: tuple[Section, ...]
    global_evaluation: GlobalEvaluation
    closing: Closing

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        return tuple(c for s in self.sections for c in s.criteria)

    @property
    def scale_codes(self) -> tuple[str, ...]:
        return tuple(level.code for level in self.scale)

    def section(self, section_id: str) -> Section:
        for section in self.sections:
            if section.id == section_id:
                return section
        raise KeyError(section_id)


class _Reader:
    """Reads typed values out of the parsed TOML, naming the entry on error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, what: str) -> GridError:
        return GridError(f"Grille « {self.source} », entrée « {where} » : {what}")

    def table(self, data: Any, where: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(where, "une table est attendue.")
        return data

    def text(self, data: dict[str, Any], key: str, where: str, *, empty: bool = False) -> str:
        value = data.get(key)
        if value is None:
            if empty:
                return ""
            raise self.fail(f"{where}.{key}", "valeur manquante.")
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", "un texte entre guillemets est attendu.")
        value = value.strip()
        if not value and not empty:
            raise self.fail(f"{where}.{key}", "le texte est vide.")
        return value

    def items(self, data: dict[str, Any], key: str, where: str) -> list[Any]:
        value = data.get(key)
        if not isinstance(value, list) or not value:
            raise self.fail(f"{where}.{key}", "une liste non vide est attendue.")
        return value

    def ident(self, data: dict[str, Any], key: str, where: str) -> str:
        value = self.text(data, key, where)
        if not ID_PATTERN.match(value):
            raise self.fail(
                f"{where}.{key}",
                f"identifiant « {value} » invalide (minuscules, chiffres, . _ - seulement).",
            )
        return value

    def sheet(self, data: dict[str, Any], where: str) -> str:
        name = self.text(data, "sheet", where)
        fault = sheet_name_fault(name)
        if fault:
            raise self.fail(
                f"{where}.sheet",
                f"nom de feuille « {name} » invalide ({fault} ; 31 caractères au plus, "
                "sans [ ] : * ? / \\).",
            )
        return name

    def competencies(self, raw: list[Any], where: str) -> tuple[Competency, ...]:
        result = []
        for i, item in enumerate(raw, start=1):
            entry = self.table(item, f"{where}[{i}]")
            result.append(
                Competency(
                    self.text(entry, "code", f"{where}[{i}]"),
                    self.text(entry, "label", f"{where}[{i}]"),
                )
            )
        return tuple(result)


def parse_grid(data: dict[str, Any], source: str) -> Grid:
    """Validate parsed TOML data and build a `Grid`."""
    r = _Reader(source)
    grid_id = r.ident(data, "id", "grille")
    version = r.text(data, "version", "grille")

    objectives = r.table(data.get("objectives"), "objectives")
    scale_raw = r.items(data, "scale", "grille")
    scale = []
    for i, item in enumerate(scale_raw, start=1):
        entry = r.table(item, f"scale[{i}]")
        scale.append(
            ScaleLevel(r.text(entry, "code", f"scale[{i}]"), r.text(entry, "label", f"scale[{i}]"))
        )
    codes = [level.code.casefold() for level in scale]
    if len(set(codes)) != len(codes):
        raise r.fail("scale", "deux niveaux de l'échelle ont le même code.")

    sections = []
    criterion_ids: set[str] = set()
    sheets: set[str] = set()
    for s_index, raw_section in enumerate(r.items(data, "sections", "grille"), start=1):
        where = f"sections[{s_index}]"
        section = r.table(raw_section, where)
        section_id = r.ident(section, "id", where)
        where = f"sections[{section_id}]"
        sheet = r.sheet(section, where)
        if sheet.casefold() in sheets:
            raise r.fail(f"{where}.sheet", f"la feuille « {sheet} » est déjà utilisée.")
        sheets.add(sheet.casefold())
        blocks = []
        for b_index, raw_block in enumerate(r.items(section, "blocks", where), start=1):
            block = r.table(raw_block, f"{where}.blocks[{b_index}]")
            blocks.append(
                ActivityBlock(
                    r.text(block, "referential", f"{where}.blocks[{b_index}]"),
                    r.text(block, "activities", f"{where}.blocks[{b_index}]"),
                    r.text(block, "resources", f"{where}.blocks[{b_index}]", empty=True),
                )
            )
        criteria = []
        heading = ""
        for c_index, raw_item in enumerate(r.items(section, "criteria", where), start=1):
            item_where = f"{where}.criteria[{c_index}]"
            item = r.table(raw_item, item_where)
            if "heading" in item:
                if "id" in item or "label" in item:
                    raise r.fail(item_where, "un sous-titre (heading) ne porte ni id ni label.")
                heading = r.text(item, "heading", item_where)
                continue
            criterion_id = r.ident(item, "id", item_where)
            if criterion_id in criterion_ids:
                raise r.fail(f"{item_where}.id", f"l'identifiant « {criterion_id} » est en double.")
            criterion_ids.add(criterion_id)
            criteria.append(
                Criterion(criterion_id, r.text(item, "label", item_where), heading, section_id)
            )
        if not criteria:
            raise r.fail(f"{where}.criteria", "aucun critère à noter.")
        sections.append(
            Section(
                id=section_id,
                sheet=sheet,
                title=r.text(section, "title", where),
                competencies=r.competencies(r.items(section, "competencies", where), where),
                blocks=tuple(blocks),
                criteria_title=r.text(section, "criteria_title", where),
                rater=r.text(section, "rater", where),
                criteria=tuple(criteria),
            )
        )

    raw_global = r.table(data.get("global_evaluation"), "global_evaluation")
    dimensions = []
    dimension_ids: set[str] = set()
    for d_index, raw_dim in enumerate(r.items(raw_global, "dimensions", "global_evaluation"), 1):
        where = f"global_evaluation.dimensions[{d_index}]"
        dim = r.table(raw_dim, where)
        dim_id = r.ident(dim, "id", where)
        if dim_id in dimension_ids or dim_id in criterion_ids:
            raise r.fail(f"{where}.id", f"l'identifiant « {dim_id} » est en double.")
        dimension_ids.add(dim_id)
        levels = []
        for l_index, raw_level in enumerate(r.items(dim, "levels", where), start=1):
            level_where = f"{where}.levels[{l_index}]"
            level = r.table(raw_level, level_where)
            value = level.get("value")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise r.fail(f"{level_where}.value", "un nombre entier positif est attendu.")
            levels.append(Level(value, r.text(level, "text", level_where)))
        values = [level.value for level in levels]
        if values != sorted(set(values)):
            raise r.fail(f"{where}.levels", "les niveaux doivent être distincts et croissants.")
        dimensions.append(Dimension(dim_id, r.text(dim, "label", where), tuple(levels)))
    global_sheet = r.sheet(raw_global, "global_evaluation")
    closing_raw = r.table(data.get("closing"), "closing")
    closing_sheet = r.sheet(closing_raw, "closing")
    for name, where in ((global_sheet, "global_evaluation"), (closing_sheet, "closing")):
        if name.casefold() in sheets:
            raise r.fail(f"{where}.sheet", f"la feuille « {name} » est déjà utilisée.")
        sheets.add(name.casefold())

    points = raw_global.get("points", [])
    objective_items = r.items(objectives, "items", "objectives")
    if not all(isinstance(p, str) for p in [*points, *objective_items]):
        raise r.fail("objectives.items / global_evaluation.points", "des textes sont attendus.")
    return Grid(
        id=grid_id,
        version=version,
        title=r.text(data, "title", "grille"),
        diploma=r.text(data, "diploma", "grille"),
        objectives_title=r.text(objectives, "title", "objectives"),
        objectives=tuple(objective_items),
        competencies_intro=r.text(objectives, "competencies_intro", "objectives"),
        competencies=r.competencies(
            r.items(objectives, "competencies", "objectives"), "objectives.competencies"
        ),
        scale=tuple(scale),
        sections=tuple(sections),
        global_evaluation=GlobalEvaluation(
            sheet=global_sheet,
            title=r.text(raw_global, "title", "global_evaluation"),
            intro=r.text(raw_global, "intro", "global_evaluation", empty=True),
            points=tuple(points),
            rater=r.text(raw_global, "rater", "global_evaluation"),
            dimensions=tuple(dimensions),
        ),
        closing=Closing(
            sheet=closing_sheet,
            tutor_appreciation=r.text(closing_raw, "tutor_appreciation", "closing"),
            team_appreciation=r.text(closing_raw, "team_appreciation", "closing"),
            date=r.text(closing_raw, "date", "closing"),
            signature=r.text(closing_raw, "signature", "closing"),
        ),
    )


def grid_path(path: Path | str | None = None) -> Path:
    """The grid file to use: `path`, or the default grid."""
    return Path(path) if path is not None else DEFAULT_GRID


def parse_grid_text(text: str, source: str) -> Grid:
    """Parse and validate a grid from its TOML text (e.g. the copy kept in the database)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(
            f"Grille « {source} » : syntaxe TOML invalide {toml_position(exc)}."
        ) from exc
    return parse_grid(data, source)


def load_grid(path: Path | str | None = None) -> Grid:
    """Load and validate a grid file, TOML or spreadsheet (the default grid when None).

    The file type is told from its first bytes, not its name.
    """
    resolved = grid_path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError as exc:
        raise GridError(f"Grille « {resolved} » illisible : {french_os_error(exc)}.") from exc
    return _load_grid_cached(resolved, stat.st_mtime_ns, stat.st_size)


@cache
def _load_grid_cached(path: Path, mtime_ns: int, size: int) -> Grid:
    """`path` as a grid; the file's time and size are part of the key: an edited file
    is read again."""
    raw = read_grid_bytes(path)
    if container_of(raw) == "zip":  # a spreadsheet
        from pipeline.grid_sheet import read_grid_workbook  # grid_sheet imports this module

        result = read_grid_workbook(raw, path.name)
        if result.grid is None:
            raise GridError(result.summary_of_problems())
        return result.grid
    return parse_grid_text(decode_grid_text(raw, path.name), path.name)


def read_grid_bytes(path: Path) -> bytes:
    """The bytes of a grid file, refused in French when unreadable, a folder or too big."""
    try:
        if path.is_dir():
            raise GridError(
                f"Grille « {path} » : c'est un dossier ; indiquez le fichier de grille."
            )
        size = path.stat().st_size
        if size > MAX_GRID_BYTES:
            raise GridError(
                f"Grille « {path.name} » : le fichier pèse {size // (1024 * 1024)} Mo, alors "
                "qu'une grille fait quelques dizaines de Ko ; vérifiez que c'est le bon fichier."
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise GridError(f"Grille « {path} » illisible : {french_os_error(exc)}.") from exc
    if raw.startswith(b"\xd0\xcf\x11\xe0"):
        raise GridError(
            f"Grille « {path.name} » : ce classeur est au format Excel 97-2003 (.xls) ou protégé "
            "par un mot de passe ; enregistrez-le sans mot de passe au format Excel (.xlsx)."
        )
    return raw


def decode_grid_text(raw: bytes, name: str) -> str:
    """A TOML grid file's text; it must be UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GridError(f"Grille « {name} » : le fichier doit être encodé en UTF-8.") from exc


def grid_source(path: Path | str | None = None) -> str:
    """The TOML text a campaign keeps of the grid file `path`: the file itself when it is
    TOML, the TOML rendering of the grid when it is a spreadsheet."""
    resolved = grid_path(path)
    raw = read_grid_bytes(resolved)
    if container_of(raw) == "zip":
        return grid_to_toml(load_grid(resolved))
    return decode_grid_text(raw, resolved.name)


def shipped_grids() -> list[tuple[str, Grid]]:
    """The grids shipped with grille, by file name (without .toml), in name order."""
    return [(path.stem, load_grid(path)) for path in sorted(GRIDS_DIR.glob("*.toml"))]


def find_shipped_grid(name: str) -> Grid | None:
    """The shipped grid called `name` (its file name, with or without .toml, or its id)."""
    wanted = name.strip().removesuffix(".toml")
    for stem, grid in shipped_grids():
        if wanted in (stem, grid.id):
            return grid
    return None


def _answer_labels(grid: Grid) -> dict[str, str]:
    return {
        **{c.id: c.label for c in grid.criteria},
        **{d.id: d.label for d in grid.global_evaluation.dimensions},
    }


def edit_fault(stored: Grid, grid: Grid) -> str | None:
    """Why `grid` may not replace `stored` (same id and version) once workbooks made with
    `stored` have left: a criterion or dimension gone or renamed, an answer cell moved, or
    a criterion the sent workbooks do not have would make their returns misread. French;
    None when the edit is safe (texts reworded, say)."""
    from pipeline.workbook import plan_layout  # workbook imports this module

    before, after = plan_layout(stored), plan_layout(grid)
    old, new = _answer_labels(stored), _answer_labels(grid)
    cells = {**after.criteria, **after.dimensions}
    gone = [i for i in old if i not in new]
    moved = [
        i for i, ref in {**before.criteria, **before.dimensions}.items() if cells.get(i, ref) != ref
    ]
    added = [i for i in new if i not in old]
    if gone:
        what, ids, labels = "supprimé(s) ou renommé(s)", gone, old
    elif moved:
        what, ids, labels = "déplacé(s) dans le classeur", moved, old
    elif added:
        what, ids, labels = "ajouté(s), absent(s) des classeurs déjà partis", added, new
    else:
        return None
    shown = "\n".join(f"  - {i} ({labels[i]})" for i in ids)
    return (
        f"Grille « {grid.id} » version {grid.version} : des classeurs faits avec elle sont déjà "
        "partis ou revenus, et cette modification fausserait la lecture de leurs retours : "
        f"{len(ids)} critère(s) {what} :\n{shown}\nAnnulez cette modification, ou donnez "
        "une nouvelle version à la grille (rubrique « Version » de la feuille « Grille » du "
        "tableur, ou « version » du fichier .toml) : les retours des classeurs déjà partis "
        "restent lus avec l'ancienne."
    )


# ------------------------------------------------------------------ grid → TOML

_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _escape(text: str, *, keep_newlines: bool = False) -> str:
    out = []
    for char in text:
        if keep_newlines and char == "\n":
            out.append(char)
        elif char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return "".join(out)


def _string(text: str) -> str:
    """A TOML basic string."""
    return f'"{_escape(text)}"'


def _multiline(text: str) -> str:
    """A TOML multi-line basic string (every quote escaped, so no \"\"\" can close it early)."""
    if "\n" not in text:
        return _string(text)
    return f'"""\n{_escape(text, keep_newlines=True)}"""'


def _pairs(items: tuple[Competency, ...]) -> list[str]:
    return [
        "competencies = [",
        *(f"    {{ code = {_string(c.code)}, label = {_string(c.label)} }}," for c in items),
        "]",
    ]


def grid_to_toml(grid: Grid) -> str:
    """The grid as a TOML file of the shipped schema: `parse_grid_text` gives it back."""
    lines = [
        "# Evaluation grid written by grille (schema: pipeline/grids/bts_muc_stage.toml).",
        f"id = {_string(grid.id)}",
        f"version = {_string(grid.version)}",
        f"title = {_string(grid.title)}",
        f"diploma = {_string(grid.diploma)}",
        "",
        "[objectives]",
        f"title = {_string(grid.objectives_title)}",
        "items = [",
        *(f"    {_string(item)}," for item in grid.objectives),
        "]",
        f"competencies_intro = {_string(grid.competencies_intro)}",
        *_pairs(grid.competencies),
    ]
    for level in grid.scale:
        lines += [
            "",
            "[[scale]]",
            f"code = {_string(level.code)}",
            f"label = {_string(level.label)}",
        ]
    for section in grid.sections:
        lines += [
            "",
            "[[sections]]",
            f"id = {_string(section.id)}",
            f"sheet = {_string(section.sheet)}",
            f"title = {_string(section.title)}",
            *_pairs(section.competencies),
            f"criteria_title = {_string(section.criteria_title)}",
            f"rater = {_string(section.rater)}",
            "criteria = [",
        ]
        heading = ""
        for criterion in section.criteria:
            if criterion.heading != heading:
                if not criterion.heading:
                    raise ValueError(f"{criterion.id}: no TOML for a heading that stops")
                heading = criterion.heading
                lines.append(f"    {{ heading = {_string(heading)} }},")
            lines.append(
                f"    {{ id = {_string(criterion.id)}, label = {_string(criterion.label)} }},"
            )
        lines.append("]")
        for block in section.blocks:
            lines += [
                "",
                "[[sections.blocks]]",
                f"referential = {_multiline(block.referential)}",
                f"activities = {_multiline(block.activities)}",
                f"resources = {_multiline(block.resources)}",
            ]
    ge = grid.global_evaluation
    lines += [
        "",
        "[global_evaluation]",
        f"sheet = {_string(ge.sheet)}",
        f"title = {_string(ge.title)}",
        f"intro = {_string(ge.intro)}",
        "points = [",
        *(f"    {_string(point)}," for point in ge.points),
        "]",
        f"rater = {_string(ge.rater)}",
    ]
    for dimension in ge.dimensions:
        lines += [
            "",
            "[[global_evaluation.dimensions]]",
            f"id = {_string(dimension.id)}",
            f"label = {_string(dimension.label)}",
            "levels = [",
            *(
                f"    {{ value = {level.value}, text = {_string(level.text)} }},"
                for level in dimension.levels
            ),
            "]",
        ]
    closing = grid.closing
    lines += [
        "",
        "[closing]",
        f"sheet = {_string(closing.sheet)}",
        f"tutor_appreciation = {_string(closing.tutor_appreciation)}",
        f"team_appreciation = {_string(closing.team_appreciation)}",
        f"date = {_string(closing.date)}",
        f"signature = {_string(closing.signature)}",
    ]
    return "\n".join(lines) + "\n"

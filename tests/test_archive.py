"""`grille archive`, `grille archive verify` and `grille purge`, through the CLI, on real files."""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import io
import json
import shutil
import sqlite3
import tomllib
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import openpyxl
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from tests.conftest import write_csv
from tests.test_collect import ROWS, _answers_for
from tests.tutors import GRID, fill, make_campaign, run, status_json, workbook_of

YEAR = "2026-2027"
OUTSIDE = (
    "Vérifié : 11 fichier(s), empreintes et tailles ; signature de la campagne : non vérifiée "
    "(hors de la campagne) ; empreinte de l'archive : non comparée (hors de la campagne)."
)
TEAM_NOTE = "Avis de l'équipe : stage validé."


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Once per module: a campaign with returns (Abadie twice) and reports in both classes."""
    base = tmp_path_factory.mktemp("archive")
    root = make_campaign(base / "campagne", ROWS, write_csv)
    first, second = base / "retours1", base / "retours2"
    fill(
        workbook_of(root, "Abadie"),
        first / "abadie_incomplet.xlsx",
        _answers_for("Sophie Garnier", appreciation=None),
    )
    fill(workbook_of(root, "Bernard"), first / "bernard.xlsx", _answers_for("Marc Dubreuil"))
    fill(workbook_of(root, "Chevallier"), first / "chevallier.xlsx", _answers_for("Sophie Garnier"))
    fill(workbook_of(root, "Da Silva"), first / "dasilva.xlsx", _answers_for("Julien Lemaître"))
    assert run(root, "collect", str(first)).exit_code == 0
    fill(workbook_of(root, "Abadie"), second / "abadie.xlsx", _answers_for("Sophie Garnier"))
    assert run(root, "collect", str(second)).exit_code == 0
    tracking = root / "output" / "suivi.xlsx"
    wb = openpyxl.load_workbook(tracking)
    ws = wb["Suivi"]
    team = [c.value for c in ws[1]].index("Appréciation de l'équipe pédagogique")
    for row in ws.iter_rows(min_row=2):
        if row[1].value == "CHEVALLIER":
            row[team].value = TEAM_NOTE
    wb.save(tracking)
    assert run(root, "report").exit_code == 0
    return base


@pytest.fixture
def campaign(prepared: Path, tmp_path: Path) -> Path:
    """A fresh copy of the prepared campaign (its database holds relative paths)."""
    shutil.copytree(prepared, tmp_path / "copie")
    return tmp_path / "copie" / "campagne"


def _year_dir(campaign: Path) -> Path:
    return campaign / "output" / "archive" / YEAR


def _archive(campaign: Path, *args: str) -> None:
    result = run(campaign, "archive", "--year", YEAR, *args)
    assert result.exit_code == 0, result.output


def _manifest(zip_path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(zip_path) as package:
        manifest: dict[str, Any] = json.loads(package.read("manifeste.json"))
    return manifest


def _rewrite_zip(source: Path, target: Path, change: dict[str, bytes | None]) -> None:
    """Copy a zip, replacing (bytes) or removing (None) the members named in `change`."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename not in change:
                new.writestr(info, old.read(info))
            elif (data := change[info.filename]) is not None:
                new.writestr(info, data)
        for name, data in change.items():
            if name not in old.namelist() and data is not None:
                new.writestr(name, data)


def _verify(*args: str) -> Any:
    """`grille archive verify` run from the current folder, without --dir."""
    return CliRunner().invoke(cli, ["archive", "verify", *args], catch_exceptions=False)


def _campaign_id(campaign: Path) -> str:
    return tomllib.loads((campaign / "grille.toml").read_text("utf-8"))["campagne"]["identifiant"]


def _db_rows(campaign: Path, sql: str, *params: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        return db.execute(sql, params).fetchall()


# ------------------------------------------------------------------ archive


def test_archive__one_folder_and_zip_per_class__manifest_hashes_match_the_files(
    campaign: Path,
) -> None:
    result = run(campaign, "archive", "--year", YEAR)
    assert result.exit_code == 0, result.output
    year_dir = _year_dir(campaign)
    assert sorted(p.name for p in year_dir.iterdir()) == [
        "BTS_2A",
        "BTS_2A.zip",
        "BTS_2B",
        "BTS_2B.zip",
    ]
    zip_a = year_dir / "BTS_2A.zip"
    zip_b = year_dir / "BTS_2B.zip"
    assert result.output == (
        f"Classe BTS 2A, année {YEAR} :\n"
        f"  dossier : output/archive/{YEAR}/BTS_2A\n"
        f"  archive : output/archive/{YEAR}/BTS_2A.zip\n"
        f"  empreinte SHA-256 de l'archive : {_sha(zip_a.read_bytes())}\n"
        "  3 bilan(s), 1 bilan(s) de classe, 4 retour(s), 1 tableau de suivi, 1 grille(s) ; "
        "11 fichier(s) au manifeste.\n"
        f"Classe BTS 2B, année {YEAR} :\n"
        f"  dossier : output/archive/{YEAR}/BTS_2B\n"
        f"  archive : output/archive/{YEAR}/BTS_2B.zip\n"
        f"  empreinte SHA-256 de l'archive : {_sha(zip_b.read_bytes())}\n"
        "  1 bilan(s), 1 bilan(s) de classe, 1 retour(s), 1 tableau de suivi, 1 grille(s) ; "
        "6 fichier(s) au manifeste.\n"
        "Contrôlez chaque archive : grille archive verify <archive.zip>\n"
    )
    folder = year_dir / "BTS_2A"
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    with zipfile.ZipFile(zip_a) as package:
        assert sorted(package.namelist()) == on_disk
        zipped = {name: package.read(name) for name in package.namelist()}
    assert zipped["manifeste.json"] == (folder / "manifeste.json").read_bytes()
    manifest = _manifest(zip_a)
    files = manifest.pop("files")
    assert {k: v for k, v in manifest.items() if k != "created_at"} == {
        "format": "grille-archive/1",
        "campaign_id": _campaign_id(campaign),
        "grille_version": importlib.metadata.version("grille"),
        "school": "Lycée Test",
        "session": "",
        "school_year": YEAR,
        "class": "BTS 2A",
        "grids": [{"id": GRID.id, "version": GRID.version}],
    }
    assert sorted(item["path"] for item in files) == sorted(
        set(on_disk) - {"manifeste.json", "manifeste.sig"}
    )
    for item in files:
        data = (folder / item["path"]).read_bytes()
        assert (item["sha256"], item["size"]) == (_sha(data), len(data)), item["path"]
        assert zipped[item["path"]] == data
    students = status_json(campaign)
    reports = sorted(
        (i["kind"], i["student"], i["student_id"]) for i in files if "bilan" in i["kind"]
    )
    assert reports == [
        ("bilan", "ABADIE Chloé", students["Abadie"]["student_id"]),
        ("bilan", "BERNARD Yanis", students["Bernard"]["student_id"]),
        ("bilan", "CHEVALLIER Inès", students["Chevallier"]["student_id"]),
        ("bilan_classe", None, None),
    ]
    assert all(i["date"] and i["grid_id"] == GRID.id for i in files if i["kind"] == "retour")
    assert not any("cle_secrete" in name or name.endswith(".sqlite") for name in zipped)
    suivi = openpyxl.load_workbook(io.BytesIO(zipped["suivi.xlsx"]))["Suivi"]
    header = [c.value for c in suivi[1]]
    rows = [
        dict(zip(header, (c.value for c in row), strict=True)) for row in suivi.iter_rows(min_row=2)
    ]
    assert [r["Nom"] for r in rows] == ["ABADIE", "BERNARD", "CHEVALLIER"]
    assert rows[2]["Appréciation de l'équipe pédagogique"] == TEAM_NOTE
    assert "grille archive verify BTS_2A.zip" in zipped["LISEZMOI.txt"].decode("utf-8")
    assert _db_rows(
        campaign, "SELECT path, class_name, school_year, verified_at FROM archives"
    ) == [
        (f"output/archive/{YEAR}/BTS_2A.zip", "BTS 2A", YEAR, None),
        (f"output/archive/{YEAR}/BTS_2B.zip", "BTS 2B", YEAR, None),
    ]


def test_archive__each_return_is_byte_identical_to_the_file_collected(
    campaign: Path, prepared: Path
) -> None:
    _archive(campaign, "--class", "BTS 2A")
    with zipfile.ZipFile(_year_dir(campaign) / "BTS_2A.zip") as package:
        archived = {
            _sha(package.read(name)) for name in package.namelist() if name.startswith("retours/")
        }
    sent = [
        prepared / "retours1" / "abadie_incomplet.xlsx",
        prepared / "retours1" / "bernard.xlsx",
        prepared / "retours1" / "chevallier.xlsx",
        prepared / "retours2" / "abadie.xlsx",  # the later return; the earlier one is kept too
    ]
    assert archived == {_sha(path.read_bytes()) for path in sent}


def test_archive__school_year_defaults_to_the_campaign_configuration(campaign: Path) -> None:
    assert run(campaign, "archive", "--class", "BTS 2B").exit_code == 0
    year = _db_rows(campaign, "SELECT school_year FROM archives")[0][0]
    assert f'annee_scolaire = "{year}"' in (campaign / "grille.toml").read_text(encoding="utf-8")
    assert (campaign / "output" / "archive" / year / "BTS_2B.zip").is_file()


def test_archive__class_option_restricts_to_that_class(campaign: Path) -> None:
    _archive(campaign, "--class", "BTS 2B")
    assert sorted(p.name for p in _year_dir(campaign).iterdir()) == ["BTS_2B", "BTS_2B.zip"]
    assert {i["student"] for i in _manifest(_year_dir(campaign) / "BTS_2B.zip")["files"]} == {
        "DA SILVA Mathéo",
        None,
    }
    unknown = run(campaign, "archive", "--class", "BTS 3C")
    assert unknown.exit_code == 2
    assert unknown.output == (
        "Erreur : classe « BTS 3C » inconnue de la campagne. Ses classes : « BTS 2A », "
        "« BTS 2B ».\n"
    )


def test_class_option__any_case_and_spaces__report_archive_and_purge_find_the_class(
    campaign: Path,
) -> None:
    report = run(campaign, "report", "--class", "  bts   2b ")
    assert report.exit_code == 0, report.output
    assert "écrit : output/rapports/BTS_2B/bilan_classe_BTS_2B.docx" in report.output
    assert "BTS_2A" not in report.output

    archive = run(campaign, "archive", "--year", YEAR, "--class", "Bts 2B")
    assert archive.exit_code == 0, archive.output
    assert sorted(p.name for p in _year_dir(campaign).iterdir()) == ["BTS_2B", "BTS_2B.zip"]

    purge = run(campaign, "purge", "--class", "bts2b", "--oui")
    assert purge.exit_code == 1
    assert purge.output.startswith(
        "  Refusé — BTS 2B : sa dernière archive n'a pas été vérifiée. Lancez d'abord "
        f"« grille archive verify output/archive/{YEAR}/BTS_2B.zip ».\n"
    )


@pytest.mark.parametrize("command", ["report", "archive", "purge", "status"])
def test_class_option__unknown_class__the_same_french_message_lists_the_classes(
    campaign: Path, command: str
) -> None:
    result = run(campaign, command, "--class", "BTS 3C")
    assert result.exit_code == 2
    assert result.output == (
        "Erreur : classe « BTS 3C » inconnue de la campagne. Ses classes : « BTS 2A », "
        "« BTS 2B ».\n"
    )


@pytest.mark.parametrize("output_format", ["table", "json", "csv"])
def test_status_class_option__any_case_and_spaces__finds_the_class(
    campaign: Path, output_format: str
) -> None:
    result = run(campaign, "status", "--class", "  bts   2a ", "--format", output_format)

    assert result.exit_code == 0, result.output
    for name in ("ABADIE", "BERNARD", "CHEVALLIER"):
        assert name in result.output.upper()
    for name in ("DA SILVA", "FAURE", "GARCIA"):
        assert name not in result.output.upper()


def test_archive__second_run_writes_v2_and_leaves_the_first_identical(campaign: Path) -> None:
    _archive(campaign, "--class", "BTS 2A")
    year_dir = _year_dir(campaign)
    first = (year_dir / "BTS_2A.zip").read_bytes()
    first_folder = {
        p.relative_to(year_dir).as_posix(): p.read_bytes()
        for p in (year_dir / "BTS_2A").rglob("*")
        if p.is_file()
    }
    result = run(campaign, "archive", "--year", YEAR, "--class", "BTS 2A")
    assert result.exit_code == 0, result.output
    assert f"  archive : output/archive/{YEAR}/BTS_2A_v2.zip\n" in result.output
    assert sorted(p.name for p in year_dir.iterdir()) == [
        "BTS_2A",
        "BTS_2A.zip",
        "BTS_2A_v2",
        "BTS_2A_v2.zip",
    ]
    assert (year_dir / "BTS_2A.zip").read_bytes() == first
    assert {
        p.relative_to(year_dir).as_posix(): p.read_bytes()
        for p in (year_dir / "BTS_2A").rglob("*")
        if p.is_file()
    } == first_folder
    assert _verify(str(year_dir / "BTS_2A_v2.zip")).exit_code == 0


def test_archive__interrupted_build__leaves_no_folder_zip_or_temporary_file(
    campaign: Path,
) -> None:
    _archive(campaign, "--class", "BTS 2B")  # a previous archive stays as it is
    year_dir = _year_dir(campaign)
    before = sorted(p.name for p in year_dir.iterdir())
    report = next((campaign / "output" / "rapports" / "BTS_2A").glob("bilan_BERNARD_*.docx"))
    report.unlink()
    report.mkdir()  # a report that cannot be read, met halfway through the copy
    result = run(campaign, "archive", "--year", YEAR, "--class", "BTS 2A")
    assert result.exit_code == 1
    assert result.output == (
        f"Erreur : accès au fichier impossible ({report.resolve()}) : c'est un dossier.\n"
    )
    assert sorted(p.name for p in year_dir.iterdir()) == before  # nor hidden temporary files
    assert [r[0] for r in _db_rows(campaign, "SELECT class_name FROM archives")] == ["BTS 2B"]


def test_archive__stored_return_changed_since_collected__refused_and_nothing_written(
    campaign: Path,
) -> None:
    stored = _db_rows(
        campaign,
        "SELECT stored_file FROM returns r JOIN students s USING (student_id) "
        "WHERE s.last_name = 'Bernard'",
    )[0][0]
    with (campaign / stored).open("ab") as handle:
        handle.write(b"\0")
    result = run(campaign, "archive", "--year", YEAR, "--class", "BTS 2A")
    assert result.exit_code == 1
    assert result.output == (
        f"Erreur : {stored} : ce retour a changé depuis sa collecte (empreinte différente) ; "
        "aucune archive n'est écrite. Restaurez le fichier d'origine depuis une sauvegarde.\n"
    )
    assert list(_year_dir(campaign).iterdir()) == []


def test_archive__before_any_report__french_error(tmp_path: Path) -> None:
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    result = run(root, "archive")
    assert result.exit_code == 1
    assert result.output == "Erreur : Aucun bilan à archiver : lancez d'abord « grille report ».\n"
    assert not (root / "output" / "archive").exists()


@pytest.mark.soffice
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) absent")
def test_archive__pdf_option__a_pdf_of_each_report_is_archived(campaign: Path) -> None:
    _archive(campaign, "--class", "BTS 2A", "--pdf")
    manifest = _manifest(_year_dir(campaign) / "BTS_2A.zip")
    pdfs = sorted(i["path"] for i in manifest["files"] if i["kind"] == "pdf")
    docx = sorted(i["path"] for i in manifest["files"] if i["kind"].startswith("bilan"))
    assert pdfs == sorted(p.replace(".docx", ".pdf") for p in docx)
    with zipfile.ZipFile(_year_dir(campaign) / "BTS_2A.zip") as package:
        assert all(package.read(name).startswith(b"%PDF") for name in pdfs)


def test_archive__pdf_option_without_libreoffice__warns_and_archives_the_word_reports(
    campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "sans_libreoffice"))
    result = run(campaign, "archive", "--year", YEAR, "--class", "BTS 2B", "--pdf")
    assert result.exit_code == 0, result.output
    assert (
        "Attention — PDF non produits : LibreOffice (soffice) n'est pas installé. Installez-le "
        "(https://fr.libreoffice.org) ou ouvrez les bilans dans Word › Enregistrer en PDF. "
        "L'archive est faite sans ces PDF.\n"
    ) in result.output
    kinds = [i["kind"] for i in _manifest(_year_dir(campaign) / "BTS_2B.zip")["files"]]
    assert "pdf" not in kinds and kinds.count("bilan") == 1


# ------------------------------------------------------------------ verify


@pytest.fixture
def archived(campaign: Path) -> Path:
    """The zip of class BTS 2A."""
    _archive(campaign, "--class", "BTS 2A")
    return _year_dir(campaign) / "BTS_2A.zip"


def test_archive_verify__intact_archive__exit_0_and_recorded_in_the_campaign(
    campaign: Path, archived: Path
) -> None:
    result = run(campaign, "archive", "verify", str(archived))
    assert result.exit_code == 0, result.output
    recorded = _db_rows(campaign, "SELECT sha256 FROM archives")[0][0]
    assert recorded == _sha(archived.read_bytes())
    assert result.output == (
        f"BTS_2A.zip : empreinte SHA-256 de l'archive : {recorded}\n"
        "Vérifié : 11 fichier(s), empreintes et tailles ; signature de la campagne : valide ; "
        "empreinte de l'archive : identique à celle enregistrée à sa création.\n"
        "BTS_2A.zip : archive intègre, chaque fichier correspond au manifeste.\n"
        "Vérification enregistrée pour BTS 2A : « grille purge » est possible.\n"
    )
    assert _db_rows(campaign, "SELECT verified_at IS NOT NULL FROM archives") == [(1,)]
    folder = run(campaign, "archive", "verify", str(archived.with_suffix("")))
    assert folder.exit_code == 0, folder.output
    assert folder.output == (
        "Vérifié : 11 fichier(s), empreintes et tailles ; signature de la campagne : valide ; "
        "empreinte du manifeste : identique à celle enregistrée à sa création.\n"
        "BTS_2A : archive intègre, chaque fichier correspond au manifeste.\n"
    )
    alias = run(campaign, "archive", "--verify", str(archived))
    assert alias.exit_code == 0 and "archive intègre" in alias.output


def test_archive_verify__one_byte_of_a_report_altered__exit_1_names_that_file(
    archived: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(archived) as package:
        name = next(n for n in package.namelist() if n.startswith("rapports/bilan_ABADIE_"))
        data = bytearray(package.read(name))
    data[len(data) // 2] ^= 0x01
    tampered = tmp_path / "BTS_2A.zip"
    _rewrite_zip(archived, tampered, {name: bytes(data)})
    result = _verify(str(tampered))
    assert result.exit_code == 1
    assert result.output == (
        f"BTS_2A.zip : empreinte SHA-256 de l'archive : {_sha(tampered.read_bytes())}\n"
        f"  Erreur — {name} : contenu modifié depuis l'archivage (empreinte différente).\n"
        f"{OUTSIDE}\n"
        "Erreur : BTS_2A.zip : 1 problème(s) ; l'archive n'est pas intègre.\n"
    )


def test_archive_verify__removed_and_added_files__each_reported(
    archived: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "BTS_2A.zip"
    _rewrite_zip(archived, tampered, {"suivi.xlsx": None, "rapports/bilan_AJOUT.docx": b"faux"})
    result = _verify(str(tampered))
    assert result.exit_code == 1
    assert result.output == (
        f"BTS_2A.zip : empreinte SHA-256 de l'archive : {_sha(tampered.read_bytes())}\n"
        "  Erreur — suivi.xlsx : absent de l'archive (supprimé après l'archivage).\n"
        "  Erreur — rapports/bilan_AJOUT.docx : ajouté après l'archivage (absent du manifeste).\n"
        f"{OUTSIDE}\n"
        "Erreur : BTS_2A.zip : 2 problème(s) ; l'archive n'est pas intègre.\n"
    )
    no_manifest = tmp_path / "sans_manifeste.zip"
    _rewrite_zip(archived, no_manifest, {"manifeste.json": None})
    result = _verify(str(no_manifest))
    assert result.exit_code == 1
    assert "manifeste.json : manifeste absent de sans_manifeste.zip" in result.output
    broken = tmp_path / "manifeste_casse.zip"
    _rewrite_zip(archived, broken, {"manifeste.json": b"{pas du json"})
    result = _verify(str(broken))
    assert result.exit_code == 1
    assert "manifeste.json : manifeste illisible ou mal formé" in result.output
    truncated = tmp_path / "tronquee.zip"
    truncated.write_bytes(archived.read_bytes()[:1000])
    result = _verify(str(truncated))
    assert result.exit_code == 1
    assert result.output == (
        "  Erreur — tronquee.zip : archive illisible (zip endommagé ou incomplet).\n"
        "Erreur : tronquee.zip : 1 problème(s) ; l'archive n'est pas intègre.\n"
    )


def test_archive_verify__unpacked_folder__altered_file_named(archived: Path) -> None:
    folder = archived.with_suffix("")
    (folder / "LISEZMOI.txt").write_text("modifié", encoding="utf-8")
    result = _verify(str(folder))
    assert result.exit_code == 1
    expected = (
        "  Erreur — LISEZMOI.txt : contenu modifié depuis l'archivage (empreinte différente, "
    )
    assert expected in result.output


def test_archive_verify__without_any_campaign__from_an_empty_folder(
    archived: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "jury"
    elsewhere.mkdir()
    shutil.copy(archived, elsewhere / "BTS_2A.zip")
    monkeypatch.chdir(elsewhere)
    result = _verify("BTS_2A.zip")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"BTS_2A.zip : empreinte SHA-256 de l'archive : {_sha(archived.read_bytes())}\n"
        f"{OUTSIDE}\n"
        "BTS_2A.zip : archive intègre, chaque fichier correspond au manifeste.\n"
    )
    assert [p.name for p in elsewhere.iterdir()] == ["BTS_2A.zip"]


def test_archive_verify__archive_of_the_previous_version_with_a_csv_manifest(
    tmp_path: Path,
) -> None:
    files = {"suivi.xlsx": b"suivi", "rapports/BTS/bilan.docx": b"bilan"}
    rows = ["fichier;sha256;octets", *(f"{n};{_sha(d)};{len(d)}" for n, d in files.items())]
    legacy = tmp_path / "archive_BTS_2027-03-01.zip"
    with zipfile.ZipFile(legacy, "w") as package:
        package.writestr("LISEZMOI.txt", "Archive")
        package.writestr("MANIFESTE.csv", "\n".join(rows) + "\n")
        for name, data in files.items():
            package.writestr(name, data)
    assert _verify(str(legacy)).exit_code == 0
    tampered = tmp_path / "modifiee.zip"
    _rewrite_zip(legacy, tampered, {"suivi.xlsx": b"suivi\0"})
    bad = _verify(str(tampered))
    assert bad.exit_code == 1
    expected = "  Erreur — suivi.xlsx : contenu modifié depuis l'archivage (empreinte différente, "
    assert expected in bad.output


def _consistent_edit(source: Path, target: Path, signature: bytes | None = b"keep") -> str:
    """Copy an archive zip, changing one byte of Abadie's report and recomputing its hash
    and size in the manifest, as a forger would; `signature`: keep, replace or drop
    manifeste.sig. The name of the changed file."""
    with zipfile.ZipFile(source) as package:
        name = next(n for n in package.namelist() if n.startswith("rapports/bilan_ABADIE_"))
        data = bytearray(package.read(name))
        manifest = json.loads(package.read("manifeste.json"))
    data[len(data) // 2] ^= 0x01
    for item in manifest["files"]:
        if item["path"] == name:
            item["sha256"], item["size"] = _sha(bytes(data)), len(data)
    change: dict[str, bytes | None] = {
        name: bytes(data),
        "manifeste.json": json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8"),
    }
    if signature != b"keep":
        change["manifeste.sig"] = signature
    _rewrite_zip(source, target, change)
    return name


def _forged_signature(campaign: Path, manifest: bytes) -> bytes:
    """A manifeste.sig that names the campaign, signed with a key that is not its key."""
    forged = hmac.new(b"pas la cle de la campagne", manifest, hashlib.sha256).hexdigest()
    signature = {"format": "grille-signature/1", "campaign_id": _campaign_id(campaign),
                 "algorithm": "HMAC-SHA256", "signed_file": "manifeste.json",
                 "signature": forged}  # fmt: skip
    return json.dumps(signature).encode("utf-8")


def test_archive_verify__manifest_edited_consistently__the_signature_fails_in_the_campaign(
    campaign: Path, archived: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "autre" / "BTS_2A.zip"
    tampered.parent.mkdir()
    _consistent_edit(archived, tampered)
    outside = _verify(str(tampered))  # without the campaign, only the files can be checked
    assert outside.exit_code == 0, outside.output
    assert f"{OUTSIDE}\n" in outside.output

    inside = run(campaign, "archive", "verify", str(tampered))

    assert inside.exit_code == 1
    assert inside.output == (
        f"BTS_2A.zip : empreinte SHA-256 de l'archive : {_sha(tampered.read_bytes())}\n"
        "  Erreur — manifeste.sig : signature invalide : le manifeste a été modifié après "
        "l'archivage (ou signé sans la clé de cette campagne).\n"
        "Vérifié : 11 fichier(s), empreintes et tailles ; signature de la campagne : INVALIDE ; "
        "empreinte de l'archive : non comparée (archive inconnue de cette campagne).\n"
        "Erreur : BTS_2A.zip : 1 problème(s) ; l'archive n'est pas intègre.\n"
    )
    with zipfile.ZipFile(tampered) as package:
        manifest = package.read("manifeste.json")
    resigned = tmp_path / "resignee.zip"
    _rewrite_zip(tampered, resigned, {"manifeste.sig": _forged_signature(campaign, manifest)})
    again = run(campaign, "archive", "verify", str(resigned))
    assert again.exit_code == 1
    assert "manifeste.sig : signature invalide" in again.output
    unsigned = tmp_path / "sans_signature.zip"
    _rewrite_zip(tampered, unsigned, {"manifeste.sig": None})
    dropped = run(campaign, "archive", "verify", str(unsigned))
    assert dropped.exit_code == 1
    assert (
        "  Erreur — manifeste.sig : absente, alors que cette archive a été signée à sa "
        "création : le manifeste a pu être remplacé.\n"
    ) in dropped.output
    assert _db_rows(campaign, "SELECT verified_at FROM archives") == [(None,)]


def test_archive_verify__edited_in_place__the_recorded_sha256_fails_even_without_the_key(
    campaign: Path, archived: Path, tmp_path: Path
) -> None:
    recorded = _db_rows(campaign, "SELECT sha256 FROM archives")[0][0]
    (campaign / ".grille" / "cle_secrete").unlink()  # only the recorded SHA-256 can tell
    _consistent_edit(archived, tmp_path / "modifiee.zip")
    shutil.copyfile(tmp_path / "modifiee.zip", archived)

    result = run(campaign, "archive", "verify", str(archived))

    assert result.exit_code == 1
    assert result.output == (
        f"BTS_2A.zip : empreinte SHA-256 de l'archive : {_sha(archived.read_bytes())}\n"
        "  Erreur — BTS_2A.zip : empreinte différente de celle enregistrée à la création de "
        f"l'archive ({recorded}) : modifié ou remplacé depuis.\n"
        "Vérifié : 11 fichier(s), empreintes et tailles ; signature de la campagne : non "
        "vérifiée (clé de la campagne absente) ; empreinte de l'archive : DIFFÉRENTE de celle "
        "enregistrée à sa création.\n"
        "Erreur : BTS_2A.zip : 1 problème(s) ; l'archive n'est pas intègre.\n"
    )
    assert _db_rows(campaign, "SELECT verified_at FROM archives") == [(None,)]
    folder = archived.with_suffix("")  # the unpacked folder, edited the same way
    with zipfile.ZipFile(archived) as package:
        for name in package.namelist():
            if name.startswith("rapports/bilan_ABADIE_") or name == "manifeste.json":
                (folder / name).write_bytes(package.read(name))
    unpacked = run(campaign, "archive", "verify", str(folder))
    assert unpacked.exit_code == 1
    assert (
        "  Erreur — manifeste.json : empreinte différente de celle enregistrée à la création "
        "de l'archive (" in unpacked.output
    )


def test_archive_verify__empty_manifest__refused(archived: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(archived) as package:
        manifest = json.loads(package.read("manifeste.json"))
    manifest["files"] = []
    empty = tmp_path / "vide.zip"
    with zipfile.ZipFile(empty, "w") as package:
        package.writestr("manifeste.json", json.dumps(manifest))

    result = _verify(str(empty))

    assert result.exit_code == 1
    assert result.output == (
        f"vide.zip : empreinte SHA-256 de l'archive : {_sha(empty.read_bytes())}\n"
        "  Erreur — manifeste.json : manifeste vide, il ne liste aucun fichier ; l'archive ne "
        "peut pas être vérifiée.\n"
        "Erreur : vide.zip : 1 problème(s) ; l'archive n'est pas intègre.\n"
    )


def test_archive_verify__forged_manifest__fails_in_the_campaign(
    campaign: Path, archived: Path, tmp_path: Path
) -> None:
    bilan = b"un faux bilan"
    manifest = json.dumps(
        {"format": "grille-archive/1", "campaign_id": _campaign_id(campaign), "class": "BTS 2A",
         "files": [{"path": "rapports/bilan.docx", "sha256": _sha(bilan), "size": len(bilan)}]}
    ).encode("utf-8")  # fmt: skip
    forged = tmp_path / "BTS_2A.zip"
    with zipfile.ZipFile(forged, "w") as package:
        package.writestr("manifeste.json", manifest)
        package.writestr("manifeste.sig", _forged_signature(campaign, manifest))
        package.writestr("rapports/bilan.docx", bilan)

    result = run(campaign, "archive", "verify", str(forged))

    assert result.exit_code == 1
    assert "  Erreur — manifeste.sig : signature invalide" in result.output
    assert (
        "Vérifié : 1 fichier(s), empreintes et tailles ; signature de la campagne : INVALIDE"
        in (result.output)
    )
    unsigned = tmp_path / "sans_signature.zip"
    _rewrite_zip(forged, unsigned, {"manifeste.sig": None})
    assert run(campaign, "archive", "verify", str(unsigned)).exit_code == 1


def test_archive_verify__symlink_in_the_unpacked_folder__reported_and_not_followed(
    archived: Path, tmp_path: Path
) -> None:
    folder = archived.with_suffix("")
    outside = tmp_path / "ailleurs"
    outside.mkdir()
    (outside / "secret.txt").write_text("hors de l'archive", encoding="utf-8")
    moved = outside / "suivi.xlsx"
    (folder / "suivi.xlsx").rename(moved)
    (folder / "suivi.xlsx").symlink_to(moved)  # the same bytes, through a link
    (folder / "rapports" / "lien").symlink_to(outside, target_is_directory=True)

    result = _verify(str(folder))

    assert result.exit_code == 1
    assert result.output.startswith(
        "  Erreur — rapports/lien : lien symbolique, non suivi ; une archive n'en contient pas : "
        "remplacez-le par le fichier d'origine.\n"
        "  Erreur — suivi.xlsx : lien symbolique, non suivi ; une archive n'en contient pas : "
        "remplacez-le par le fichier d'origine.\n"
        "  Erreur — suivi.xlsx : absent de l'archive (supprimé après l'archivage).\n"
    )
    assert "secret" not in result.output
    assert "Erreur : BTS_2A : 3 problème(s) ; l'archive n'est pas intègre.\n" in result.output


# ------------------------------------------------------------------ purge


def _class_files(campaign: Path, folder_name: str) -> dict[str, bytes]:
    found = {}
    for kind in ("classeurs", "rapports"):
        for path in (campaign / "output" / kind / folder_name).rglob("*"):
            if path.is_file():
                found[path.relative_to(campaign).as_posix()] = path.read_bytes()
    return found


def _stored_returns(campaign: Path, class_name: str) -> list[Path]:
    rows = _db_rows(
        campaign,
        "SELECT stored_file FROM returns WHERE student_id IN "
        "(SELECT student_id FROM students WHERE class_name = ?)",
        class_name,
    )
    return [campaign / row[0] for row in rows]


PERSONAL_TABLES = ("students", "workbooks", "returns", "sendings")


def _rows_of_class(campaign: Path, class_name: str) -> dict[str, int]:
    counts = {}
    for table in PERSONAL_TABLES:
        counts[table] = _db_rows(
            campaign,
            f"SELECT COUNT(*) FROM {table} WHERE student_id IN "
            "(SELECT student_id FROM students WHERE class_name = ?)",
            class_name,
        )[0][0]
    return counts


def test_purge__refused_before_verification__then_deletes_exactly_that_class(
    campaign: Path, archived: Path
) -> None:
    refused = run(campaign, "purge", "--class", "BTS 2A", "--oui")
    assert refused.exit_code == 1
    assert refused.output == (
        "  Refusé — BTS 2A : sa dernière archive n'a pas été vérifiée. Lancez d'abord "
        f"« grille archive verify output/archive/{YEAR}/BTS_2A.zip ».\n"
        "Erreur : aucune classe ne peut être purgée ; rien n'a été supprimé.\n"
    )
    assert run(campaign, "archive", "verify", str(archived)).exit_code == 0
    returns_a = _stored_returns(campaign, "BTS 2A")
    assert len(returns_a) == 4 and all(p.is_file() for p in returns_a)
    kept_b = _class_files(campaign, "BTS_2B")
    returns_b = {p: p.read_bytes() for p in _stored_returns(campaign, "BTS 2B")}
    rows_b = _rows_of_class(campaign, "BTS 2B")
    answers = _db_rows(campaign, "SELECT COUNT(*) FROM answers")[0][0]
    answers_a = _db_rows(
        campaign,
        "SELECT COUNT(*) FROM answers WHERE return_id IN (SELECT id FROM returns WHERE "
        "student_id IN (SELECT student_id FROM students WHERE class_name = 'BTS 2A'))",
    )[0][0]
    result = run(campaign, "purge", "--class", "BTS 2A", "--oui")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Données personnelles à supprimer définitivement (BTS 2A) :\n"
        "  3 stagiaire(s) de la base, avec leurs envois, retours et réponses\n"
        "  3 classeur(s) dans output/classeurs\n"
        "  4 fichier(s) retourné(s) dans output/retours\n"
        "  4 bilan(s) dans output/rapports\n"
        "  0 message(s) .eml (envoyés ou relevés) à leur sujet\n"
        f"Conservées : output/archive/{YEAR}/BTS_2A.zip et la configuration.\n"
        "Données personnelles supprimées : BTS 2A.\n"
    )
    assert not (campaign / "output" / "classeurs" / "BTS_2A").exists()
    assert not (campaign / "output" / "rapports" / "BTS_2A").exists()
    assert not any(p.exists() for p in returns_a)
    assert _rows_of_class(campaign, "BTS 2A") == dict.fromkeys(PERSONAL_TABLES, 0)
    assert _db_rows(campaign, "SELECT COUNT(*) FROM students WHERE class_name = 'BTS 2A'") == [(0,)]
    assert _db_rows(campaign, "SELECT COUNT(*) FROM answers")[0][0] == answers - answers_a > 0
    assert _db_rows(campaign, "SELECT file FROM reports WHERE file LIKE '%BTS_2A%'") == []
    assert _db_rows(campaign, "SELECT COUNT(*) FROM archives") == [(1,)]
    assert _db_rows(campaign, "SELECT COUNT(*) FROM grids") == [(1,)]
    assert _class_files(campaign, "BTS_2B") == kept_b
    assert {p: p.read_bytes() for p in _stored_returns(campaign, "BTS 2B")} == returns_b
    assert _rows_of_class(campaign, "BTS 2B") == rows_b
    assert sorted(status_json(campaign)) == ["Da Silva", "Faure", "Garcia", "Étienne"]
    tracking = openpyxl.load_workbook(campaign / "output" / "suivi.xlsx")["Suivi"]
    assert {row[3].value for row in tracking.iter_rows(min_row=2)} == {"BTS 2B"}
    assert archived.is_file() and _verify(str(archived)).exit_code == 0
    assert (campaign / "grille.toml").is_file()
    purged = run(campaign, "purge", "--class", "bts 2a", "--oui")
    assert purged.exit_code == 2
    assert purged.output == (
        "Erreur : classe « bts 2a » déjà purgée. Classes de la campagne : « BTS 2B ».\n"
    )
    again = run(campaign, "purge", "--oui")  # BTS 2B has no archive: refused, with the way out
    assert again.exit_code == 1
    assert again.output == (
        '  Refusé — BTS 2B : aucune archive. Lancez « grille archive --class "BTS 2B" » '
        "puis « grille archive verify <archive.zip> ».\n"
        "Erreur : aucune classe ne peut être purgée ; rien n'a été supprimé.\n"
    )


def test_purge__refused_files_naming_the_class_or_whose_file_is_gone__forgotten(
    campaign: Path, archived: Path, tmp_path: Path
) -> None:
    assert run(campaign, "archive", "verify", str(archived)).exit_code == 0
    inbox = tmp_path / "boite"
    inbox.mkdir()
    for name in ("grille Abadie Chloé.xlsx", "budget.xlsx", "GARCIA.xlsx", "perdu.xlsx"):
        (inbox / name).write_bytes(bytes(range(256)) * 8)  # not a workbook: refused
    assert run(campaign, "collect", str(inbox)).exit_code == 1
    (inbox / "perdu.xlsx").unlink()  # the teacher deleted it since

    result = run(campaign, "purge", "--class", "BTS 2A", "--oui")

    assert result.exit_code == 0, result.output
    assert (
        "  2 fichier(s) refusé(s) noté(s) à la collecte (nom au sujet de la classe, ou "
        "fichier disparu)\n"
    ) in result.output
    left = [row[0] for row in _db_rows(campaign, "SELECT file_name FROM refused_files")]
    assert sorted(left) == ["GARCIA.xlsx", "budget.xlsx"]  # BTS 2B, and nobody's


def test_purge__outbox_messages_about_that_class_only__deleted__others_kept(
    campaign: Path, archived: Path
) -> None:
    config = campaign / "grille.toml"
    config.write_text(
        config.read_text("utf-8").replace('email = ""', 'email = "prof@lycee.example"'), "utf-8"
    )
    assert run(campaign, "send").exit_code == 0
    outbox = campaign / "output" / "envoi"
    written = {p.name: p.read_bytes() for p in outbox.iterdir()}
    about_a = {n for n, data in written.items() if b"sg@horizon" in data or b"md@solvea" in data}
    assert len(about_a) == 2 and len(written) == 4
    assert run(campaign, "archive", "verify", str(archived)).exit_code == 0

    result = run(campaign, "purge", "--class", "BTS 2A", "--oui")

    assert result.exit_code == 0, result.output
    assert "  2 message(s) .eml (envoyés ou relevés) à leur sujet\n" in result.output
    assert {p.name: p.read_bytes() for p in outbox.iterdir()} == {
        n: data for n, data in written.items() if n not in about_a
    }


def test_purge__return_collected_after_the_archive__refused(
    campaign: Path, archived: Path, tmp_path: Path
) -> None:
    assert run(campaign, "archive", "verify", str(archived)).exit_code == 0
    late = fill(
        workbook_of(campaign, "Bernard"),
        tmp_path / "tard" / "b.xlsx",
        _answers_for("Marc Dubreuil", appreciation="Revu."),
    )
    assert run(campaign, "collect", str(late)).exit_code == 0
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:  # collected later on
        db.execute(
            "UPDATE returns SET collected_at = '2999-01-01 00:00:00' "
            "WHERE id = (SELECT MAX(id) FROM returns)"
        )
    result = run(campaign, "purge", "--class", "BTS 2A", "--oui")
    assert result.exit_code == 1
    assert (
        "  Refusé — BTS 2A : 1 retour(s) collecté(s) après sa dernière archive "
        f"(output/archive/{YEAR}/BTS_2A.zip)." in result.output
    )
    assert _rows_of_class(campaign, "BTS 2A")["students"] == 3


def test_purge__without_oui__asks_and_no_keeps_everything(campaign: Path, archived: Path) -> None:
    assert run(campaign, "archive", "verify", str(archived)).exit_code == 0
    before = _class_files(campaign, "BTS_2A")
    answer = CliRunner().invoke(
        cli, ["--dir", str(campaign), "purge", "--class", "BTS 2A"], input="n\n"
    )
    assert answer.exit_code == 1
    assert answer.output.endswith(
        "Supprimer définitivement ces données ? (oui/non): n\n"
        "Purge annulée : rien n'a été supprimé.\n"
    )
    assert _class_files(campaign, "BTS_2A") == before
    assert _rows_of_class(campaign, "BTS 2A")["students"] == 3
    yes = CliRunner().invoke(
        cli, ["--dir", str(campaign), "purge", "--class", "BTS 2A"], input="oui\n"
    )
    assert yes.exit_code == 0, yes.output
    assert _class_files(campaign, "BTS_2A") == {}


def test_archive__suivi_links_each_returned_file_to_its_copy_inside_the_archive(
    campaign: Path, tmp_path: Path
) -> None:
    _archive(campaign, "--class", "BTS 2A")
    zip_path = _year_dir(campaign) / "BTS_2A.zip"
    with zipfile.ZipFile(zip_path) as package:
        members = set(package.namelist())
        (tmp_path / "suivi.xlsx").write_bytes(package.read("suivi.xlsx"))
        archived_returns = {
            name: package.read(name) for name in members if name.startswith("retours/")
        }
    ws = openpyxl.load_workbook(tmp_path / "suivi.xlsx")["Suivi"]
    header = [c.value for c in ws[1]]
    name_col, file_col = header.index("Nom"), header.index("Fichier retourné")
    cells = {row[name_col].value: row[file_col] for row in ws.iter_rows(min_row=2)}

    assert cells["ABADIE"].value == "abadie.xlsx"  # the version that counts, as received
    for last_name, original in (("ABADIE", "abadie.xlsx"), ("BERNARD", "bernard.xlsx")):
        cell = cells[last_name]
        assert cell.hyperlink is not None, last_name
        target = unquote(cell.hyperlink.target)
        assert target in members and target.startswith("retours/"), target  # inside the zip
        sent = (campaign.parent / "retours2" / original, campaign.parent / "retours1" / original)
        assert archived_returns[target] == next(p for p in sent if p.is_file()).read_bytes()
    unpacked = _year_dir(campaign) / "BTS_2A"  # beside the zip: the same links work there
    assert (unpacked / unquote(cells["BERNARD"].hyperlink.target)).is_file()

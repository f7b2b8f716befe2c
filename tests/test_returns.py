"""Gathering returned files: type from bytes, mails, mailboxes, archives, hostile files."""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import mailbox
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import types
import zipfile
from collections.abc import Iterable
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import msoffcrypto.format.ooxml
import openpyxl
import pytest

from pipeline import office, returns
from pipeline.errors import Problem, RosterError
from pipeline.files import OLE2_MAGIC
from pipeline.returns import Candidate, FileProblem, clean_name, gather, sniff, store_original
from tests import clients
from tests.hostile import (
    MiB,
    bomb,
    encrypted_ods,
    excel4_sheet,
    excel95_book,
    excel97_workbook,
    excel2003_xml,
    flat_ods,
    lie_about_size,
    mail,
    numbers_document,
    ods_content,
    ole_file,
    xlsb_bytes,
    xlsx_bytes,
    zip_bytes,
)

ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
FAKE_ODS = zip_bytes({"mimetype": ODS_MIME, "content.xml": b"<x/>"}, zipfile.ZIP_STORED)
FAKE_XLS = OLE2_MAGIC + bytes(600) + "Workbook".encode("utf-16-le")
FAKE_MSG = OLE2_MAGIC + bytes(600) + "__substg1.0_0037001F".encode("utf-16-le")
RANDOM = random.Random(7).randbytes(3000)
CSV = "Nom;Prénom\r\nDupont;Jean\r\n".encode()
ROW = '<table:table-row><table:table-cell office:value-type="string"><text:p>Dupont</text:p></table:table-cell></table:table-row>'
needs_soffice = pytest.mark.skipif(shutil.which("soffice") is None, reason="soffice absent")


def encrypted_xlsx() -> bytes:
    out = io.BytesIO()
    msoffcrypto.format.ooxml.OOXMLFile(io.BytesIO(xlsx_bytes())).encrypt("secret", out)
    return out.getvalue()


def listing(items: Iterable[Candidate | Problem], root: Path) -> list[tuple[str, str]]:
    """(code, origin relative to `root`) per item; "classeur" for a Candidate."""
    prefix = f"{root}{os.sep}"
    return [
        ("classeur", item.origin.replace(prefix, ""))
        if isinstance(item, Candidate)
        else (item.code, item.file.replace(prefix, ""))
        for item in items
    ]


def write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def no_soffice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(office.shutil, "which", lambda name: None)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (xlsx_bytes(), "xlsx"),
        (FAKE_ODS, "ods"),
        (zip_bytes({"mimetype": b"application/vnd.oasis.opendocument.text"}), "odf"),
        (zip_bytes({"dossier/dupont.xlsx": xlsx_bytes()}), "zip"),
        (xlsx_bytes()[:3000], "zip"),
        (FAKE_XLS, "xls"),
        (OLE2_MAGIC + bytes(600), "unknown"),
        (encrypted_xlsx(), "encrypted"),
        (FAKE_MSG, "msg"),
        (mail().as_bytes(), "eml"),
        (b"Received: from x\r\n\tby y\r\nFrom: a@b.fr\r\n\r\nbody", "eml"),
        (b"From tuteur@entreprise.fr Mon Jun  2 10:00:00 2025\n" + mail().as_bytes(), "mbox"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "pdf"),
        (b"", "empty"),
        (CSV, "text"),
        ("Nom;Prénom\r\nLefèvre;Zoé\r\n".encode("cp1252"), "text"),
        ("Nom\tPrénom\r\n".encode("utf-16"), "text"),
        (b"<!DOCTYPE html><html><body>Grille</body></html>", "text"),
        (b"Nom: Dupont\nNote: 3\n", "text"),
        (RANDOM, "unknown"),
        (encrypted_ods(ods_content(ROW)), "encrypted"),
        (ole_file({"Book": excel95_book(password=False)}), "xls"),
        (ole_file({"Book": excel95_book(password=True)}), "encrypted"),
        (ole_file({"Workbook": excel97_workbook(password=False)}), "xls"),
        (ole_file({"Workbook": excel97_workbook(password=True)}), "encrypted"),
        (excel4_sheet({(0, 0): "Dupont", (0, 1): 3.0}), "biff"),
        (excel4_sheet({(0, 0): "Dupont"}, version=3), "biff"),
        (excel4_sheet({(0, 0): "Dupont"}, version=4), "biff"),
        (clients.renamed_parts(xlsx_bytes()), "xlsx"),
        (clients.excel_strict(xlsx_bytes(), []), "xlsx"),
        (xlsb_bytes(), "xlsb"),
        (numbers_document(), "apple"),
        (excel2003_xml("Dupont"), "xml2003"),
        (flat_ods(ROW), "fods"),
        (b"<?xml version='1.0'?><note>3</note>", "text"),
        (zip_bytes({}), "zip"),
    ],
    ids=[
        "xlsx", "ods", "odt", "zip", "truncated-xlsx", "xls", "ole-other", "encrypted", "msg", "eml",
        "eml-received-first", "mbox", "pdf", "empty", "csv", "csv-cp1252", "utf16-text",
        "html", "header-like-text", "random", "ods-password", "excel95", "excel95-password",
        "excel97", "excel97-password", "excel2", "excel3", "excel4", "renamed-parts",
        "strict", "xlsb", "numbers", "excel2003-xml", "fods", "other-xml", "empty-zip",
    ],
)  # fmt: skip
def test_sniff__tells_the_type_from_the_bytes(data: bytes, kind: str) -> None:
    assert sniff(data) == kind


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("../../etc/evil.xlsx", "evil.xlsx"),
        ("/tmp/x.xlsx", "x.xlsx"),
        ("C:\\Users\\tuteur\\dupont.xlsx", "dupont.xlsx"),
        ("dupont\r\nBcc: x.xlsx", "dupontBcc: x.xlsx"),
        ("a\u202excsl.exe", "axcsl.exe"),
        ("..", "sans_nom"),
        (None, "sans_nom"),
        ("x" * 200 + ".xlsx", "x" * 115 + ".xlsx"),
        ("dupont\udcff.xlsx", "dupont\ufffd.xlsx"),
    ],
)
def test_clean_name__keeps_a_printable_last_component(raw: str | None, name: str) -> None:
    assert clean_name(raw) == name


def test_a_folder_of_hostile_files__one_problem_each__workbooks_kept(
    tmp_path: Path, no_soffice: None
) -> None:
    folder = write(
        tmp_path / "retours",
        {
            "ancien.xlsx": FAKE_XLS,
            "dupont.xlsx": xlsx_bytes(),
            "hasard.xlsx": RANDOM,
            "liste.xlsx": CSV,
            "page.xlsx": b"<html><body>grille</body></html>",
            "protege.xlsx": encrypted_xlsx(),
            "scan.pdf": b"%PDF-1.4\n",
            "tableur.xlsx": FAKE_ODS,
            "tronque.xlsx": xlsx_bytes()[:3000],
            "vide.xlsx": b"",
            "~$dupont.xlsx": b"lock",
            ".DS_Store": b"\0\0",
        },
    )
    write(folder / "sous-dossier", {"martin.XLSX": xlsx_bytes("Martin")})
    items = list(gather([folder]))
    assert listing(items, tmp_path) == [
        ("needs_conversion", "retours/ancien.xlsx"),
        ("classeur", "retours/dupont.xlsx"),
        ("not_a_workbook", "retours/hasard.xlsx"),
        ("not_a_workbook", "retours/liste.xlsx"),
        ("not_a_workbook", "retours/page.xlsx"),
        ("encrypted", "retours/protege.xlsx"),
        ("not_a_workbook", "retours/scan.pdf"),
        ("classeur", "retours/sous-dossier/martin.XLSX"),
        ("needs_conversion", "retours/tableur.xlsx"),
        ("damaged_file", "retours/tronque.xlsx"),
        ("empty_file", "retours/vide.xlsx"),
    ]
    messages = {Path(p.file).name: p.message for p in items if isinstance(p, Problem)}
    assert messages["liste.xlsx"] == (
        "ce n'est pas un classeur Excel : il contient du texte (CSV ?). Si c'est un retour de "
        "tuteur, demandez au tuteur de renvoyer le classeur au format .xlsx."
    )
    assert "une page web (HTML)" in messages["page.xlsx"]
    assert "un document PDF" in messages["scan.pdf"]
    assert "des données d'un type inconnu" in messages["hasard.xlsx"]
    assert messages["protege.xlsx"] == (
        "classeur protégé par un mot de passe : demandez au tuteur de renvoyer le classeur sans "
        "mot de passe."
    )
    assert messages["tableur.xlsx"] == (
        "ce classeur est au format .ods : ouvrez-le dans LibreOffice ou Excel et enregistrez-le "
        "en .xlsx, ou installez LibreOffice pour que grille le convertisse."
    )
    assert "au format .xls (ancien format Excel)" in messages["ancien.xlsx"]
    assert messages["vide.xlsx"] == (
        "fichier vide (0 octet) : demandez au tuteur de renvoyer le classeur."
    )


def test_foreign_files__one_problem_each_naming_the_format_and_the_fix(
    tmp_path: Path, no_soffice: None
) -> None:
    import docx

    document = io.BytesIO()
    docx.Document().save(document)
    folder = write(
        tmp_path / "retours",
        {
            "a_protege.ods": encrypted_ods(ods_content(ROW)),
            "b_excel95_protege.xls": ole_file({"Book": excel95_book(password=True)}),
            "c_excel4.xls": excel4_sheet({(0, 0): "Dupont"}),
            "d_renomme.xlsx": clients.renamed_parts(xlsx_bytes()),
            "e_Budget.numbers": numbers_document(),
            "f_vide.xlsx": zip_bytes({}),
            "g_grille.xml": excel2003_xml("Dupont"),
            "h_grille.fods": flat_ods(ROW),
            "i_grille.xlsb": xlsb_bytes(),
            "j_convention.xlsx": document.getvalue(),
        },
    )
    package = folder / "k_Grille.numbers"  # a Numbers document saved as a package folder
    write(package, {"Index.zip": zip_bytes({"Index/Document.iwa": bytes(8)}), "preview.jpg": b""})
    write(package / "Metadata", {"Properties.plist": b"bplist00"})
    items = list(gather([folder]))
    assert listing(items, tmp_path) == [
        ("encrypted", "retours/a_protege.ods"),
        ("encrypted", "retours/b_excel95_protege.xls"),
        ("needs_conversion", "retours/c_excel4.xls"),
        ("classeur", "retours/d_renomme.xlsx"),
        ("apple_document", "retours/e_Budget.numbers"),
        ("empty_workbook", "retours/f_vide.xlsx"),
        ("needs_conversion", "retours/g_grille.xml"),
        ("needs_conversion", "retours/h_grille.fods"),
        ("xlsb", "retours/i_grille.xlsb"),
        ("not_a_workbook", "retours/j_convention.xlsx"),
        ("apple_document", "retours/k_Grille.numbers"),
    ]
    messages = {Path(p.file).name: p.message for p in items if isinstance(p, Problem)}
    protected = (
        "classeur protégé par un mot de passe : demandez au tuteur de renvoyer le classeur sans "
        "mot de passe."
    )
    assert messages["a_protege.ods"] == messages["b_excel95_protege.xls"] == protected
    assert messages["c_excel4.xls"] == (
        "ce classeur est au format .xls d'Excel 4.0 ou plus ancien (ancien format Excel) : "
        "ouvrez-le dans LibreOffice ou Excel et enregistrez-le en .xlsx, ou installez "
        "LibreOffice pour que grille le convertisse."
    )
    assert (
        messages["e_Budget.numbers"]
        == messages["k_Grille.numbers"]
        == (
            "document Apple Numbers : ce n'est pas un classeur Excel. Exportez-le en .xlsx "
            "(Numbers › Fichier › Exporter vers › Excel), ou demandez au tuteur de le faire."
        )
    )
    assert messages["f_vide.xlsx"] == (
        "fichier « classeur » qui n'est qu'une archive zip vide : demandez au tuteur de "
        "renvoyer le classeur."
    )
    assert "au format XML Excel 2003 (« Feuille de calcul XML 2003 »)" in messages["g_grille.xml"]
    assert "au format .fods (OpenDocument en un seul fichier XML)" in messages["h_grille.fods"]
    assert messages["i_grille.xlsb"] == (
        "classeur Excel binaire (.xlsb), que grille ne lit pas : ouvrez-le dans Excel et "
        "enregistrez-le en « Classeur Excel (*.xlsx) », ou demandez au tuteur de renvoyer le "
        "classeur au format .xlsx."
    )
    assert "il contient un document Word, pas un classeur" in messages["j_convention.xlsx"]
    assert all(p.severity == "error" for p in items if isinstance(p, Problem))


def test_a_numbers_document_zipped_with_others__is_one_problem_not_one_per_part(
    tmp_path: Path,
) -> None:
    archive = zip_bytes(
        {
            "retours/Budget.numbers/Index.zip": zip_bytes({"Index/Document.iwa": bytes(8)}),
            "retours/Budget.numbers/Metadata/Properties.plist": b"bplist00",
            "retours/Budget.numbers/preview.jpg": b"\xff\xd8",
            "retours/dupont.xlsx": xlsx_bytes(),
        }
    )
    path = write(tmp_path, {"envoi.zip": archive}) / "envoi.zip"
    assert listing(gather([path]), tmp_path) == [
        ("apple_document", "envoi.zip › retours/Budget.numbers"),
        ("classeur", "envoi.zip › retours/dupont.xlsx"),
    ]


def test_apple_documents__numbers_is_a_return_to_export_pages_is_not_a_workbook(
    tmp_path: Path,
) -> None:
    message = mail()
    message.add_attachment(numbers_document(), "application", "zip", filename="Grille.numbers")
    message.add_attachment(numbers_document(), "application", "zip", filename="Convention.pages")
    folder = write(
        tmp_path / "r", {"m.eml": message.as_bytes(), "Lettre.pages": numbers_document()}
    )
    items = list(gather([folder]))
    assert listing(items, tmp_path) == [
        ("not_a_workbook", "r/Lettre.pages"),
        ("apple_document", "r/m.eml › pièce jointe « Grille.numbers »"),
    ]
    assert "il contient un document Apple Pages, pas un classeur" in items[0].message  # type: ignore[union-attr]


def test_an_empty_zip__is_a_warning_only_when_named_as_an_archive(tmp_path: Path) -> None:
    folder = write(tmp_path, {"retours.zip": zip_bytes({}), "dupont.xlsx": zip_bytes({})})
    found = [(p.code, p.severity, Path(p.file).name) for p in gather([folder])]  # type: ignore[union-attr]
    assert found == [
        ("empty_workbook", "error", "dupont.xlsx"),
        ("empty_archive", "warning", "retours.zip"),
    ]


def test_every_problem__is_french_and_names_its_file(tmp_path: Path, no_soffice: None) -> None:
    folder = write(tmp_path / "r", {"a": b"", "b": RANDOM, "c": FAKE_MSG, "d": FAKE_ODS})
    (folder / "e.eml").write_bytes(mail().as_bytes())
    os.symlink(folder / "a", folder / "f")
    problems = [item for item in gather([folder, tmp_path / "absent"]) if isinstance(item, Problem)]
    assert [(problem.code, Path(problem.file).name) for problem in problems] == [
        ("empty_file", "a"),
        ("not_a_workbook", "b"),
        ("msg_unsupported", "c"),
        ("needs_conversion", "d"),
        ("no_workbook", "e.eml"),
        ("skipped_special", "f"),
        ("not_found", "absent"),
    ]
    for problem in problems:  # the French text of the catalogue, after the file
        fixed_parts = re.split(r"\{[^}]*\}", returns._MESSAGES[problem.code])
        assert all(part in problem.message for part in fixed_parts)
        assert str(problem) == f"{problem.file} : {problem.message}"


def test_a_workbook__is_a_candidate_with_the_hash_of_its_bytes(tmp_path: Path) -> None:
    data = xlsx_bytes()
    path = write(tmp_path, {"dupont.xlsx": data}) / "dupont.xlsx"
    [candidate] = gather([path])
    assert isinstance(candidate, Candidate)
    assert (candidate.origin, candidate.name, candidate.converted_from) == (
        str(path),
        "dupont.xlsx",
        "",
    )
    assert candidate.data == candidate.original == data
    assert candidate.sha256 == hashlib.sha256(data).hexdigest()
    assert "PK" not in repr(candidate)  # bytes are left out of the repr


def test_a_path_that_does_not_exist__is_a_problem(tmp_path: Path) -> None:
    [problem] = gather([tmp_path / "absent.xlsx"])
    assert problem == Problem(
        "not_found",
        "fichier ou dossier introuvable : vérifiez le chemin.",
        file=str(tmp_path / "absent.xlsx"),
    )


def test_a_file_too_large__is_refused_without_being_read(tmp_path: Path) -> None:
    path = write(tmp_path, {"gros.xlsx": xlsx_bytes()}) / "gros.xlsx"
    size = path.stat().st_size
    [problem] = gather([path], max_file_size=1024)
    assert problem == Problem(
        "too_large",
        f"trop volumineux ({size / 1024:.0f} Ko, maximum 1 Ko) : ce n'est pas un classeur "
        "rempli par un tuteur.",
        file=str(path),
    )
    big = write(tmp_path, {"gros.bin": bytes(int(31.2 * MiB))}) / "gros.bin"
    [problem] = gather([big])
    assert isinstance(problem, Problem)
    assert problem.message.startswith("trop volumineux (31,2 Mo, maximum 25 Mo)")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_symlinks_and_fifos_in_a_folder__are_skipped_without_blocking(tmp_path: Path) -> None:
    target = write(tmp_path / "ailleurs", {"secret.xlsx": xlsx_bytes()}) / "secret.xlsx"
    folder = write(tmp_path / "retours", {"dupont.xlsx": xlsx_bytes()})
    os.symlink(target, folder / "lien.xlsx")
    os.mkfifo(folder / "tube.xlsx")
    found: list[list[tuple[str, str]]] = []
    worker = threading.Thread(target=lambda: found.append(listing(gather([folder]), tmp_path)))
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "gathering blocked on the FIFO"
    assert found == [
        [
            ("classeur", "retours/dupont.xlsx"),
            ("skipped_special", "retours/lien.xlsx"),
            ("skipped_special", "retours/tube.xlsx"),
        ]
    ]
    [problem] = [item for item in gather([folder / "tube.xlsx"]) if isinstance(item, Problem)]
    assert problem.severity == "warning"


def test_a_symlink_named_by_the_user__is_followed(tmp_path: Path) -> None:
    target = write(tmp_path, {"dupont.xlsx": xlsx_bytes()}) / "dupont.xlsx"
    os.symlink(target, tmp_path / "lien.xlsx")
    assert listing(gather([tmp_path / "lien.xlsx"]), tmp_path) == [("classeur", "lien.xlsx")]


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs non-UTF-8 file names")
def test_a_file_name_that_is_not_utf8__is_shown_with_a_replacement_character(
    tmp_path: Path,
) -> None:
    (tmp_path / os.fsdecode(b"dupont\xff.xlsx")).write_bytes(xlsx_bytes())
    [candidate] = gather([tmp_path])
    assert isinstance(candidate, Candidate)
    assert candidate.name == "dupont\ufffd.xlsx"
    assert candidate.origin == f"{tmp_path}{os.sep}dupont\ufffd.xlsx"
    candidate.origin.encode("utf-8")  # displayable and storable


def test_a_mail_attachment_with_a_traversal_name__is_read_in_memory_under_a_clean_name(
    tmp_path: Path,
) -> None:
    message = mail([("../../etc/evil.xlsx", xlsx_bytes()), ("/tmp/x.xlsx", xlsx_bytes("X"))])
    path = write(tmp_path, {"retour.eml": message.as_bytes()}) / "retour.eml"
    before = sorted(tmp_path.rglob("*"))
    items = list(gather([path]))
    assert [(item.name, item.origin) for item in items if isinstance(item, Candidate)] == [
        ("evil.xlsx", f"{path} › pièce jointe « evil.xlsx »"),
        ("x.xlsx", f"{path} › pièce jointe « x.xlsx »"),
    ]
    assert sorted(tmp_path.rglob("*")) == before
    assert not Path("/tmp/x.xlsx").exists() or Path("/tmp/x.xlsx").read_bytes() != xlsx_bytes("X")


def test_header_tricks_with_cr_lf__do_not_stop_the_gathering(tmp_path: Path) -> None:
    body = mail([("dupont.xlsx", xlsx_bytes())]).as_bytes().split(b"MIME-Version: 1.0\n", 1)[1]
    raw = (
        b"From: =?utf-8?b?YQ0KQmNjOiBldmlsQHguZnI=?= <a@x.fr>\n"
        b"To: prof@lycee.fr\nSubject: =?utf-8?q?R=0D=0Aetour?=\nMIME-Version: 1.0\n" + body
    ).replace(b'filename="dupont.xlsx"', b"filename*=utf-8''dupont%0D%0ABcc%3A%20x.xlsx")
    path = write(tmp_path, {"piege.eml": raw}) / "piege.eml"
    with pytest.raises(ValueError):  # what the field notes warn about
        str(email.message_from_bytes(raw, policy=email.policy.default)["From"])
    [candidate] = gather([path])
    assert isinstance(candidate, Candidate)
    assert candidate.name == "dupontBcc: x.xlsx"


def test_a_forwarded_message__yields_the_workbook_it_hides(tmp_path: Path) -> None:
    inner = mail([("dupont.xlsx", xlsx_bytes())])
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = "prof@lycee.fr", "moi@lycee.fr", "TR: Retour"
    outer.set_content("Je te transfère le retour.")
    outer.add_attachment(inner)
    assert next(outer.iter_attachments()).get_content_type() == "message/rfc822"
    path = write(tmp_path, {"transfert.eml": outer.as_bytes()}) / "transfert.eml"
    assert listing(gather([path]), tmp_path) == [
        ("classeur", "transfert.eml › pièce jointe « dupont.xlsx »")
    ]


def test_a_truncated_base64_attachment__is_a_damaged_attachment(tmp_path: Path) -> None:
    raw = mail([("dupont.xlsx", xlsx_bytes())]).as_bytes()
    start = raw.index(b"UEsDB")
    path = write(tmp_path, {"coupe.eml": raw[: start + 402]}) / "coupe.eml"
    [problem] = gather([path])
    assert isinstance(problem, FileProblem)  # the bytes that came: their SHA-256 is kept
    assert len(problem.sha256) == 64
    assert replace(problem, sha256="") == FileProblem(
        "damaged_attachment",
        "pièce jointe incomplète ou endommagée (message tronqué ?) : demandez au tuteur de "
        "renvoyer le classeur.",
        file=f"{path} › pièce jointe « dupont.xlsx »",
    )


def test_a_mail_without_a_workbook__is_a_warning(tmp_path: Path) -> None:
    message = mail()
    message.add_attachment(b"%PDF-1.4\n", "application", "pdf", filename="convention.pdf")
    path = write(tmp_path, {"merci.eml": message.as_bytes()}) / "merci.eml"
    [problem] = gather([path])
    assert isinstance(problem, Problem)
    assert (problem.code, problem.severity) == ("no_workbook", "warning")


def test_an_attachment_named_like_a_workbook_but_protected__is_reported(tmp_path: Path) -> None:
    message = mail([("dupont.xlsx", encrypted_xlsx()), ("liste.csv", CSV)])
    path = write(tmp_path, {"r.eml": message.as_bytes()}) / "r.eml"
    assert listing(gather([path]), tmp_path) == [
        ("encrypted", "r.eml › pièce jointe « dupont.xlsx »"),
        ("not_a_workbook", "r.eml › pièce jointe « liste.csv »"),
    ]


def test_outlook_winmail_dat_and_office_documents__are_one_problem_each(tmp_path: Path) -> None:
    message = mail()
    message.add_attachment(b"\x78\x9f\x3e\x22" + bytes(100), "application", "ms-tnef")
    docx = zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w/>"})
    message.add_attachment(docx, "application", "octet-stream", filename="convention.zip")
    path = write(tmp_path, {"r.eml": message.as_bytes()}) / "r.eml"
    assert listing(gather([path]), tmp_path) == [
        ("outlook_attachment", "r.eml › pièce jointe « winmail.dat »"),
        ("not_a_workbook", "r.eml › pièce jointe « convention.zip »"),
    ]


def test_an_mbox__yields_the_workbooks_of_every_message(tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "Retours")
    box.add(mail([("dupont.xlsx", xlsx_bytes())]))
    box.add(mail(subject="Pas de pièce jointe"))
    box.add(mail([("martin.xlsx", xlsx_bytes("Martin"))]))
    box.close()
    assert listing(gather([tmp_path / "Retours"]), tmp_path) == [
        ("classeur", "Retours › message 1 › pièce jointe « dupont.xlsx »"),
        ("classeur", "Retours › message 3 › pièce jointe « martin.xlsx »"),
    ]


def test_a_maildir__yields_the_workbooks_of_every_message(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(mail([("dupont.xlsx", xlsx_bytes())]))
    box.add(mail(subject="Merci"))
    [candidate] = gather([tmp_path / "Maildir"])
    assert isinstance(candidate, Candidate)
    assert candidate.origin.startswith(f"{tmp_path / 'Maildir' / 'new'}{os.sep}")
    assert candidate.origin.endswith(" › pièce jointe « dupont.xlsx »")
    empty = mailbox.Maildir(tmp_path / "Vide", create=True)
    empty.add(mail())
    assert listing(gather([tmp_path / "Vide"]), tmp_path) == [("no_workbook", "Vide")]


def test_a_zip_archive__yields_every_workbook_including_a_nested_archive(
    tmp_path: Path,
) -> None:
    nested = zip_bytes({"martin.xlsx": xlsx_bytes("Martin")})
    archive = zip_bytes(
        {
            "retours/": b"",
            "retours/dupont.xlsx": xlsx_bytes(),
            "retours/lisez-moi.txt": b"Bonjour",
            "retours/autres.zip": nested,
            "__MACOSX/retours/._dupont.xlsx": b"\0\5\26\7",
            "retours/.DS_Store": b"\0",
            "../../evil.xlsx": xlsx_bytes("Evil"),
        }
    )
    path = write(tmp_path, {"archive.zip": archive}) / "archive.zip"
    items = list(gather([path]))
    assert listing(items, tmp_path) == [
        ("classeur", "archive.zip › evil.xlsx"),
        ("classeur", "archive.zip › retours/autres.zip › martin.xlsx"),
        ("classeur", "archive.zip › retours/dupont.xlsx"),
        ("not_a_workbook", "archive.zip › retours/lisez-moi.txt"),
    ]
    assert [item.name for item in items if isinstance(item, Candidate)] == [
        "evil.xlsx", "martin.xlsx", "dupont.xlsx",
    ]  # fmt: skip


def test_archives_nested_too_deep__are_refused(tmp_path: Path) -> None:
    deep = zip_bytes({"c.zip": zip_bytes({"b.zip": zip_bytes({"a.xlsx": xlsx_bytes()})})})
    path = write(tmp_path, {"d.zip": deep}) / "d.zip"
    assert listing(gather([path]), tmp_path) == [("too_deep", "d.zip › c.zip › b.zip")]


def test_a_zip_bomb_returned__is_refused_quickly(tmp_path: Path) -> None:
    big = bomb(600 * MiB, "retours/bombe.xlsx", as_xlsx=False)
    folder = write(
        tmp_path / "r",
        {
            "bombe.xlsx": bomb(600 * MiB),
            "archive.zip": big,
            "menteuse.zip": lie_about_size(big, "retours/bombe.xlsx", 1000),
        },
    )
    started = time.perf_counter()
    items = list(gather([folder]))
    assert time.perf_counter() - started < 2
    assert listing(items, tmp_path) == [
        ("unsafe_file", "r/archive.zip"),
        ("unsafe_file", "r/bombe.xlsx"),
        ("damaged_file", "r/menteuse.zip › retours/bombe.xlsx"),
    ]


def test_an_outlook_message__needs_extract_msg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, {"retour.msg": FAKE_MSG}) / "retour.msg"
    monkeypatch.setitem(sys.modules, "extract_msg", None)
    assert listing(gather([path]), tmp_path) == [("msg_unsupported", "retour.msg")]
    attachment = types.SimpleNamespace(
        longFilename="../dupont.xlsx", shortFilename="DUPONT~1.XLS", data=xlsx_bytes()
    )
    fake = types.SimpleNamespace(
        openMsg=lambda data: types.SimpleNamespace(attachments=[attachment])
    )
    monkeypatch.setitem(sys.modules, "extract_msg", fake)
    assert listing(gather([path]), tmp_path) == [
        ("classeur", "retour.msg › pièce jointe « dupont.xlsx »")
    ]


def test_a_conversion_that_fails_or_hangs__is_a_problem_and_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "soffice"
    fake.write_text("#!/bin/sh\nsleep 37.25 &\nwait\n")
    fake.chmod(0o755)
    monkeypatch.setattr(office.shutil, "which", lambda name: str(fake))
    monkeypatch.setattr(returns, "CONVERSION_TIMEOUT", 0.5)
    path = write(tmp_path, {"t.ods": FAKE_ODS}) / "t.ods"
    started = time.perf_counter()
    assert listing(gather([path]), tmp_path) == [("conversion_failed", "t.ods")]
    assert time.perf_counter() - started < 5
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert "sleep 37.25" not in ps


@needs_soffice
def test_ods_and_xls_returns__are_converted_to_xlsx_by_libreoffice(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write(source, {"dupont.xlsx": xlsx_bytes(), "martin.xlsx": xlsx_bytes("Martin")})
    for target, name in (("ods", "dupont.xlsx"), ("xls", "martin.xlsx")):
        subprocess.run(
            ["soffice", "--headless", "--norestore",
             f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}",
             "--convert-to", target, "--outdir", str(tmp_path / "retours"), str(source / name)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    ods, xls = (tmp_path / "retours" / "dupont.ods"), (tmp_path / "retours" / "martin.xls")
    assert (sniff(ods.read_bytes()), sniff(xls.read_bytes())) == ("ods", "xls")
    items = list(gather([tmp_path / "retours"]))
    assert [(c.name, c.converted_from) for c in items if isinstance(c, Candidate)] == [
        ("dupont.ods", "ods"),
        ("martin.xls", "xls"),
    ]
    for candidate, student in zip(items, ("Dupont", "Martin"), strict=True):
        assert isinstance(candidate, Candidate)
        assert candidate.original == (tmp_path / "retours" / candidate.name).read_bytes()
        workbook = openpyxl.load_workbook(io.BytesIO(candidate.data))
        assert workbook.active["A1"].value == student


def test_storing_the_same_original_twice__keeps_one_file(tmp_path: Path) -> None:
    data = xlsx_bytes()
    [first] = gather([write(tmp_path / "a", {"dupont.xlsx": data})])
    [second] = gather([write(tmp_path / "b", {"copie.xlsx": data})])
    assert isinstance(first, Candidate) and isinstance(second, Candidate)
    path, created = store_original(first, tmp_path / "originaux")
    assert (path, created) == (
        (tmp_path / "originaux" / first.sha256[:2] / f"{first.sha256}.xlsx").resolve(),
        True,
    )
    assert store_original(second, tmp_path / "originaux") == (path, False)
    assert path.read_bytes() == data
    assert [p.name for p in (tmp_path / "originaux").rglob("*") if p.is_file()] == [path.name]


def test_storing_a_converted_return__keeps_the_original_format(tmp_path: Path) -> None:
    sha = hashlib.sha256(FAKE_ODS).hexdigest()
    candidate = Candidate("r.ods", "r.ods", xlsx_bytes(), sha, FAKE_ODS, converted_from="ods")
    path, created = store_original(candidate, tmp_path)
    assert (path.suffix, created, path.read_bytes()) == (".ods", True, FAKE_ODS)


def test_storing__repairs_a_damaged_copy_and_refuses_to_leave_the_folder(tmp_path: Path) -> None:
    [candidate] = gather([write(tmp_path / "a", {"dupont.xlsx": xlsx_bytes()})])
    assert isinstance(candidate, Candidate)
    path, _ = store_original(candidate, tmp_path / "originaux")
    path.write_bytes(b"abime")
    assert store_original(candidate, tmp_path / "originaux") == (path, True)
    assert path.read_bytes() == candidate.original
    elsewhere = tmp_path / "ailleurs"
    elsewhere.mkdir()
    (tmp_path / "piege").mkdir()
    os.symlink(elsewhere, tmp_path / "piege" / candidate.sha256[:2])
    with pytest.raises(ValueError, match="outside"):
        store_original(candidate, tmp_path / "piege")
    assert list(elsewhere.iterdir()) == []


def test_container_of__one_test_of_a_files_bytes__roster_grid_and_returns_agree(
    tmp_path: Path,
) -> None:
    from pipeline.files import container_of
    from pipeline.roster import read_roster
    from tests.conftest import write_xlsx
    from tests.tutors import ROSTER_HEADER, roster_rows

    named_csv = write_xlsx(tmp_path / "liste.csv", [ROSTER_HEADER, *roster_rows("Abadie")])
    looks_zipped = tmp_path / "pk.csv"  # text that happens to begin with « PK »
    looks_zipped.write_bytes(b"PK;Nom\r\n")

    assert container_of(named_csv.read_bytes()) == "zip"
    assert sniff(named_csv.read_bytes()) == "xlsx"
    assert [s.last_name for s in read_roster(named_csv).students] == ["Abadie"]
    assert (container_of(looks_zipped.read_bytes()), sniff(looks_zipped.read_bytes())) == (
        "",
        "text",
    )
    assert (container_of(FAKE_XLS), sniff(FAKE_XLS)) == ("ole2", "xls")
    with pytest.raises(RosterError, match="au format Excel 97-2003"):
        read_roster(_written(tmp_path / "liste.xlsx", FAKE_XLS))


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path

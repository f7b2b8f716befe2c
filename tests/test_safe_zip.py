"""Bounded reading of untrusted zips: bombs, lying headers, hostile names and XML."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from pipeline.errors import GrilleError
from pipeline.safe_zip import SafeZip, UnsafeFile, ZipLimits, check_xml
from tests.hostile import MiB, bomb, lie_about_size, many_entries, xlsx_bytes, zip_bytes

SHEET = "xl/worksheets/sheet1.xml"
RANDOM = random.Random(1).randbytes(4000)


@pytest.fixture(scope="module")
def big_bomb() -> bytes:
    """About 2.7 MB that expands to 600 MB of zeros."""
    return bomb(600 * MiB)


def refusal(data: bytes, limits: ZipLimits | None = None) -> UnsafeFile:
    with pytest.raises(UnsafeFile) as caught:
        SafeZip(data, "retour.xlsx", limits or ZipLimits())
    return caught.value


def test_a_real_workbook__opens_and_every_member_reads() -> None:
    archive = SafeZip(xlsx_bytes(), "retour.xlsx")
    assert "xl/workbook.xml" in archive.names()
    assert archive.has("[Content_Types].xml")
    assert all(archive.read(name) for name in archive.names())


def test_a_missing_member__raises_key_error_or_reads_as_none() -> None:
    archive = SafeZip(xlsx_bytes(), "retour.xlsx")
    assert archive.read_optional("xl/absent.xml") is None
    with pytest.raises(KeyError):
        archive.read("xl/absent.xml")


def test_unsafe_file__is_a_grille_error_whose_message_names_the_file() -> None:
    error = refusal(b"not a zip")
    assert isinstance(error, GrilleError)
    assert (
        str(error)
        == "retour.xlsx : fichier endommagé ou incomplet : demandez au tuteur de le renvoyer."
    )
    assert (error.name, error.damaged) == ("retour.xlsx", True)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        RANDOM[:3000],
        b"PK\x03\x04" + RANDOM[:500],
        xlsx_bytes()[:-100],
        xlsx_bytes()[:2000],
    ],
    ids=["empty", "random", "zip-magic-then-random", "truncated-end", "truncated-middle"],
)
def test_damaged_bytes__are_refused_as_damaged(data: bytes) -> None:
    assert refusal(data).damaged


def test_a_zip_bomb__is_refused_from_its_declared_size_without_expanding(big_bomb: bytes) -> None:
    started = time.perf_counter()
    error = refusal(big_bomb)
    assert time.perf_counter() - started < 1
    assert "600 Mo" in error.reason and "bombe zip" in error.reason
    assert not error.damaged


def test_a_zip_bomb_whose_headers_lie_about_its_size__stops_at_the_checksum(
    big_bomb: bytes,
) -> None:
    liar = lie_about_size(big_bomb, SHEET, 1000)
    archive = SafeZip(liar, "retour.xlsx")
    started = time.perf_counter()
    with pytest.raises(UnsafeFile) as caught:
        archive.read(SHEET)
    assert time.perf_counter() - started < 1
    assert caught.value.damaged
    assert caught.value.reason == (
        f"fichier endommagé (« {SHEET} » illisible) : demandez au tuteur de le renvoyer."
    )


def test_reading_every_member_of_bombs__keeps_memory_under_500_mb(
    big_bomb: bytes, tmp_path: Path
) -> None:
    (tmp_path / "bomb.zip").write_bytes(big_bomb)
    (tmp_path / "liar.zip").write_bytes(lie_about_size(big_bomb, SHEET, 5000))
    script = f"""
import resource, sys
from pathlib import Path
from pipeline.safe_zip import SafeZip, UnsafeFile, ZipLimits
for path in Path({str(tmp_path)!r}).iterdir():
    try:
        archive = SafeZip(path.read_bytes(), path.name)
        for name in archive.names():
            archive.read(name)
    except UnsafeFile as error:
        print(error)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    *refusals, peak_kib = done.stdout.splitlines()
    assert len(refusals) == 2
    assert int(peak_kib) < 500 * 1024


def test_a_member_larger_than_the_limit__is_refused_before_reading() -> None:
    archive = SafeZip(
        zip_bytes({"a.xml": bytes(2000)}), "retour.xlsx", ZipLimits(max_member_size=1000)
    )
    with pytest.raises(UnsafeFile, match="se décompresse en plus de"):
        archive.read("a.xml")
    with pytest.raises(UnsafeFile):
        SafeZip(zip_bytes({"a.xml": bytes(2000)}), "x").read("a.xml", max_size=1999)
    assert SafeZip(zip_bytes({"a.xml": bytes(2000)}), "x").read("a.xml", max_size=2000) == bytes(
        2000
    )


def test_the_declared_total__is_capped() -> None:
    data = zip_bytes({"a.xml": bytes(600), "b.xml": bytes(600)})
    assert "contenu décompressé annoncé" in refusal(data, ZipLimits(max_total_size=1000)).reason


def test_the_actual_total__is_counted_across_members() -> None:
    archive = SafeZip(zip_bytes({"a.xml": b"a" * 600, "b.xml": b"b" * 600}), "x")
    object.__setattr__(archive, "limits", ZipLimits(max_total_size=1000))
    archive.read("a.xml")
    with pytest.raises(UnsafeFile, match="contenu décompressé supérieur"):
        archive.read("b.xml")


def test_an_abnormal_compression_ratio__is_refused_above_the_threshold_only() -> None:
    limits = ZipLimits(max_ratio=200, ratio_threshold=100_000)
    assert (
        "compressé de façon anormale"
        in refusal(zip_bytes({"z.xml": bytes(200_000)}), limits).reason
    )
    SafeZip(zip_bytes({"z.xml": bytes(90_000)}), "x", limits).read("z.xml")


def test_too_many_members__are_refused() -> None:
    data = zip_bytes({f"m{i}.xml": b"" for i in range(1001)})
    assert refusal(data).reason == (
        "trop d'éléments dans l'archive (1001, maximum 1000) : fichier refusé par sécurité."
    )
    eleven = zip_bytes({f"m{i}.xml": b"" for i in range(11)})
    assert "(11, maximum 10)" in refusal(eleven, ZipLimits(max_members=10)).reason


def test_a_huge_central_directory__is_refused_before_zipfile_parses_it() -> None:
    data = many_entries(500_000)
    started = time.perf_counter()
    assert refusal(data).reason == (
        "trop d'éléments dans l'archive (plus de 1000) : fichier refusé par sécurité."
    )
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "name", ["../evil.xml", "xl/../../evil.xml", "/etc/passwd", "xl\\evil.xml", "C:/evil.xml"]
)
def test_a_dangerous_member_name__is_refused(name: str) -> None:
    reason = refusal(zip_bytes({"[Content_Types].xml": b"<Types/>", name: b"x"})).reason
    assert reason.startswith("nom d'élément dangereux")


def test_a_member_name_with_terminal_escapes__is_shown_escaped() -> None:
    reason = refusal(zip_bytes({"../\x1b[31mrouge": b"x"})).reason
    assert reason == "nom d'élément dangereux « ../\\x1b[31mrouge » : fichier refusé par sécurité."


def test_dangerous_names__are_accepted_when_names_are_only_displayed() -> None:
    archive = SafeZip(zip_bytes({"../evil.xlsx": b"x"}), "a.zip", strict_names=False)
    assert archive.read("../evil.xlsx") == b"x"


def test_a_member_listed_twice__is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("a.xml", b"1")
        archive.writestr("a.xml", b"2")
    assert "deux fois" in refusal(buffer.getvalue()).reason


def test_a_corrupted_member__fails_its_checksum() -> None:
    data = bytearray(zip_bytes({"a.xml": b"<a>hello</a>"}, zipfile.ZIP_STORED))
    data[data.index(b"hello")] = ord("j")
    with pytest.raises(UnsafeFile) as caught:
        SafeZip(bytes(data), "x").read("a.xml")
    assert caught.value.damaged


def test_an_unusual_compression_method__is_refused() -> None:
    archive = SafeZip(zip_bytes({"a.xml": b"x" * 100}, zipfile.ZIP_BZIP2), "x")
    with pytest.raises(UnsafeFile, match="compression non prise en charge"):
        archive.read("a.xml")


def test_an_encrypted_member__is_refused() -> None:
    data = bytearray(zip_bytes({"a.xml": b"x"}))
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        position = data.index(signature)
        data[position + flag_offset] |= 1
    with pytest.raises(UnsafeFile, match="protégé par un mot de passe"):
        SafeZip(bytes(data), "x").read("a.xml")


GOOD_XML = b"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<sst count="1"><si><t>&lt;!DOCTYPE html&gt;</t></si></sst>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<sst>&lol2;</sst>"""
EXTERNAL = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'


def test_ordinary_xml__passes_even_with_an_escaped_doctype_in_text() -> None:
    check_xml(GOOD_XML, "retour.xlsx", "xl/sharedStrings.xml")
    check_xml(b"", "retour.xlsx", "xl/empty.xml")
    check_xml("<?xml version='1.0' encoding='UTF-16'?><a/>".encode("utf-16"), "r", "p")


@pytest.mark.parametrize(
    "data",
    [
        BILLION_LAUGHS,
        EXTERNAL,
        b"<!doctype x><x/>",
        b'<?xml version="1.0"?>\n<!ENTITY x "y">',
        BILLION_LAUGHS.decode().encode("utf-16"),
        BILLION_LAUGHS.decode().encode("utf-16-le"),
        BILLION_LAUGHS.decode().encode("utf-16-be"),
        b"\xef\xbb\xbf" + EXTERNAL,
    ],
    ids=[
        "billion-laughs",
        "external",
        "lowercase",
        "entity-only",
        "utf16-bom",
        "utf16le",
        "utf16be",
        "utf8-bom",
    ],
)
def test_a_doctype_or_entity_declaration__is_refused(data: bytes) -> None:
    with pytest.raises(UnsafeFile) as caught:
        check_xml(data, "retour.xlsx", "xl/sharedStrings.xml")
    assert str(caught.value) == (
        "retour.xlsx : la partie « xl/sharedStrings.xml » contient une déclaration DOCTYPE ou "
        "ENTITY, jamais présente dans un classeur Excel : fichier refusé par sécurité."
    )


@pytest.mark.parametrize(
    "data",
    [b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE', "<a/>".encode("cp500"), b"junk<a/>"],
    ids=["utf-7", "ebcdic", "not-xml"],
)
def test_xml_in_an_encoding_the_check_cannot_read__is_refused(data: bytes) -> None:
    with pytest.raises(UnsafeFile, match="fichier refusé par sécurité"):
        check_xml(data, "retour.xlsx", "xl/workbook.xml")

"""Builders for real and hostile returned files, made in memory by the tests themselves."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Sequence
from email.message import EmailMessage

import openpyxl

XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
MiB = 1024 * 1024


def xlsx_bytes(student: str = "Dupont") -> bytes:
    """A small real workbook written by openpyxl."""
    workbook = openpyxl.Workbook()
    workbook.active["A1"] = student
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buffer.getvalue()


def bomb(size: int, member: str = "xl/worksheets/sheet1.xml", *, as_xlsx: bool = True) -> bytes:
    """A zip whose `member` is `size` bytes of zeros, streamed: little memory used."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        if as_xlsx:
            archive.writestr("[Content_Types].xml", b"<Types/>")
            archive.writestr("xl/workbook.xml", b"<workbook/>")
        with archive.open(member, "w") as stream:
            chunk = bytes(MiB)
            for _ in range(size // MiB):
                stream.write(chunk)
    return buffer.getvalue()


def lie_about_size(data: bytes, member: str, declared: int) -> bytes:
    """Patch `member`'s uncompressed size in its local and central headers."""
    patched = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    struct.pack_into("<L", patched, info.header_offset + 22, declared)
    end = data.rfind(b"PK\x05\x06")
    (offset,) = struct.unpack_from("<L", data, end + 16)
    while data[offset : offset + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, offset + 28)
        if data[offset + 46 : offset + 46 + name_len].decode() == member:
            struct.pack_into("<L", patched, offset + 24, declared)
        offset += 46 + name_len + extra_len + comment_len
    return bytes(patched)


def many_entries(count: int) -> bytes:
    """A zip listing `count` entries, all pointing at one member; its end record says 5."""
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"a"
    fields = (20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0)
    directory = (struct.pack("<4s6H3L5H2L", b"PK\x01\x02", *fields) + b"a") * count
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 5, 5, len(directory), 31, 0)  # lies
    return local + directory + end


def mail(
    attachments: Sequence[tuple[str, bytes]] = (), subject: str = "Retour de stage"
) -> EmailMessage:
    """A tutor's reply with `attachments` as (file name, bytes)."""
    message = EmailMessage()
    message["From"] = "tuteur@entreprise.fr"
    message["To"] = "prof@lycee.fr"
    message["Subject"] = subject
    message.set_content("Bonjour, voici la grille remplie.")
    for filename, data in attachments:
        message.add_attachment(data, *XLSX_TYPE, filename=filename)
    return message


# ------------------------------------------------------------ foreign formats, built
# from their specifications (the real clients that write them do not run here).


def ole_file(streams: dict[str, bytes]) -> bytes:
    """An OLE2 compound file (MS-CFB, version 3, 512-byte sectors) holding `streams`, as
    Excel 5.0 to 2003 save a workbook ("Book" or "Workbook" stream). Streams are padded
    to 4,096 bytes so that none goes to the mini stream."""
    end, free, fat_mark, nothing = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    names = sorted(streams, key=lambda name: (len(name), name.upper()))
    padded = [streams[name].ljust(4096, b"\0") for name in names]
    data_sectors = [-(-len(stream) // 512) for stream in padded]
    directory_sectors = -(-(len(names) + 1) // 4)
    fat_sectors = 1
    while fat_sectors * 128 < fat_sectors + directory_sectors + sum(data_sectors):
        fat_sectors += 1
    fat = [fat_mark] * fat_sectors
    first_directory = len(fat)
    fat += [first_directory + i + 1 for i in range(directory_sectors - 1)] + [end]
    starts = []
    for count in data_sectors:
        starts.append(len(fat))
        fat += [len(fat) + i + 1 for i in range(count - 1)] + [end]
    fat += [free] * (fat_sectors * 128 - len(fat))

    def entry(name: str, kind: int, right: int, child: int, start: int, size: int) -> bytes:
        encoded = (name.encode("utf-16-le") + b"\0\0") if name else b""
        return struct.pack(
            "<64sHBBIII16sIQQIQ", encoded, len(encoded), kind, 1, nothing, right, child,
            bytes(16), 0, 0, 0, start, size,
        )  # fmt: skip

    directory = entry("Root Entry", 5, nothing, 1 if names else nothing, end, 0)
    for index, name in enumerate(names):
        right = index + 2 if index + 1 < len(names) else nothing
        directory += entry(name, 2, right, nothing, starts[index], len(padded[index]))
    directory = directory.ljust(directory_sectors * 512, b"\0")
    difat = list(range(fat_sectors)) + [free] * (109 - fat_sectors)
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII109I", bytes.fromhex("D0CF11E0A1B11AE1"), bytes(16), 0x3E, 3,
        0xFFFE, 9, 6, bytes(6), 0, fat_sectors, first_directory, 0, 4096, end, 0, end, 0,
        *difat,
    )  # fmt: skip
    body = struct.pack(f"<{len(fat)}I", *fat) + directory
    return (
        header
        + body
        + b"".join(stream.ljust(-(-len(stream) // 512) * 512, b"\0") for stream in padded)
    )


def biff(kind: int, data: bytes = b"") -> bytes:
    """One BIFF record: type, length, data."""
    return struct.pack("<HH", kind, len(data)) + data


def excel95_book(*, password: bool) -> bytes:
    """The "Book" stream of an Excel 5.0/95 workbook (BIFF5). With a password, Excel
    writes a FILEPASS record (XOR obfuscation key and hash) right after the BOF, and
    obfuscates the rest (MS-XLS 2.4.117; OpenOffice's « Excel File Format » §5.38)."""
    records = biff(0x0809, struct.pack("<HHHH", 0x0500, 0x0005, 0x0DBB, 0x07CC))
    if password:
        records += biff(0x002F, struct.pack("<HH", 0x8A5F, 0x4C26))
    records += biff(0x0042, struct.pack("<H", 1252)) + biff(0x000A)
    return records


def excel97_workbook(*, password: bool) -> bytes:
    """The "Workbook" stream of an Excel 97-2003 workbook (BIFF8); with a password, a
    FILEPASS record with RC4 encryption follows the BOF (MS-XLS 2.4.117)."""
    records = biff(0x0809, struct.pack("<HHHHII", 0x0600, 0x0005, 0x0DBB, 0x07CC, 0x41, 6))
    if password:
        rc4 = struct.pack("<HHH", 1, 1, 1) + bytes(range(16)) + bytes(32)
        records += biff(0x002F, rc4)
    return records + biff(0x0042, struct.pack("<H", 1200)) + biff(0x000A)


def excel4_sheet(cells: dict[tuple[int, int], str | float], *, version: int = 2) -> bytes:
    """An Excel 2.x (or 3.0/4.0, `version`) worksheet: a bare BIFF stream, no OLE2
    container — BOF 0x0009/0x0209/0x0409, DIMENSIONS, LABEL and NUMBER records, EOF
    (OpenOffice's « Excel File Format » §5.8, §5.35, §5.63, §5.71)."""
    bof = {2: 0x0009, 3: 0x0209, 4: 0x0409}[version]
    records = biff(bof, struct.pack("<HH", 0, 0x0010) + (b"\0\0" if version > 2 else b""))
    rows, columns = (max(i) + 1 for i in zip(*cells, strict=True))
    records += biff(0x0000, struct.pack("<HHHH", 0, rows, 0, columns))
    for (row, column), value in sorted(cells.items()):
        if isinstance(value, str):
            text = value.encode("cp1252")
            records += biff(0x0004, struct.pack("<HH3sB", row, column, bytes(3), len(text)) + text)
        else:
            records += biff(0x0003, struct.pack("<HH3sd", row, column, bytes(3), value))
    return records + biff(0x000A)


def encrypted_ods(content: bytes, password: str = "secret") -> bytes:
    """An .ods saved with a password as LibreOffice does it (ODF 1.2 Part 3, §3.4):
    `mimetype` and `META-INF/manifest.xml` in clear, every other part deflated then
    AES-256-CBC encrypted with a PBKDF2 key, its `manifest:encryption-data` in the
    manifest."""
    import base64
    import hashlib
    import os
    import zlib

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    compressor = zlib.compressobj(wbits=-15)
    compressed = compressor.compress(content) + compressor.flush()
    salt, iv = os.urandom(16), os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha1", hashlib.sha256(password.encode()).digest(), salt, 100_000, 32)
    padding = 16 - len(compressed) % 16
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    secret = encryptor.update(compressed + os.urandom(padding - 1) + bytes([padding]))
    secret += encryptor.finalize()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    checksum = b64(hashlib.sha256(compressed[:1024]).digest())
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<manifest:manifest xmlns:manifest="urn:oasis:'
        'names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
        '<manifest:file-entry manifest:full-path="/" manifest:version="1.3" manifest:media-type='
        '"application/vnd.oasis.opendocument.spreadsheet"/>'
        f'<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml" '
        f'manifest:size="{len(content)}"><manifest:encryption-data manifest:checksum-type="urn:'
        f'oasis:names:tc:opendocument:xmlns:manifest:1.0#sha256-1k" manifest:checksum="{checksum}">'
        '<manifest:algorithm manifest:algorithm-name="http://www.w3.org/2001/04/xmlenc#aes256-cbc"'
        f' manifest:initialisation-vector="{b64(iv)}"/><manifest:start-key-generation manifest:'
        'start-key-generation-name="http://www.w3.org/2000/09/xmldsig#sha256" manifest:key-size='
        '"32"/><manifest:key-derivation manifest:key-derivation-name="PBKDF2" manifest:key-size='
        f'"32" manifest:iteration-count="100000" manifest:salt="{b64(salt)}"/>'
        "</manifest:encryption-data></manifest:file-entry></manifest:manifest>"
    ).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", b"application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", secret)  # stored: it is deflated before encryption
        archive.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


ODS_NAMESPACES = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
)


def ods_content(rows: str) -> bytes:
    """An OpenDocument spreadsheet's content.xml with one table of `rows` (XML)."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document-content {ODS_NAMESPACES} '
        'office:version="1.3"><office:body><office:spreadsheet><table:table table:name="Feuille1">'
        f"{rows}</table:table></office:spreadsheet></office:body></office:document-content>"
    ).encode()


def ods_bytes(content: bytes) -> bytes:
    """An .ods package around `content` (mimetype first and stored, as ODF requires)."""
    manifest = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<manifest:manifest xmlns:manifest="urn:oasis:'
        b'names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3"><manifest:file-entry '
        b'manifest:full-path="/" manifest:version="1.3" manifest:media-type="application/vnd.'
        b'oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" '
        b'manifest:media-type="text/xml"/></manifest:manifest>'
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", b"application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def numbers_document() -> bytes:
    """An Apple Numbers document as a single file: a zip of IWA archives (`Index/*.iwa`,
    Snappy-framed protobuf), `Metadata/` and a preview image (the layout numbers-parser
    and other public readers of Numbers files document)."""
    return zip_bytes(
        {
            "Index/Document.iwa": b"\x00\x1f\x00\x00" + bytes(31),
            "Index/CalculationEngine.iwa": b"\x00\x05\x00\x00" + bytes(5),
            "Index/Tables/DataList.iwa": b"\x00\x05\x00\x00" + bytes(5),
            "Metadata/DocumentIdentifier": b"3F1C0E6A-0000-0000-0000-000000000000",
            "Metadata/Properties.plist": b"bplist00\xd0\x08\x00\x00\x00\x00\x00\x00\x01\x01",
            "preview.jpg": b"\xff\xd8\xff\xe0" + bytes(20),
        }
    )


def excel2003_xml(text: str) -> bytes:
    """A workbook in Excel 2003's « Feuille de calcul XML 2003 » (SpreadsheetML 2003): one
    XML file, a `<?mso-application progid="Excel.Sheet"?>` instruction and a `Workbook`
    root in urn:schemas-microsoft-com:office:spreadsheet."""
    return (
        '<?xml version="1.0"?>\n<?mso-application progid="Excel.Sheet"?>\n<Workbook xmlns="urn:'
        'schemas-microsoft-com:office:spreadsheet" xmlns:o="urn:schemas-microsoft-com:office:'
        'office" xmlns:x="urn:schemas-microsoft-com:office:excel" xmlns:ss="urn:schemas-'
        'microsoft-com:office:spreadsheet">\n <Worksheet ss:Name="Feuil1"><Table><Row><Cell>'
        f'<Data ss:Type="String">{text}</Data></Cell></Row></Table></Worksheet>\n</Workbook>\n'
    ).encode()


def flat_ods(rows: str) -> bytes:
    """A « flat » OpenDocument spreadsheet (.fods): the whole document in one XML file
    whose root is `office:document` with `office:mimetype` (ODF 1.2 Part 1, §2.2)."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document {ODS_NAMESPACES} '
        'office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.spreadsheet">'
        '<office:body><office:spreadsheet><table:table table:name="Feuille1">'
        f"{rows}</table:table></office:spreadsheet></office:body></office:document>"
    ).encode()


def xlsb_bytes() -> bytes:
    """An Excel binary workbook (.xlsb): an Open Packaging zip whose main part is
    `xl/workbook.bin`, of content type application/vnd.ms-excel.sheet.binary.macroEnabled
    .main (MS-XLSB §2.1)."""
    return zip_bytes(
        {
            "[Content_Types].xml": b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http:'
            b'//schemas.openxmlformats.org/package/2006/content-types"><Default Extension="bin" '
            b'ContentType="application/vnd.ms-excel.sheet.binary.macroEnabled.main"/><Default '
            b'Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships'
            b'+xml"/></Types>',
            "_rels/.rels": b'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://'
            b'schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" '
            b'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            b'officeDocument" Target="xl/workbook.bin"/></Relationships>',
            "xl/workbook.bin": b"\x83\x01\x00\x80\x01\x00",
        }
    )

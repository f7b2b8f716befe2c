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

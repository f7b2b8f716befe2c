"""Bounded reading of an untrusted zip held in memory (an .xlsx or .ods is a zip).

Everything is checked before decompressing (member count, names, declared sizes,
compression ratio) and again while decompressing (actual bytes, in chunks), so that
a zip bomb or a header that lies about its size is refused without being expanded.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import NoReturn

from pipeline.errors import GrilleError

MiB = 1024 * 1024
_CHUNK = 64 * 1024
_CD_BYTES_PER_MEMBER = 1024  # generous bound for one central-directory entry
_SUPPORTED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_ENCODING = re.compile(r"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")
_ALLOWED_ENCODINGS = {
    "utf-8", "utf8", "utf-16", "utf16", "us-ascii", "ascii", "iso-8859-1", "latin-1",
    "windows-1252", "cp1252",
}  # fmt: skip
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
)
_ASK_AGAIN = "demandez au tuteur de le renvoyer"
_DAMAGED = f"fichier endommagé ou incomplet : {_ASK_AGAIN}."
_REFUSED = "fichier refusé par sécurité"
# What a corrupt or hostile zip makes the zipfile module raise.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    ValueError,
    NotImplementedError,
    EOFError,
    OSError,
    KeyError,
    IndexError,
    struct.error,
    RuntimeError,
    OverflowError,
)


class UnsafeFile(GrilleError):
    """An untrusted file is damaged or hostile; `reason` is French, without the file."""

    def __init__(self, name: str, reason: str, *, damaged: bool = False) -> None:
        super().__init__(f"{name} : {reason}" if name else reason)
        self.name = name
        self.reason = reason
        self.damaged = damaged


@dataclass(frozen=True)
class ZipLimits:
    """Bounds for one archive; the ratio applies to members above `ratio_threshold`."""

    max_members: int = 1000
    max_member_size: int = 20 * MiB
    max_total_size: int = 60 * MiB
    max_ratio: int = 200
    ratio_threshold: int = 1 * MiB


def _shown(member: str) -> str:
    """A member name safe to print: control characters escaped, at most 80 characters."""
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in member)
    return text if len(text) <= 80 else f"{text[:79]}…"


def _mib(size: int) -> str:
    return f"{size / MiB:.0f} Mo"


def _declared_directory(data: bytes) -> tuple[int, int] | None:
    """(entries, central directory size) as zipfile will read them, or None."""
    pos = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if pos < 0 or len(data) - pos < 22:
        return None
    entries, size = struct.unpack_from("<HL", data, pos + 10)
    locator = pos - 20
    if locator >= 56 and data[locator : locator + 4] == b"PK\x06\x07":
        record = locator - 56
        if data[record : record + 4] == b"PK\x06\x06":
            entries, size = struct.unpack_from("<QQ", data, record + 32)
    return entries, size


class SafeZip:
    """An untrusted zip in memory, read member by member within `limits`."""

    def __init__(
        self, data: bytes, name: str, limits: ZipLimits = ZipLimits(), *, strict_names: bool = True
    ) -> None:
        """Open and check the archive; `strict_names=False` accepts `..`/absolute names."""
        self.name = name
        self.limits = limits
        self._read_total = 0
        directory = _declared_directory(data)
        if directory is None:
            raise UnsafeFile(name, _DAMAGED, damaged=True)
        entries, size = directory
        if entries > limits.max_members:
            self._too_many(f"{entries}, maximum {limits.max_members}")
        if size > limits.max_members * _CD_BYTES_PER_MEMBER:  # the count may lie, not the size
            self._too_many(f"plus de {limits.max_members}")
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self._zip.infolist()
        except _ZIP_ERRORS:
            raise UnsafeFile(name, _DAMAGED, damaged=True) from None
        if len(infos) > limits.max_members:
            self._too_many(f"{len(infos)}, maximum {limits.max_members}")
        self._names = [info.filename for info in infos]
        for member in self._names:
            if "\0" in member or (strict_names and _dangerous_name(member)):
                raise UnsafeFile(
                    name, f"nom d'élément dangereux « {_shown(member)} » : {_REFUSED}."
                )
        if strict_names and len(set(self._names)) != len(self._names):
            raise UnsafeFile(name, f"un élément figure deux fois dans l'archive : {_REFUSED}.")
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_total_size:
            raise UnsafeFile(
                name,
                f"contenu décompressé annoncé de {_mib(declared)} (maximum "
                f"{_mib(limits.max_total_size)}) : {_REFUSED} (bombe zip ?).",
            )
        for info in infos:
            self._check_ratio(info, info.file_size)

    def _too_many(self, count: str) -> NoReturn:
        raise UnsafeFile(self.name, f"trop d'éléments dans l'archive ({count}) : {_REFUSED}.")

    def _check_ratio(self, info: zipfile.ZipInfo, size: int) -> None:
        limits = self.limits
        if size > limits.ratio_threshold and size > limits.max_ratio * max(info.compress_size, 1):
            raise UnsafeFile(
                self.name,
                f"« {_shown(info.filename)} » est compressé de façon anormale (plus de "
                f"{limits.max_ratio} fois) : {_REFUSED} (bombe zip ?).",
            )

    def names(self) -> list[str]:
        """Member names, in archive order."""
        return list(self._names)

    def has(self, member: str) -> bool:
        """Whether the archive holds `member`."""
        return member in self._zip.NameToInfo

    def read_optional(self, member: str, max_size: int | None = None) -> bytes | None:
        """Like `read`, but None when the member is missing."""
        return self.read(member, max_size) if self.has(member) else None

    def read(self, member: str, max_size: int | None = None) -> bytes:
        """Decompress one member, counting the actual bytes; KeyError if it is missing."""
        info = self._zip.getinfo(member)
        limit = self.limits.max_member_size
        if max_size is not None:
            limit = min(limit, max_size)
        if info.flag_bits & 0x1:
            raise UnsafeFile(self.name, f"« {_shown(member)} » est protégé par un mot de passe.")
        if info.compress_type not in _SUPPORTED_METHODS:
            raise UnsafeFile(
                self.name, f"« {_shown(member)} » utilise une compression non prise en charge."
            )
        if info.file_size > limit:
            self._too_big(member, limit)
        chunks: list[bytes] = []
        size = 0
        try:
            with self._zip.open(info) as stream:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    self._read_total += len(chunk)
                    if size > limit:
                        self._too_big(member, limit)
                    if self._read_total > self.limits.max_total_size:
                        raise UnsafeFile(
                            self.name,
                            f"contenu décompressé supérieur à {_mib(self.limits.max_total_size)}"
                            f" : {_REFUSED} (bombe zip ?).",
                        )
                    self._check_ratio(info, size)
                    chunks.append(chunk)
        except _ZIP_ERRORS:
            raise UnsafeFile(
                self.name,
                f"fichier endommagé (« {_shown(member)} » illisible) : {_ASK_AGAIN}.",
                damaged=True,
            ) from None
        return b"".join(chunks)

    def _too_big(self, member: str, limit: int) -> NoReturn:
        raise UnsafeFile(
            self.name,
            f"« {_shown(member)} » se décompresse en plus de {_mib(limit)} : {_REFUSED}"
            " (bombe zip ?).",
        )


def _dangerous_name(member: str) -> bool:
    parts = member.split("/")
    return (
        member.startswith("/")
        or "\\" in member
        or ".." in parts
        or re.match(r"^[A-Za-z]:", member) is not None
    )


def check_xml(data: bytes, name: str, part: str) -> None:
    """Refuse an XML part with a DOCTYPE/ENTITY declaration or an exotic encoding.

    OOXML never has one; this blocks billion-laughs and external entities cheaply.
    """
    text = data
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            decoded = data.decode(encoding, errors="replace")
            text = decoded.lstrip("\ufeff").encode("utf-8", errors="replace")
            break
    head = text[:200].decode("latin-1").lstrip()
    if head and not head.startswith("<"):
        raise UnsafeFile(name, f"la partie « {part} » n'est pas du XML lisible : {_REFUSED}.")
    declared = _XML_ENCODING.match(head)
    if declared and declared.group(1).lower() not in _ALLOWED_ENCODINGS:
        raise UnsafeFile(
            name,
            f"la partie « {part} » utilise un codage inhabituel ({declared.group(1)}) : "
            f"{_REFUSED}.",
        )
    if _DECLARATION.search(text):
        raise UnsafeFile(
            name,
            f"la partie « {part} » contient une déclaration DOCTYPE ou ENTITY, jamais présente "
            f"dans un classeur Excel : {_REFUSED}.",
        )

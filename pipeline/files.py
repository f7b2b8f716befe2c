"""File helpers: atomic writes, safe file names, a file's type from its first bytes.

Untrusted zips are read by `safe_zip`.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import IO

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9-]+")
_WINDOWS_RESERVED = {
    "CON", "PRN", "AUX", "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}  # fmt: skip


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` through a temp file in the same folder, then rename.

    A crash leaves either the old file or the new one, never a truncated one.
    `durable=False` skips the fsync, for files that can be made again (workbooks).
    """
    atomic_write_with(path, lambda handle: handle.write(data), durable=durable)


def atomic_write_with(
    path: Path, write: Callable[[IO[bytes]], object], *, durable: bool = True
) -> None:
    """Call `write(handle)` on a temp file next to `path`, fsync it, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if os.name == "posix":
            os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; these are ordinary documents
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_save(path: Path, save: Callable[[Path], object]) -> None:
    """Let a library save to a temp path next to `path` (e.g. `wb.save`), then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        if os.name == "posix":
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")  # a member, an empty zip, spanned
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, .msg, encrypted .xlsx…


def container_of(head: bytes) -> str:
    """What the first bytes of a file say it is, whatever its name: "zip" (.xlsx, .ods,
    .docx… are zips), "ole2" (Excel 97-2003, Outlook .msg, a password-protected .xlsx) or ""
    (anything else: text, CSV, TOML…). The one test of a file's type by its bytes; the
    returns' `returns.sniff` then looks inside."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    return "ole2" if head.startswith(OLE2_MAGIC) else ""


def student_stem(last_name: str, first_name: str, student_id: str) -> str:
    """`NOM_Prenom_ID`: how every file grille writes about a student begins its name (the
    display name `text.display_name`, made safe; the identifier keeps homonyms apart)."""
    return f"{safe_name(last_name).upper()}_{safe_name(first_name)}_{safe_name(student_id)}"


def safe_name(text: str, max_length: int = 40) -> str:
    """ASCII file-name fragment safe on Windows, macOS and Linux ("Lefèvre" → "Lefevre")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE_CHARS.sub("_", ascii_text).strip("_-")[:max_length].strip("_-")
    if not cleaned:
        cleaned = "sans_nom"
    if cleaned.upper() in _WINDOWS_RESERVED:
        cleaned = f"{cleaned}_"
    return cleaned

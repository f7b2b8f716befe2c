"""Files dropped on a page, streamed to disk inside the campaign's output folder.

`receive_files` reads a multipart form as it arrives (never held whole in memory, never
in the system's temp folder: the returns hold personal data) and writes each file in a
folder of its own under `output/.depots/` (hidden: never downloadable), named from the
browser's name only through `returns.clean_name` (its last part, printable: no path can
leave the folder). The body's size limit is the `security.Guard`'s, for multipart forms;
the CSRF field, which our forms send first, is checked before any file is written; the
caller hands the files to the library step, then removes the folder (`Dropped.remove`).
A folder left by a server stopped meanwhile is removed at the next upload.
"""

from __future__ import annotations

import codecs
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from pipeline.returns import clean_name
from pipeline.ui.security import CSRF_FIELD, CsrfRefused, same

UPLOADS = ".depots"  # under output/: one folder per upload, removed once read
MAX_FILES = 2000
MAX_FIELDS = 20
MAX_FIELD_SIZE = 64 * 1024
STALE_SECONDS = 24 * 3600  # a folder older than this was left by a stopped server


class UploadRefused(Exception):
    """The form is not one a page of the interface sends (French message)."""


@dataclass
class Dropped:
    """What a form brought: its text fields, and its files as (name shown, path on disk)."""

    folder: Path
    fields: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, Path]] = field(default_factory=list)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def shown(self, text: str) -> str:
        """`text` with the paths of the dropped files written as the names the teacher gave."""
        for name, path in self.files:
            text = text.replace(os.fsdecode(path), name)
        return text


@dataclass
class _Part:
    """The part of the form being read."""

    header_name: bytes = b""
    header_value: bytes = b""
    disposition: bytes = b""
    name: str = ""
    file: BinaryIO | None = None
    value: bytearray | None = None


def uploads_dir(output_dir: Path) -> Path:
    return output_dir / UPLOADS


def _remove_stale(base: Path) -> None:
    try:
        entries = list(base.iterdir())
    except OSError:
        return
    limit = time.time() - STALE_SECONDS
    for entry in entries:
        try:
            if entry.is_dir() and entry.stat().st_mtime < limit:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def _decode(raw: bytes, charset: str) -> str:
    return raw.decode(charset, "replace")


async def receive_files(request: Request, output_dir: Path, file_field: str, csrf: str) -> Dropped:
    """Stream the multipart form of `request` to a new folder under `output/.depots/`;
    the files of the field `file_field` (an empty file input sends no file). The form's
    CSRF field must come before its files and be `csrf` (`CsrfRefused`), as our pages
    send it: nothing of a forged form is written."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise UploadRefused("Formulaire inattendu : envoyez les fichiers depuis la page de grille.")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "utf-8"
    base = uploads_dir(output_dir)
    base.mkdir(parents=True, exist_ok=True)
    _remove_stale(base)
    dropped = Dropped(base / secrets.token_hex(8))
    dropped.folder.mkdir()
    current = _Part()
    taken: set[str] = set()  # names given in the drop's folder (case ignored, as on Windows)

    def on_part_begin() -> None:
        nonlocal current
        current = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        current.header_name += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        current.header_value += data[start:end]

    def on_header_end() -> None:
        if current.header_name.lower() == b"content-disposition":
            current.disposition = current.header_value
        current.header_name, current.header_value = b"", b""

    def on_headers_finished() -> None:
        _, options = parse_options_header(current.disposition)
        current.name = _decode(options.get(b"name", b""), charset)
        if b"filename" not in options:
            if len(dropped.fields) >= MAX_FIELDS:
                raise UploadRefused("Formulaire inattendu : trop de champs.")
            current.value = bytearray()
            return
        if current.name != file_field:
            raise UploadRefused("Formulaire inattendu : un fichier dans un champ inconnu.")
        if not same(dropped.fields.get(CSRF_FIELD), csrf):  # no file kept from a forged form
            raise CsrfRefused
        given = _decode(options[b"filename"], charset)
        if not given:  # an empty file input: nothing to keep
            return
        if len(dropped.files) >= MAX_FILES:
            raise UploadRefused(
                f"Trop de fichiers d'un coup (plus de {MAX_FILES}) : déposez-les en "
                "plusieurs fois, ou dans un fichier .zip."
            )
        shown = clean_name(given)
        name = _disk_name(shown)
        folder = dropped.folder
        if name.casefold() in taken:  # two files may share a name: a folder of its own,
            folder = dropped.folder / f".{len(dropped.files) + 1}"  # never a file's name
            folder.mkdir()
        taken.add(name.casefold())
        path = folder / name
        current.file = path.open("xb")
        dropped.files.append((shown, path))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if current.file is not None:
            current.file.write(data[start:end])
        elif current.value is not None:
            if len(current.value) + end - start > MAX_FIELD_SIZE:
                raise UploadRefused("Formulaire inattendu : un champ trop long.")
            current.value += data[start:end]

    def on_part_end() -> None:
        if current.file is not None:
            current.file.close()
            current.file = None
        elif current.value is not None:
            dropped.fields[current.name] = _decode(bytes(current.value), charset)

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        dropped.remove()
        raise UploadRefused(
            "Envoi incomplet ou mal formé : recommencez l'envoi du fichier."
        ) from exc
    except BaseException:
        dropped.remove()
        raise
    finally:
        if current.file is not None:
            current.file.close()
    return dropped


def _disk_name(shown: str) -> str:
    """The name a dropped file gets on disk: the name shown, cut to fit the file system
    (255 bytes), never hidden (a name starting with a dot)."""
    name = shown.lstrip(".") or "sans_nom"
    stem, suffix = os.path.splitext(name)
    while len(os.fsencode(stem + suffix)) > 200 and stem:
        stem = stem[:-1]
    return (stem or "sans_nom") + suffix

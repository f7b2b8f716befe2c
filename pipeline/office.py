"""The one way grille runs LibreOffice (`soffice --headless --convert-to`).

LibreOffice is a large program fed with files from outside: a 1 KB crafted .ods can make
it grow past 4 GB, it survives a Ctrl-C (it runs in a session of its own) and it writes
into `$HOME/.config`, `$HOME/.cache` and the temp folder. So every conversion here:
- runs in a folder of its own (under the system temp folder) that holds its HOME, TMPDIR,
  LibreOffice profile, input and output, and nothing else is written;
- has a memory cap (RLIMIT_AS, set in the child before LibreOffice starts) and a time limit;
- runs in a process group of its own, killed whole on every way out (done, failed, timed
  out, Ctrl-C, SIGTERM under `sigterm_as_exit`), after which its folder is removed.

`convert` and `convert_all` put the result next to the caller's files (atomically);
`Conversion` runs one in the background, so that a batch uses every core (each has its
own profile: two LibreOffice instances cannot share one).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType, TracebackType

from pipeline.errors import GrilleError
from pipeline.files import atomic_write_bytes

MiB = 1024 * 1024
DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY_MB = 2048
MAX_OUTPUT = 200 * MiB
_KILL_WAIT = 5.0  # seconds to see a killed process group go
_POSIX = os.name == "posix"
# Runs in the child, before LibreOffice: cap its address space, then become LibreOffice.
# (A trampoline rather than `preexec_fn`, which is unsafe when other threads run.)
_LIMITED_EXEC = """\
import os, sys
try:
    import resource
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
except (ImportError, ValueError, OSError):
    pass
os.execv(sys.argv[2], sys.argv[2:])
"""
_INSTALL = "installez LibreOffice (https://fr.libreoffice.org)"


class OfficeError(GrilleError):
    """A conversion gave no file. `code`: missing, timeout, memory or failed; French text."""

    def __init__(self, reason: str, *, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def find_soffice() -> str | None:
    """The LibreOffice program, or None when it is not installed."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def _seconds(value: float) -> str:
    """A duration as French writes it: « 60 », « 0,5 »."""
    return f"{value:g}".replace(".", ",")


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


_handler_lock = threading.Lock()
_handler_users = 0


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While active, SIGTERM raises SystemExit(143) in the main thread instead of ending
    the process at once, so that every `finally` (and so every conversion's clean-up)
    runs. Does nothing outside the main thread or when SIGTERM already has a handler."""
    global _handler_users
    mine = False
    if threading.current_thread() is threading.main_thread():
        with _handler_lock:
            if _handler_users:
                _handler_users += 1
                mine = True
            elif signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _raise_exit)
                _handler_users = 1
                mine = True
    try:
        yield
    finally:
        if mine:
            with _handler_lock:
                _handler_users -= 1
                if not _handler_users:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pipe_name(profile_url: str) -> str:
    """The name of the socket LibreOffice makes for a profile (md5 of the UTF-16 URL,
    each byte in hex without padding, as desktop/source/app/officeipcthread.cxx does)."""
    digest = hashlib.md5(profile_url.encode("utf-16-le"), usedforsecurity=False).digest()
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return f"OSL_PIPE_{uid}_SingleOfficeIPC_" + "".join(format(byte, "x") for byte in digest)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


_running: set[Conversion] = set()
_running_lock = threading.Lock()


def stop_all() -> None:
    """Stop every conversion still running in this process and remove its folder (also
    run at exit: a conversion whose owner was abandoned by an exception does not
    outlive grille)."""
    with _running_lock:
        conversions = list(_running)
    for conversion in conversions:
        conversion.close()


atexit.register(stop_all)


class Conversion:
    """One LibreOffice run converting `inputs` (file name, bytes or a path to copy) to
    `target_format` (as `--convert-to` takes it: "xlsx", "pdf", "xlsx:Calc MS Excel 2007
    XML"…), started at once, in the background. Use it in a `with` block: leaving the
    block always stops LibreOffice and removes every file it made."""

    def __init__(
        self,
        inputs: Sequence[tuple[str, bytes | Path]],
        target_format: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        memory_mb: int = DEFAULT_MEMORY_MB,
        soffice: str | None = None,
    ) -> None:
        program = soffice or find_soffice()
        if program is None:
            raise OfficeError(f"LibreOffice est introuvable : {_INSTALL}.", code="missing")
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.extension = target_format.split(":", 1)[0].lower()
        self.process: subprocess.Popen[bytes] | None = None
        self.owner = os.getpid()  # a forked worker must not touch its parent's conversions
        self.closed = False
        self.folder = Path(tempfile.mkdtemp(prefix="grille-office-"))
        self.names: list[str] = []
        try:
            self._start(program, inputs, target_format)
        except BaseException:
            self.close()
            raise
        self.deadline = time.monotonic() + timeout

    def _start(
        self, program: str, inputs: Sequence[tuple[str, bytes | Path]], target_format: str
    ) -> None:
        home, tmp, source, out = (self.folder / name for name in ("home", "tmp", "in", "out"))
        for folder in (home, tmp, source, out):
            folder.mkdir(mode=0o700)
        for index, (name, content) in enumerate(inputs):
            suffix = Path(name).suffix if Path(name).suffix.isascii() else ""
            stored = source / f"document{index}{suffix.lower()[:10]}"
            if isinstance(content, bytes):
                stored.write_bytes(content)
            else:
                shutil.copyfile(content, stored)
            self.names.append(stored.name)
        self.profile_url = (self.folder / "profile").as_uri()
        arguments = [
            "--headless", "--invisible", "--nologo", "--norestore", "--nolockcheck",
            "--nodefault", f"-env:UserInstallation={self.profile_url}",
            "--convert-to", target_format, "--outdir", str(out),
            *(str(source / name) for name in self.names),
        ]  # fmt: skip
        command = [program, *arguments]
        if _POSIX:
            limit = str(self.memory_mb * MiB)
            command = [sys.executable, "-I", "-S", "-c", _LIMITED_EXEC, limit, *command]
        env = dict(os.environ)
        env.update(
            HOME=str(home),
            TMPDIR=str(tmp),
            TMP=str(tmp),
            TEMP=str(tmp),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_CACHE_HOME=str(home / ".cache"),
            XDG_DATA_HOME=str(home / ".local" / "share"),
            XDG_RUNTIME_DIR=str(tmp),
        )
        with (self.folder / "messages.txt").open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                env=env,
                start_new_session=_POSIX,
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            )
        with _running_lock:
            _running.add(self)

    def __enter__(self) -> Conversion:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The process id of the LibreOffice launcher (its process group id too)."""
        return None if self.process is None else self.process.pid

    def finished(self) -> bool:
        """Whether waiting would not block: LibreOffice ended, or its time is up."""
        if self.process is None or self.process.poll() is not None:
            return True
        return time.monotonic() >= self.deadline

    def wait(self) -> list[Path]:
        """Wait for LibreOffice (until the time limit); the converted files, one per input,
        in order, inside this conversion's folder (gone once it is closed)."""
        if self.closed or self.process is None:
            raise OfficeError("conversion LibreOffice déjà arrêtée.", code="failed")
        try:
            self.process.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.close()
            raise OfficeError(
                f"LibreOffice n'a pas fini la conversion en {_seconds(self.timeout)} s : arrêtée "
                "(fichier trop lourd ou piégé ?).",
                code="timeout",
            ) from None
        self._stop_group()
        produced = [
            self.folder / "out" / f"{Path(name).stem}.{self.extension}" for name in self.names
        ]
        missing = [path for path in produced if not path.is_file()]
        if missing:
            raise self._failure()
        return produced

    def read(self, produced: Path, max_size: int = MAX_OUTPUT) -> bytes:
        """The bytes of a file `wait` returned, refused above `max_size`."""
        with produced.open("rb") as handle:
            data = handle.read(max_size + 1)
        if len(data) > max_size:
            raise OfficeError(
                f"fichier converti par LibreOffice trop volumineux (plus de {max_size // MiB} Mo).",
                code="failed",
            )
        return data

    def _failure(self) -> OfficeError:
        try:
            with (self.folder / "messages.txt").open("rb") as log:
                messages = log.read(64 * 1024).decode("utf-8", "replace")
        except OSError:
            messages = ""
        memory = ("bad_alloc", "Cannot allocate", "out of memory", "failed to map")
        returncode = self.process.returncode if self.process is not None else None
        if any(text in messages for text in memory) or returncode in (-6, -9, -11, 134, 137):
            return OfficeError(
                f"LibreOffice a dépassé la mémoire permise ({self.memory_mb} Mo) et s'est "
                "arrêté : fichier trop lourd ou piégé.",
                code="memory",
            )
        return OfficeError(
            "LibreOffice n'a rien produit (fichier illisible pour lui ?).", code="failed"
        )

    def _stop_group(self) -> None:
        """Kill whatever is left of LibreOffice's process group, and reap the launcher."""
        process = self.process
        if process is None:
            return
        if _POSIX:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_KILL_WAIT)
        if _POSIX:
            deadline = time.monotonic() + _KILL_WAIT
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def close(self) -> None:
        """Stop LibreOffice (the whole group) and remove the folder; safe to call twice."""
        if self.closed or os.getpid() != self.owner:
            return
        self.closed = True
        try:
            self._stop_group()
        finally:
            with _running_lock:
                _running.discard(self)
            for folder in (Path("/tmp"), Path("/var/tmp")):
                pipe = folder / _pipe_name(getattr(self, "profile_url", ""))
                if pipe.is_socket():
                    pipe.unlink(missing_ok=True)
            shutil.rmtree(self.folder, ignore_errors=True)


def convert_all(
    sources: Sequence[Path],
    target_format: str,
    out_dir: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> list[Path]:
    """Convert `sources` in one LibreOffice run; each result goes to `out_dir` under the
    source's name with the new extension (written atomically). Raises `OfficeError`."""
    with (
        sigterm_as_exit(),
        Conversion(
            [(source.name, source) for source in sources],
            target_format,
            timeout=timeout,
            memory_mb=memory_mb,
        ) as conversion,
    ):
        produced = conversion.wait()
        targets = []
        for source, path in zip(sources, produced, strict=True):
            target = out_dir / f"{source.stem}.{conversion.extension}"
            atomic_write_bytes(target, conversion.read(path))
            targets.append(target)
    return targets


def convert(
    source: Path,
    target_format: str,
    out_dir: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> Path:
    """Convert `source` to `target_format`; the result is `out_dir/<stem>.<extension>`."""
    return convert_all([source], target_format, out_dir, timeout=timeout, memory_mb=memory_mb)[0]


def convert_bytes(
    data: bytes,
    suffix: str,
    target_format: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    memory_mb: int = DEFAULT_MEMORY_MB,
    max_size: int = MAX_OUTPUT,
) -> bytes:
    """The bytes of `data` (a file ending in `suffix`) converted to `target_format`;
    nothing is written outside the conversion's own folder."""
    with (
        sigterm_as_exit(),
        Conversion(
            [(f"document{suffix}", data)], target_format, timeout=timeout, memory_mb=memory_mb
        ) as conversion,
    ):
        [produced] = conversion.wait()
        return conversion.read(produced, max_size)

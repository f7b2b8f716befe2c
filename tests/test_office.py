"""LibreOffice conversions: refused when absurd, bounded, isolated, cleaned up on every exit."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest

from pipeline import office
from pipeline.errors import Problem
from pipeline.returns import MAX_ANNOUNCED_CELLS, Candidate, announced_cells, gather
from tests.hostile import flat_ods, ods_bytes, ods_content, xlsx_bytes

needs_soffice = pytest.mark.skipif(office.find_soffice() is None, reason="soffice absent")
ROOT = Path(__file__).resolve().parent.parent


def cell(text: str, repeat: int = 1) -> str:
    repeated = f' table:number-columns-repeated="{repeat}"' if repeat > 1 else ""
    return (
        f'<table:table-cell office:value-type="string"{repeated}><text:p>{text}</text:p>'
        "</table:table-cell>"
    )


def row(cells: str, repeat: int | str = 1) -> str:
    repeated = f' table:number-rows-repeated="{repeat}"' if repeat != 1 else ""
    return f"<table:table-row{repeated}>{cells}</table:table-row>"


# What LibreOffice itself writes after the last used row: empty rows repeated to the end
# of the sheet, each an empty cell repeated across every column (it costs it nothing).
LIBREOFFICE_TAIL = row('<table:table-cell table:number-columns-repeated="16384"/>', 1048570)
CRAFTED = row(cell("1", 10**9), 10**9)  # ~10^18 cells with content, in 1 KB


def processes(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose command line has `marker`."""
    lines = subprocess.run(["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True)
    found = []
    for line in lines.stdout.splitlines():
        pid, state, command = line.split(None, 2)
        if marker in command and not state.startswith("Z") and int(pid) != os.getpid():
            found.append((int(pid), command))
    return found


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp folder of this test's own, where conversions make theirs."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def fake_soffice(tmp_path: Path, *, seconds: float = 0.0) -> tuple[Path, Path]:
    """A stand-in for LibreOffice that logs each start and end in a file, waits
    `seconds`, and writes an .xlsx whose A1 is the first text of the .ods it is given."""
    log = tmp_path / "soffice.log"
    script = tmp_path / "soffice"
    script.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            f"""
            import re, sys, time, zipfile
            import openpyxl
            args = sys.argv[1:]
            out, source = args[args.index("--outdir") + 1], args[-1]
            with open({str(log)!r}, "a") as log:
                log.write(f"start {{time.monotonic()}}\\n")
            time.sleep({seconds})
            content = zipfile.ZipFile(source).read("content.xml").decode()
            book = openpyxl.Workbook()
            book.active["A1"] = re.search("<text:p>(.*?)</text:p>", content).group(1)
            stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            book.save(f"{{out}}/{{stem}}.xlsx")
            with open({str(log)!r}, "a") as log:
                log.write(f"end {{time.monotonic()}}\\n")
            """
        )
    )
    script.chmod(0o755)
    return script, log


def most_at_once(log: Path) -> int:
    running = most = 0
    events = sorted(
        (float(stamp), kind) for kind, stamp in re.findall(r"(start|end) (\S+)", log.read_text())
    )
    for _, kind in events:
        running += 1 if kind == "start" else -1
        most = max(most, running)
    return most


def test_announced_cells__count_repeated_cells_with_content_as_libreoffice_expands_them() -> None:
    def count(rows: str) -> int:
        return announced_cells(io.BytesIO(ods_content(rows)))

    assert count(row(cell("Dupont") + cell("3")) + LIBREOFFICE_TAIL) == 2
    assert count(row(cell("1", 100), 300)) == 30_000
    assert count(row(cell("1", 20_000), 2_000_000)) > MAX_ANNOUNCED_CELLS
    assert count(row(cell("1", 10), "9" * 5000)) > MAX_ANNOUNCED_CELLS  # not read as 1
    assert count(CRAFTED) > MAX_ANNOUNCED_CELLS


def test_a_crafted_ods__is_refused_without_starting_libreoffice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, log = fake_soffice(tmp_path)
    monkeypatch.setattr(office.shutil, "which", lambda name: str(script))
    crafted = tmp_path / "piege.ods"
    crafted.write_bytes(ods_bytes(ods_content(CRAFTED)))
    assert len(crafted.read_bytes()) < 1500
    flat = tmp_path / "piege.fods"
    flat.write_bytes(flat_ods(CRAFTED))
    problems = list(gather([crafted, flat]))
    assert [(p.code, p.file) for p in problems if isinstance(p, Problem)] == [
        ("too_many_cells", str(crafted)),
        ("too_many_cells", str(flat)),
    ]
    assert problems[0].message == (  # type: ignore[union-attr]
        "ce classeur annonce plus de 2 000 000 cellules remplies (lignes et cellules répétées) "
        ": fichier refusé par sécurité, il n'est pas converti. Demandez au tuteur de renvoyer "
        "le classeur au format .xlsx."
    )
    assert not log.exists()  # LibreOffice was never started
    legit = tmp_path / "dupont.ods"
    legit.write_bytes(ods_bytes(ods_content(row(cell("Dupont")) + LIBREOFFICE_TAIL)))
    [candidate] = gather([legit])
    assert isinstance(candidate, Candidate) and log.exists()  # the same path does convert


def test_an_ods_with_an_entity_declaration__is_refused_before_libreoffice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, log = fake_soffice(tmp_path)
    monkeypatch.setattr(office.shutil, "which", lambda name: str(script))
    laughs = ods_content(row(cell("&lol;"))).replace(
        b"?>\n", b'?>\n<!DOCTYPE x [<!ENTITY lol "lollollollollol">]>\n', 1
    )
    path = tmp_path / "rire.ods"
    path.write_bytes(ods_bytes(laughs))
    [problem] = gather([path])
    assert isinstance(problem, Problem) and problem.code == "unsafe_file"
    assert "DOCTYPE ou ENTITY" in problem.message
    assert not log.exists()


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_batch_of_ods__converts_jobs_at_a_time_and_keeps_the_file_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path, jobs: int
) -> None:
    script, log = fake_soffice(tmp_path, seconds=1.0)
    monkeypatch.setattr(office.shutil, "which", lambda name: str(script))
    folder = tmp_path / "retours"
    folder.mkdir()
    names = ["Abadie", "Bernard", "Chevallier", "Da Silva"]
    for name in names:
        (folder / f"{name}.ods").write_bytes(ods_bytes(ods_content(row(cell(name)))))
    (folder / "Zola.xlsx").write_bytes(xlsx_bytes("Zola"))
    started = time.monotonic()
    items = list(gather([folder], jobs=jobs))
    elapsed = time.monotonic() - started
    assert [(c.name, c.converted_from) for c in items if isinstance(c, Candidate)] == [
        *((f"{name}.ods", "ods") for name in names),
        ("Zola.xlsx", ""),
    ]
    read = [openpyxl.load_workbook(io.BytesIO(c.data)).active["A1"].value for c in items]  # type: ignore[union-attr]
    assert read == [*names, "Zola"]
    assert most_at_once(log) == jobs
    assert elapsed >= 4 / jobs
    assert list(private_tmp.iterdir()) == []


def test_a_conversion_that_outlives_its_time__is_killed_with_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path
) -> None:
    script = tmp_path / "soffice"
    script.write_text("#!/bin/sh\nsleep 41.25 &\nexec sleep 42.25\n")
    script.chmod(0o755)
    monkeypatch.setattr(office.shutil, "which", lambda name: str(script))
    conversion = office.Conversion([("a.ods", b"x")], "xlsx", timeout=0.5)
    with pytest.raises(office.OfficeError) as caught, conversion:
        assert wait_until(lambda: len(processes("sleep 41.25") + processes("sleep 42.25")) == 2, 10)
        conversion.wait()
    folder = conversion.folder
    assert (caught.value.code, str(caught.value)) == (
        "timeout",
        "LibreOffice n'a pas fini la conversion en 0,5 s : arrêtée (fichier trop lourd ou "
        "piégé ?).",
    )
    assert processes("sleep 41.25") == processes("sleep 42.25") == []
    assert not folder.exists()
    assert list(private_tmp.iterdir()) == []


def test_without_libreoffice__a_french_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(office.shutil, "which", lambda name: None)
    with pytest.raises(office.OfficeError) as caught:
        office.convert_bytes(b"x", ".ods", "xlsx")
    assert (caught.value.code, str(caught.value)) == (
        "missing",
        "LibreOffice est introuvable : installez LibreOffice (https://fr.libreoffice.org).",
    )


@pytest.mark.soffice
@needs_soffice
def test_a_conversion__writes_nothing_outside_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path
) -> None:
    home, tmp, out = tmp_path / "home", private_tmp, tmp_path / "out"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    source = tmp_path / "dupont.xlsx"
    source.write_bytes(xlsx_bytes("Dupont"))
    with office.Conversion([(source.name, source)], "ods") as conversion:
        assert conversion.folder.parent == tmp
        [produced] = conversion.wait()
        assert produced.read_bytes().startswith(b"PK")
        pipe = Path("/tmp") / office._pipe_name(conversion.profile_url)
    assert not pipe.exists()
    assert office.convert(source, "ods", out) == out / "dupont.ods"
    assert [p.name for p in out.iterdir()] == ["dupont.ods"]
    assert list(home.iterdir()) == list(tmp.iterdir()) == []  # no .config, no .cache, no lu*.tmp


@pytest.mark.soffice
@needs_soffice
def test_a_conversion_over_the_memory_cap__fails_in_french_and_leaves_nothing(
    private_tmp: Path,
) -> None:
    started = time.monotonic()
    with pytest.raises(office.OfficeError) as caught:
        office.convert_bytes(xlsx_bytes(), ".xlsx", "ods", memory_mb=64)
    assert caught.value.code == "memory"
    assert str(caught.value) == (
        "LibreOffice a dépassé la mémoire permise (64 Mo) et s'est arrêté : fichier trop lourd "
        "ou piégé."
    )
    assert time.monotonic() - started < 30
    assert processes(str(private_tmp)) == []
    assert list(private_tmp.iterdir()) == []


@pytest.mark.soffice
@needs_soffice
@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_grille_stopped_during_a_conversion__leaves_no_libreoffice_and_no_folder(
    tmp_path: Path, sent: signal.Signals
) -> None:
    """A large but legal .ods (300,000 cells): grille is stopped while LibreOffice
    converts it; nothing of that LibreOffice may survive, not even its folder."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    big = tmp_path / "gros.ods"
    big.write_bytes(ods_bytes(ods_content(row(cell("1", 100), 3000))))
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from pipeline.returns "
         "import gather; print(list(gather([Path(sys.argv[1])])))", str(big)],
        cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert wait_until(lambda: any("soffice.bin" in c for _, c in processes(str(tmp))), 60)
        [command] = [c for _, c in processes(str(tmp)) if "soffice.bin" in c]
        profile = re.search(r"-env:UserInstallation=(\S+)", command)
        assert profile is not None
        child.send_signal(sent)
        child.wait(timeout=30)
        assert child.returncode != 0
        assert wait_until(lambda: processes(str(tmp)) == [], 20)
        assert list(tmp.iterdir()) == []
        assert not (Path("/tmp") / office._pipe_name(profile.group(1))).exists()
    finally:
        if child.poll() is None:
            child.kill()
        for pid, _ in processes(str(tmp)):  # leave no LibreOffice behind, even on failure
            os.kill(pid, signal.SIGKILL)


def test_a_conversion_left_running_when_grille_exits__is_stopped_at_exit(
    tmp_path: Path, private_tmp: Path
) -> None:
    """An exception may leave a conversion without its owner (an abandoned generator):
    grille's exit still stops LibreOffice and removes its folder."""
    script = tmp_path / "soffice"
    script.write_text("#!/bin/sh\nexec sleep 43.75\n")
    script.chmod(0o755)
    code = (
        "import shutil; from pipeline import office\n"
        f"shutil.which = lambda name: {str(script)!r}\n"
        "abandoned = office.Conversion([('a.ods', b'x')], 'xlsx', timeout=600)\n"
        "raise SystemExit(f'interrompu {abandoned.folder}')\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "TMPDIR": str(private_tmp)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert child.returncode == 1
    assert child.stderr.startswith(f"interrompu {private_tmp}/grille-office-")
    assert processes("sleep 43.75") == []
    assert list(private_tmp.iterdir()) == []

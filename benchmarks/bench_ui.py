"""Benchmark of `grille ui` pages (not a test): python benchmarks/bench_ui.py [N]

Makes a campaign of N students (default 1,000) in 4 classes as bench_collect.py does,
fills and collects every workbook (one in five with an answer missing: incomplete), then
times, server-side through starlette's TestClient (the whole application: guard, routing,
database, templates), the median and the 90th percentile of repeated requests:
- the status page « Suivi » with every student, and filtered by one class;
- a student's page (an incomplete one, with its problems and returns);
- the home page;
each as it is most of the time (the statuses kept from the previous request) and just
after the database changed (another connection commits before each request: the statuses
are read again);
- saving the team's appreciation (POST: run lock, database write, redirect);
- the rewrite of suivi.xlsx the interface then does in the background (with a backup);
- 200 returns (kept aside: the pages are measured with 800 returned) collected by
  `grille collect` on one copy of the campaign, and on another copy dropped on the page
  « Retours » (its real route, `views_returns.DROP`: one multipart form, streamed to disk
  under the upload limit by `uploads.receive_files`, then the step of `grille collect`,
  `collect_step`, in a job, the job page polled once a second as the page does) until the
  job ended (it rewrites suivi.xlsx and backs the database up at its end, as the command
  does), then any rewrite still due (none expected). The two run one after the other on
  fresh copies, `ROUNDS` times (one run varies by ± 10 %): the medians, and each round's
  gap.
  The fork server the interface's workers come from is started first, as `grille ui`
  does when it starts (`parallel.start_worker_server`).
Targets: ≤ 150 ms for the status page and a student page; the upload and collection of
200 returns through the interface ≤ 10 % more than `grille collect`.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_collect import fill_package, write_roster

from pipeline.cli import cli
from pipeline.grid import load_grid
from pipeline.parallel import default_jobs, start_worker_server
from pipeline.settings import Workspace
from pipeline.ui.app import create_app, interface_of
from pipeline.ui.security import Secrets
from pipeline.ui.views_returns import DROP, FILE_FIELD
from pipeline.workbook import plan_layout

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PORT = 8765


def make_returns(root: Path, inbox: Path) -> None:
    """Every workbook filled as a tutor would; one in five with a rating left out."""
    grid = load_grid()
    layout = plan_layout(grid)
    sheets = ["Instructions", *(s.sheet for s in grid.sections)]
    sheets += [grid.global_evaluation.sheet, grid.closing.sheet]
    sheet_paths = {name: f"xl/worksheets/sheet{i}.xml" for i, name in enumerate(sheets, start=1)}
    values: dict[tuple[str, str], str] = {}
    for i, ref in enumerate(layout.criteria.values()):
        values[(ref.sheet, ref.cell)] = grid.scale_codes[i % 4]
    for dim_id, ref in layout.dimensions.items():
        dimension = next(d for d in grid.global_evaluation.dimensions if d.id == dim_id)
        values[(ref.sheet, ref.cell)] = str(dimension.values[-1])
    values[(layout.date.sheet, layout.date.cell)] = "20/02/2026"
    values[(layout.signature.sheet, layout.signature.cell)] = "Tuteur"
    first = next(iter(layout.criteria.values()))
    inbox.mkdir()
    for i, path in enumerate(sorted((root / "output" / "classeurs").rglob("*.xlsx"))):
        mine = dict(values)
        mine[(layout.appreciation.sheet, layout.appreciation.cell)] = f"Très bon stage n° {i}."
        if i % 5 == 0:
            del mine[(first.sheet, first.cell)]
        (inbox / f"retour_{i:04d}.xlsx").write_bytes(
            fill_package(path.read_bytes(), sheet_paths, mine)
        )


ASIDE = 200  # returns kept out of the first collection, collected by both front ends


ROUNDS = 5  # of the comparison: collecting 200 files varies by ± 10 % from one run to the next


def collect_by_cli(campaign: Path, aside: Path) -> float:
    """Seconds `grille collect` takes on the returns of `aside` (suivi.xlsx included)."""
    start = time.perf_counter()
    result = CliRunner().invoke(
        cli, ["--dir", str(campaign), "collect", str(aside)], catch_exceptions=False
    )
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.output[-2000:]
    assert f"{ASIDE} retour(s) enregistré(s)" in result.output, result.output[-500:]
    return seconds


def collect_by_ui(campaign: Path, aside: Path) -> tuple[float, float, float]:
    """Seconds the interface takes on the returns of `aside`: (upload, upload and collection
    until the job ended, a rewrite of suivi.xlsx still due after it)."""
    secrets = Secrets.new()
    app = create_app(Workspace(campaign), secrets, PORT, tracking_delay=3600)
    client = TestClient(app, base_url=f"http://127.0.0.1:{PORT}")
    assert client.get(f"/?token={secrets.token}").status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/retours").text)
    assert csrf is not None
    files = [
        (FILE_FIELD, (path.name, path.read_bytes(), "application/octet-stream"))
        for path in sorted(aside.iterdir())
    ]
    ui = interface_of(app)
    start = time.monotonic()
    response = client.post(DROP, data={"csrf": csrf.group(1)}, files=files, follow_redirects=False)
    assert response.status_code == 303, response.text
    uploaded = time.monotonic() - start
    job = ui.jobs.get(response.headers["location"].rsplit("/", 1)[-1])
    assert job is not None
    polled = start
    while job.running:
        time.sleep(0.01)
        if time.monotonic() - polled >= 1:  # the page polls every second (htmx)
            client.get(f"/travail/{job.job_id}/etat")
            polled = time.monotonic()
    assert job.ended is not None
    collected = job.ended - start  # when the job ended, not when the next poll saw it
    summary = [text for _, text in job.outcome.lines if "retour(s) enregistré(s)" in text]
    assert summary, job.outcome.lines
    assert summary[-1].startswith(f"{ASIDE} retour(s) enregistré(s)"), summary
    start = time.monotonic()
    assert ui.access.refresher.flush(), ui.access.refresher.problem
    rewrite = time.monotonic() - start
    ui.access.close()
    return uploaded, collected, rewrite


def compare_collect(root: Path, aside: Path, tmp: Path) -> None:
    """`grille collect` and the interface on copies of the campaign, the same files, one
    after the other, `ROUNDS` times: the medians."""
    by_cli, by_ui, upload, job, rewrite, extra = [], [], [], [], [], []
    for round_ in range(ROUNDS):
        copies = tmp / f"tour_{round_}"
        shutil.copytree(root, copies / "par_cli")
        shutil.copytree(root, copies / "par_ui")
        by_cli.append(collect_by_cli(copies / "par_cli", aside))
        sent, collected, rewritten = collect_by_ui(copies / "par_ui", aside)
        upload.append(sent)
        job.append(collected)
        rewrite.append(rewritten)
        by_ui.append(collected + rewritten)
        extra.append(100 * (by_ui[-1] - by_cli[-1]) / by_cli[-1])
        shutil.rmtree(copies)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:6.0f} ms"

    print(f"{ASIDE} retours (mêmes fichiers), médianes de {ROUNDS} tours :")
    for label, values in (
        (f"grille collect ({default_jobs()} processus, suivi.xlsx compris)", by_cli),
        ("interface, envoi", upload),
        ("interface, envoi, collecte, suivi.xlsx : jusqu'à la fin", job),
        ("interface, réécriture encore due ensuite", rewrite),
        ("interface en tout", by_ui),
    ):
        print(f"  {label:<56}: {ms(values)}")
    shown = ", ".join(f"{value:+.1f} %" for value in extra)
    print(
        f"  écart interface / grille collect : médiane {statistics.median(extra):+.1f} % "
        f"(tours : {shown})"
    )


def timed(call: Callable[[], object], runs: int) -> tuple[float, float]:
    """(median, 90th percentile) in milliseconds of `runs` calls, after one warm-up."""
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    runs = 30
    runner = CliRunner()
    start_worker_server()  # as `grille ui` does when it starts
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "campagne"
        assert runner.invoke(cli, ["init", str(root), "--school", "Lycée Banc"]).exit_code == 0
        roster = root / "liste.csv"
        write_roster(roster, count)
        result = runner.invoke(cli, ["--dir", str(root), "generate", "--roster", str(roster)])
        assert result.exit_code == 0, result.output
        inbox = Path(tmp) / "retours"
        make_returns(root, inbox)
        aside = Path(tmp) / "retours_a_part"
        aside.mkdir()
        for path in sorted(inbox.iterdir())[-ASIDE:]:
            path.rename(aside / path.name)
        result = runner.invoke(cli, ["--dir", str(root), "collect", str(inbox)])
        assert result.exit_code == 0, result.output[-2000:]

        secrets = Secrets.new()
        app = create_app(Workspace(root), secrets, PORT, tracking_delay=3600)
        client = TestClient(app, base_url=f"http://127.0.0.1:{PORT}")
        assert client.get(f"/?token={secrets.token}").status_code == 200
        page = client.get("/suivi?statut=incomplete").text
        student = re.findall(r'href="/stagiaire/(\w+)"', page)[0]
        rows = client.get("/suivi").text.count('<th scope="row">')
        assert rows == count, rows
        student_page = client.get(f"/stagiaire/{student}")
        assert student_page.status_code == 200 and "manquant" in student_page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', student_page.text)
        assert csrf is not None

        print(
            f"{count} stagiaires ({count - ASIDE} retours collectés), {runs} requêtes par page "
            "(médiane / 90e centile) :"
        )
        other = sqlite3.connect(root / "output" / "grille.sqlite", isolation_level=None)
        serial = iter(range(10**6))

        def change() -> None:  # what a command run meanwhile does: a commit elsewhere
            other.execute(
                "UPDATE students SET updated_at = ? WHERE rowid = 1", (f"{next(serial)}",)
            )

        for label, path in (
            ("Suivi, tous les stagiaires", "/suivi"),
            ("Suivi, une classe", "/suivi?classe=BTS+MUC+1"),
            ("page d'un stagiaire", f"/stagiaire/{student}"),
            ("accueil", "/"),
        ):
            median, p90 = timed(lambda path=path: client.get(path), runs)
            print(f"  {label:<28}: {median:6.1f} ms / {p90:6.1f} ms")
            change()
            changed = []
            for _ in range(runs // 3):
                change()
                start = time.perf_counter()
                client.get(path)
                changed.append((time.perf_counter() - start) * 1000)
            changed.sort()
            print(
                f"  {'  base modifiée juste avant':<28}: {statistics.median(changed):6.1f} ms / "
                f"{changed[int(len(changed) * 0.9) - 1]:6.1f} ms"
            )
        other.close()
        shown = [""]

        def save() -> None:
            text = f"Appréciation {next(serial)}"
            response = client.post(
                f"/stagiaire/{student}/notes",
                data={
                    "csrf": csrf.group(1),
                    "shown_team_appreciation": shown[0],
                    "shown_notes": "",
                    "team_appreciation": text,
                    "notes": "",
                },
                follow_redirects=False,
            )
            assert response.status_code == 303, response.text
            shown[0] = text

        median, p90 = timed(save, 10)
        print(f"  {'enregistrer une appréciation':<28}: {median:6.1f} ms / {p90:6.1f} ms")
        after: list[float] = []
        for _ in range(10):
            save()
            start = time.perf_counter()
            client.get(f"/stagiaire/{student}")
            after.append((time.perf_counter() - start) * 1000)
        after.sort()
        print(
            f"  {'  puis la page du stagiaire':<28}: {statistics.median(after):6.1f} ms / "
            f"{after[8]:6.1f} ms (statuts gardés : une note n'en change aucun)"
        )
        refresher = interface_of(app).access.refresher
        start = time.perf_counter()
        assert refresher.flush(), refresher.problem
        print(
            f"  {'puis, en arrière-plan':<28}: {(time.perf_counter() - start) * 1000:6.0f} ms "
            "(suivi.xlsx réécrit, base sauvegardée)"
        )
        interface_of(app).access.close()
        compare_collect(root, aside, Path(tmp))


if __name__ == "__main__":
    main()

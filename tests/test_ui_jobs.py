"""Long operations of the interface: run off the request thread, their progress shown
by the job page, one at a time, refused while a command works, a bug logged."""

from __future__ import annotations

import threading
import time
from html import unescape
from pathlib import Path

import pytest

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.errors import GrilleError
from pipeline.ui.app import interface_of
from pipeline.ui.jobs import DONE, FAILED, Job, Outcome, Progress
from tests.conftest import write_csv
from tests.tutors import make_campaign
from tests.ui_helpers import close_interfaces, logged_in, page_text  # noqa: F401

ROWS = [
    ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Dupont", "Léa", "BTS 2B", "Mutuelle", "Paul Roche", "pr@mutuelle.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_campaign(tmp_path_factory.mktemp("jobs") / "campagne", ROWS, write_csv)


def _wait_end(job: Job) -> None:
    deadline = time.monotonic() + 30
    while job.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not job.running


def test_job__progress_shown_while_running__then_its_outcome(built: Path) -> None:
    client = logged_in(built)
    jobs = interface_of(client.app).jobs  # type: ignore[arg-type]
    release = threading.Event()

    def work(campaign: Campaign, progress: Progress) -> Outcome:
        progress.expect(4, "Fabrication des classeurs…")
        progress(1, 4)
        release.wait(10)
        count = len(state.students_with_workbooks(campaign.db))
        return Outcome().ok(f"{count} classeurs prêts.").link("Voir le suivi", "/suivi")

    job = jobs.start("Fabrication des classeurs", work, back="/suivi")
    page = client.get(f"/travail/{job.job_id}")
    assert page.status_code == 200
    assert "Fabrication des classeurs… 1 / 4" in page_text(page.text)
    assert f'hx-get="/travail/{job.job_id}/etat"' in page.text
    assert '<progress max="100" value="25">' in page.text
    release.set()
    _wait_end(job)
    fragment = client.get(f"/travail/{job.job_id}/etat")
    assert job.state == DONE
    assert "hx-get" not in fragment.text
    assert "2 classeurs prêts." in page_text(fragment.text)
    assert 'href="/suivi"' in fragment.text


def test_job__a_second_one_while_the_first_runs__is_refused_in_french(built: Path) -> None:
    client = logged_in(built)
    jobs = interface_of(client.app).jobs  # type: ignore[arg-type]
    release = threading.Event()

    def slow(campaign: Campaign, progress: Progress) -> Outcome:
        release.wait(10)
        return Outcome()

    first = jobs.start("Écriture des bilans", slow)
    with pytest.raises(GrilleError, match="« Écriture des bilans »"):
        jobs.start("Archivage", slow)
    release.set()
    _wait_end(first)
    second = jobs.start("Archivage", lambda campaign, progress: Outcome().ok("fait"))
    _wait_end(second)
    assert second.outcome.lines == [("ok", "fait")]


def test_job__while_a_command_holds_the_campaign__refused_before_it_starts(
    built: Path,
) -> None:
    client = logged_in(built)
    jobs = interface_of(client.app).jobs  # type: ignore[arg-type]
    ran: list[bool] = []

    def work(campaign: Campaign, progress: Progress) -> Outcome:
        ran.append(True)
        return Outcome()

    refused = pytest.raises(GrilleError, match="Une autre commande grille travaille déjà")
    with state.run_lock(built / "output"), refused:  # what a CLI command holds at work
        jobs.start("Relevé des retours", work)
    assert ran == []
    assert jobs.current() is None


def test_job__a_bug__named_in_french_with_its_crash_log__the_lock_freed(
    built: Path,
) -> None:
    client = logged_in(built)
    jobs = interface_of(client.app).jobs  # type: ignore[arg-type]

    def broken(campaign: Campaign, progress: Progress) -> Outcome:
        raise ZeroDivisionError("bug")

    job = jobs.start("Écriture des bilans", broken)
    _wait_end(job)
    assert job.state == FAILED
    (kind, text), *_ = job.outcome.lines
    assert kind == "attention"
    assert text.startswith("Erreur inattendue : l'opération s'est arrêtée.")
    log = Path(text.split("Détails techniques dans ")[1].split(" : ")[0])
    assert log.parent == built / "output" / "journal"
    assert "ZeroDivisionError" in log.read_text(encoding="utf-8")
    with state.run_lock(built / "output"):  # free again
        pass
    page = client.get(f"/travail/{job.job_id}")
    assert "Arrêté en" in page_text(page.text)


def test_job__unknown__a_french_404(built: Path) -> None:
    client = logged_in(built)
    page = client.get("/travail/999")
    assert page.status_code == 404
    assert "n'est plus connue de l'interface" in unescape(page.text)

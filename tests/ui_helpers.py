"""What the tests of the interface share: a client of a real application on a real
campaign, logged in through the start address, and the page helpers."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import Workspace
from pipeline.ui import security
from pipeline.ui.app import create_app, interface_of

with warnings.catch_warnings():  # starlette now prefers httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"

_OPENED: list[security.Guard] = []


@pytest.fixture(autouse=True)
def close_interfaces() -> Iterator[None]:
    """Stop the background rewrite of suivi.xlsx of every interface a test made (import
    this fixture in the test module to use it)."""
    yield
    while _OPENED:
        interface_of(_OPENED.pop()).access.close()


def app_client(root: Path, **options: Any) -> tuple[TestClient, security.Secrets]:
    """A client of the interface of `root`, not logged in, and the secrets of that app."""
    secrets = security.Secrets.new()
    app = create_app(Workspace(root), secrets, PORT, **options)
    _OPENED.append(app)
    return TestClient(app, base_url=BASE), secrets


def logged_in(root: Path, **options: Any) -> TestClient:
    """A client that opened the start address (token exchanged for the cookie)."""
    client, secrets = app_client(root, **options)
    response = client.get(f"/?token={secrets.token}")
    assert response.status_code == 200, response.text
    return client


def flush(client: TestClient) -> bool:
    """Do now the rewrite of suivi.xlsx the interface has scheduled."""
    assert isinstance(client.app, security.Guard)
    return interface_of(client.app).access.refresher.flush()


def csrf_of(page: str) -> str:
    """The CSRF token of the (first) form of `page`."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field in the page"
    return found.group(1)


def page_text(html: str) -> str:
    """The page's text, tags dropped and spaces collapsed (entities kept)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())

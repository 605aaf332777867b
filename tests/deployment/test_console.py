"""The Swagger console at /ui/, driven in Debian's Chromium as a person would use it.

Needs /usr/bin/chromium (`.ci/run` installs it): without it these tests fail, never skip.
Playwright only drives that browser; `playwright install` is never run. Each test leaves a
screenshot of the console in artifacts/console/ (git-ignored) and prints its path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from playwright.sync_api import BrowserContext, Locator, Page, Route, sync_playwright

from tests.support.api import API_KEY, AUTH
from tests.support.servers import Server, serve
from users_api.app import SPEC

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("console-server")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Chromium with a fresh profile (Playwright takes `--user-data-dir` only this way)."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


@pytest.fixture
def offsite_requests(browser: BrowserContext) -> Iterator[list[str]]:
    """Requests the page makes beyond loopback: refused, as with no internet, and recorded."""
    refused: list[str] = []

    def guard(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    browser.route("**/*", guard)
    yield refused
    browser.unroute("**/*", guard)


@pytest.fixture
def console(
    browser: BrowserContext,
    server: Server,
    offsite_requests: list[str],
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Page]:
    """/ui/ loaded and showing every operation; a screenshot of it is saved on the way out."""
    page = browser.new_page()
    try:
        page.goto(f"{server.url}/ui/")
        page.locator("#operations-health-check_health").wait_for()
        yield page
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', request.node.name)}.png"
        page.screenshot(path=screenshot, full_page=True)
        page.close()
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        with capsys.disabled():
            reporter.write_line(f"screenshot of the Swagger console: {screenshot}")


def authorize(page: Page, key: str) -> None:
    page.get_by_role("button", name="Authorize").first.click()
    page.get_by_label("auth-bearer-value").fill(key)
    page.locator(".auth-btn-wrapper").get_by_role("button", name="Authorize").click()
    page.locator(".auth-btn-wrapper").get_by_role("button", name="Close").click()


def open_put(page: Page) -> Locator:
    """`PUT /users/{user_id}` expanded and in "Try it out" mode."""
    operation = page.locator("#operations-users-update_user")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    return operation


def execute_put(operation: Locator, user_id: str, body: str) -> tuple[str, Any]:
    """Fills the id and the body, presses Execute; the status and body the page then shows."""
    operation.get_by_placeholder("user_id").fill(user_id)
    operation.locator("textarea.body-param__text").fill(body)
    operation.get_by_role("button", name="Execute").click()
    result = operation.locator(".live-responses-table .response")
    result.wait_for()
    status = result.locator(".response-col_status").inner_text()
    shown = result.locator(".response-col_description pre").first.inner_text()
    return status, json.loads(shown)


def create_user(server: Server, username: str) -> dict[str, Any]:
    created = httpx.post(f"{server.url}/users", json={"username": username}, headers=AUTH)
    assert created.status_code == 201
    user: dict[str, Any] = created.json()
    return user


def test_console_loads_everything_from_this_server(
    console: Page, server: Server, offsite_requests: list[str]
) -> None:
    """Swagger UI's files come from the installed bundle and the spec from /openapi.json."""
    assert offsite_requests == []
    assert console.locator(".info .title").inner_text().startswith("Users API")
    paths = yaml.safe_load(SPEC.read_text())["paths"].values()
    operations = [key for item in paths for key in item if key in {"get", "put", "post", "delete"}]
    assert console.locator(".opblock").count() == len(operations)


def test_console_shows_the_authorize_button_for_the_bearer_key(console: Page) -> None:
    console.get_by_role("button", name="Authorize").first.click()
    dialog = console.locator(".modal-ux")
    assert "bearerAuth" in dialog.inner_text()
    assert "(http, Bearer)" in dialog.inner_text()


def test_console_prefills_the_put_body_with_the_specs_example(console: Page) -> None:
    operation = open_put(console)
    body = operation.locator("textarea.body-param__text").input_value()
    assert json.loads(body) == {"username": "cosmo"}


def test_console_put_with_a_key_shows_200_and_the_updated_user(
    console: Page, server: Server, offsite_requests: list[str]
) -> None:
    user = create_user(server, "elaine")
    authorize(console, API_KEY)
    operation = open_put(console)

    status, body = execute_put(operation, str(user["id"]), '{"username": "kramer"}')

    assert status == "200"
    assert body["username"] == "kramer"
    assert body["id"] == user["id"]
    request_url = operation.locator(".request-url pre").inner_text()
    assert request_url == f"{server.url}/users/{user['id']}"
    assert offsite_requests == []


def test_console_put_unknown_id_shows_404_problem(console: Page) -> None:
    authorize(console, API_KEY)
    operation = open_put(console)

    status, body = execute_put(operation, "999999", '{"username": "kramer"}')

    assert status == "404"
    assert body["detail"] == "User 999999 does not exist."


def test_console_put_empty_body_shows_400_naming_username(console: Page, server: Server) -> None:
    user = create_user(server, "george")
    authorize(console, API_KEY)
    operation = open_put(console)

    status, body = execute_put(operation, str(user["id"]), "{}")

    assert status == "400"
    assert body["errors"] == [
        {"pointer": "/username", "message": "'username' is a required property"}
    ]


def test_console_put_without_authorizing_shows_401(console: Page, server: Server) -> None:
    user = create_user(server, "newman")
    operation = open_put(console)

    status, body = execute_put(operation, str(user["id"]), '{"username": "kramer"}')

    assert status == "401"
    assert body["title"] == "Unauthorized"

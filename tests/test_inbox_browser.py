"""The inbox page at ``/`` in a real browser (Playwright driving Debian's Chromium)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DATASET, notifications_command, require

ROOT = Path(__file__).resolve().parents[1]
#: Screenshots land here (CI keeps what the workspace holds); git ignores the folder.
ARTIFACTS = Path(os.environ.get("NOTIFICATIONS_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
#: A notification must reach the page this fast (seconds).
LIVE = 2.0


def chromium_path() -> str | None:
    """Return Debian's Chromium, which Playwright drives (it cannot download its own here)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Playwright; skipped (failed in CI) without one."""
    require(chromium_path() is not None, "Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(),
                                              args=["--no-sandbox", "--disable-gpu"])
        try:
            yield launched
        finally:
            launched.close()


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot of what the window shows as a test artefact; return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def restart(server: Any, workers: int, args: tuple[str, ...] = (),
            while_down: Any = None) -> None:
    """Stop the server, run ``while_down``, and start it again on the same port and database."""
    server.stop()
    if while_down is not None:
        while_down()
    server._log = open(server.log_path, "ab")
    server.proc = subprocess.Popen(
        [*notifications_command(), "serve", "--port", str(server.port), "--workers",
         str(workers), *args],
        env=server.env, stdout=server._log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    server._wait_ready()


def sign_in_with_token(page: Any, server: Any, token: str) -> None:
    """Open the page and paste a token into the sign-in form."""
    page.goto(server.url("/"))
    page.get_by_label("Token (JWT)").fill(token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#status")).to_have_attribute("data-state", "live")


def badge(page: Any) -> Any:
    return page.locator("#badge")


def dataset_item(page: Any, title: str) -> Any:
    return page.locator("#dataset-list .item", has_text=title)


def test_inbox_follows_both_streams_across_tabs_and_a_restart(
    browser: Any, live_server: Any,
) -> None:
    server = live_server(workers=2)
    server.cli("send", "--user", "alice", "--org", "acme", "--title", "Welcome aboard")
    token = server.auth.token("alice", "acme")
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    first = context.new_page()
    sign_in_with_token(first, server, token)
    expect(first.locator("#who")).to_have_text("alice in acme")
    expect(badge(first)).to_have_text("1")
    expect(dataset_item(first, "Welcome aboard")).to_be_visible()
    assert token not in first.url and first.get_by_label("Token (JWT)").input_value() == ""
    # The cookie is HttpOnly: the page's script never sees the token.
    assert token not in first.evaluate("document.cookie")

    second = context.new_page()  # a second tab: signed in by the cookie alone
    second.goto(server.url("/"))
    expect(second.locator("#status")).to_have_attribute("data-state", "live")
    expect(badge(second)).to_have_text("1")

    server.cli("send", "--user", "alice", "--org", "acme", "--kind", "build.finished",
               "--title", "Build 42 finished", "--body", "All checks passed")
    sent = time.monotonic()
    expect(dataset_item(first, "Build 42 finished")).to_be_visible(timeout=LIVE * 1000)
    expect(badge(first)).to_have_text("2", timeout=LIVE * 1000)
    expect(badge(second)).to_have_text("2", timeout=LIVE * 1000)
    assert time.monotonic() - sent < LIVE + 0.5
    expect(first.locator("#dataset-count")).to_have_text("2")
    screenshot(first, "inbox-live")

    first.get_by_role("button", name="Mark read: Build 42 finished").click()
    expect(badge(second)).to_have_text("1", timeout=LIVE * 1000)
    expect(badge(first)).to_have_text("1")
    # The other tab's list follows the read too.
    expect(dataset_item(second, "Build 42 finished")).not_to_have_class(re.compile(r"\bunread\b"))

    second.get_by_role("tab", name=re.compile("Organization inbox")).click()
    expect(second.locator("#organization-list .item", has_text="Welcome aboard")).to_be_visible()

    first.evaluate("window.notReloaded = true")

    def while_down() -> None:
        expect(first.locator("#status")).to_have_attribute("data-state", "reconnecting",
                                                           timeout=10_000)
        expect(first.locator("#status")).to_have_text("Reconnecting…")
        screenshot(first, "inbox-reconnecting")
        server.cli("send", "--user", "alice", "--org", "acme", "--title", "Sent while down")

    restart(server, workers=2, while_down=while_down)
    for page in (first, second):
        expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=20_000)
        expect(badge(page)).to_have_text("2", timeout=LIVE * 1000)
    expect(dataset_item(first, "Sent while down")).to_be_visible(timeout=LIVE * 1000)
    expect(second.locator("#organization-list .item", has_text="Sent while down")).to_be_visible(
        timeout=LIVE * 1000)
    assert first.evaluate("window.notReloaded") is True
    screenshot(first, "inbox-after-restart")

    log = server.log()
    assert "GET /api/v1/notifications/stream" in log and "POST /session 200" in log
    assert token not in log


def test_demo_mode_signs_in_a_demo_user_and_sends_through_the_ingest_path(
    browser: Any, live_server: Any,
) -> None:
    server = live_server(workers=1, args=("--demo",))
    assert re.search(rf"Open {re.escape(server.base_url)}/ for the live inbox", server.log())
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's width
    page.goto(server.url("/"))
    page.get_by_role("button", name="Sign in as alice").click()
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    expect(page.locator("#who")).to_have_text("alice in acme")
    # The stream opens before its first `unread` event arrives: wait for the seeded count.
    expect(badge(page)).not_to_have_attribute("data-count", "0")
    seeded = int(badge(page).inner_text())
    # Nothing overflows the phone's width.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    page.get_by_label("Send to").select_option(label="Inbox item (acme)")
    page.get_by_label("Title", exact=True).fill("Loop closed")
    page.get_by_role("button", name="Send").click()
    expect(dataset_item(page, "Loop closed")).to_be_visible(timeout=LIVE * 1000)
    expect(badge(page)).to_have_text(str(seeded + 1), timeout=LIVE * 1000)
    screenshot(page, "inbox-demo-phone")
    page.set_viewport_size({"width": 1100, "height": 760})
    screenshot(page, "inbox-demo")  # the README's picture
    page.set_viewport_size({"width": 390, "height": 844})

    page.get_by_label("Send to").select_option(label="Alert: Ice cream")
    page.get_by_label("Title", exact=True).fill("12 new results in 'demo'")
    page.get_by_role("button", name="Send").click()
    expect(dataset_item(page, "12 new results")).to_be_visible(timeout=LIVE * 1000)
    page.get_by_label("Dataset", exact=True).select_option(DATASET)
    expect(dataset_item(page, "12 new results")).to_be_visible()
    expect(dataset_item(page, "Loop closed")).to_have_count(0)
    page.get_by_role("button", name="Mark all read in dataset alerts").click()
    expect(page.locator("#dataset-count")).to_have_text("0")
    expect(badge(page)).to_have_text(str(seeded + 1))  # alerts are outside the inbox

    # Keyboard: the tabs follow the arrow keys; the bell opens the organization inbox.
    page.get_by_role("tab", name=re.compile("Dataset alerts")).focus()
    page.keyboard.press("ArrowRight")
    organization = page.get_by_role("tab", name=re.compile("Organization inbox"))
    expect(organization).to_be_focused()
    expect(organization).to_have_attribute("aria-selected", "true")
    expect(page.locator("#organization-list .item", has_text="Loop closed")).to_be_visible()
    page.keyboard.press("Tab")  # into the panel: the first control is its "Mark all read"
    mark_all = page.get_by_role("button", name="Mark all read in the organization inbox")
    expect(mark_all).to_be_focused()
    page.keyboard.press("Enter")
    expect(badge(page)).to_have_text("0", timeout=LIVE * 1000)
    expect(page.locator("#organization-list .item.unread")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Token (JWT)")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Sign in as bob")).to_be_visible()


def test_page_follows_configured_prefixes_and_cors(browser: Any, live_server: Any) -> None:
    server = live_server(workers=1, env={
        "NOTIFICATIONS_DATASET_PREFIX": "/alerts",
        "NOTIFICATIONS_ORGANIZATION_PREFIX": "/team/inbox",
        "NOTIFICATIONS_CORS_ORIGINS": "http://localhost:5173",
        "NOTIFICATIONS_SESSION_COOKIE": "notifications_jwt",
    })
    token = server.auth.token("bob", "acme")
    context = browser.new_context()
    page = context.new_page()
    sign_in_with_token(page, server, token)
    assert [c["name"] for c in context.cookies()] == ["notifications_jwt"]
    server.cli("send", "--user", "bob", "--org", "acme", "--title", "Behind a prefix")
    expect(dataset_item(page, "Behind a prefix")).to_be_visible(timeout=LIVE * 1000)
    expect(badge(page)).to_have_text("1", timeout=LIVE * 1000)
    page.get_by_role("button", name="Mark read: Behind a prefix").click()
    expect(badge(page)).to_have_text("0", timeout=LIVE * 1000)
    context.close()  # a stream's log line is written when it ends
    deadline = time.monotonic() + 10
    while ("GET /team/inbox/notifications/stream" not in server.log()
           and time.monotonic() < deadline):
        time.sleep(0.2)
    log = server.log()
    for line in ("GET /alerts/notifications/stream", "GET /team/inbox/notifications/stream",
                 "POST /alerts/notifications/"):
        assert line in log, line
    assert token not in log

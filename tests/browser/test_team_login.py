"""A browser logs in to a team server with a token, sees every run, deletes its own through the
page (the page's CSRF token), and is refused on another user's; a page on another origin
cannot act through the visitor's session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from studio.entities import Experiment
from studio.meta import wire
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.fixtures.team_server import Team, team_servers


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    with team_servers(tmp_path) as running:
        for who, key in (("owner", "alice-run"), ("other", "bob-run")):
            with running.client(who) as c:
                body = wire.dumps({"args": [Experiment(key=key, project="p")], "kwargs": {}})
                assert c.post("/api/store/create_experiment", content=body).status_code == 200
        yield running


def test_login_then_delete_own_but_not_others(team: Team) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(team.url + "/all")
        assert "/login" in page.url  # not logged in: the login form
        page.fill("#token", "studio_wrong")
        page.click("#login-submit")
        assert "refused" in page.inner_text("#login-error") or "wrong" in page.inner_text("#login-error")
        page.fill("#token", team.tokens["owner"])
        page.click("#login-submit")
        page.goto(team.url + "/all")
        page.wait_for_selector("#runs tr[data-key='bob-run']")
        assert "alice" in page.inner_text("header .me")
        cookies = {c["name"]: c for c in context.cookies()}
        session = cookies["studio_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert team.tokens["owner"] not in page.content()
        # The page's own script deletes alice's run (it sends the CSRF token)...
        result: Any = page.evaluate("() => studio.api('/api/experiments/alice-run', {method: 'DELETE'})")
        assert result["ok"]
        # ... and is refused on bob's.
        refused = page.evaluate(
            "() => studio.api('/api/experiments/bob-run', {method: 'DELETE'}).then(() => 0, e => e.status)"
        )
        assert refused == 403
        # A request without the page's token (what a form on another site could send) is refused.
        status = page.evaluate("() => fetch('/api/experiments/bob-run/stop', {method: 'POST'}).then(r => r.status)")
        assert status == 403
        context.close()
        browser.close()
    assert not errors, errors
    assert team.ctx.meta.get_experiment("bob-run").status.value == "queued"

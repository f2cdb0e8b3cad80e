"""The console's Knowledge and Evaluate screens in real Chromium against ``switchboard serve`` and the fake
model API answering as the demo model.

Knowledge: an admin edits the policy and adds an article (each save a new version, not active), meets a
stale edit (another admin saved meanwhile: the 409 is shown and the text kept), activates the draft and
rolls back after a confirmation. Evaluate: an admin uploads a small case file (a broken one first), runs
the draft against the active version, reads the changed cases and the cost, and activates the draft.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from support import keys
from support.knowledge.render import Document, render
from support.testing.demo_model import DemoModel
from support.testing.fake_anthropic import FakeAnthropic
from tests.browser.test_console import UI_TIMEOUT_MS, create_agent, sign_in

# the console tests' Redis fixture
from tests.browser.test_console import clean_redis as clean_redis
from tests.integration.test_eval_compare import CASES, GIFT_WRAPPING, POLICY_V1, POLICY_V2
from tests.integration.test_widget_ws import start_server
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess

pytestmark = pytest.mark.timeout(150)
RUN_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    draft = render(
        [Document("policy", "policy", POLICY_V2), Document("Gift wrapping", "article", GIFT_WRAPPING)]
    )
    with FakeAnthropic() as server:
        server.add_rule(DemoModel(draft).reply)
        yield server


@pytest.fixture
def server(tmp_path: Path, fake: FakeAnthropic, clean_redis: str) -> Iterator[ServerProcess]:
    policy = tmp_path / "policy.md"
    policy.write_text(POLICY_V1, encoding="utf-8")
    proc = start_server(tmp_path / "srv", fake, clean_redis, SWITCHBOARD_POLICY_PATH=str(policy))
    try:
        yield proc
    finally:
        proc.kill()


def admin_headers(page: Page) -> dict[str, str]:
    token = page.evaluate("sessionStorage.getItem('switchboard.agent.token')")
    return {"Authorization": f"Bearer {token}"}


def knowledge(server: ServerProcess, page: Page, path: str = "") -> Any:
    resp = httpx.get(f"{server.url}/api/v1/admin/knowledge{path}", headers=admin_headers(page))
    assert resp.status_code == 200, resp.text
    return resp.json()


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways on a phone ({width}px wide)"


def test_an_admin_edits_the_knowledge_into_new_versions_activates_one_and_rolls_back(
    browser: Browser, server: ServerProcess, screenshot_dir: Path, tmp_path: Path
) -> None:
    create_agent(server, "root@example.com", "Root", role="admin")
    page = sign_in(browser, server, "root@example.com")
    try:
        page.get_by_role("link", name="Knowledge").click()
        expect(page.get_by_role("heading", name="Knowledge", exact=True)).to_be_visible()
        seeded = knowledge(server, page)["active"]
        versions = page.locator("#versions .kn-version")
        expect(versions).to_have_count(1)
        expect(versions.first.locator(".kn-badge")).to_have_text(["Active", "Head"])
        expect(page.locator("#detail-changes")).to_have_text("The first version.")
        expect(page.locator("#detail-activate")).to_be_hidden()  # it is the active one already

        # Edit the policy: a new version, the head, not active
        page.get_by_role("button", name="Edit policy").click()
        expect(page.get_by_label("Name")).to_have_value("policy")
        page.get_by_label("Text (Markdown)").fill(POLICY_V2)
        page.get_by_role("button", name="Save as a new version").click()
        expect(page.locator("#announcer")).to_contain_text("It is not active until you activate it.")
        expect(versions).to_have_count(2)
        expect(page.locator("#detail-changes")).to_have_text(f"Since {seeded}: changed policy.")
        expect(page.locator("#detail-badges .kn-badge")).to_have_text(["Head"])
        assert knowledge(server, page)["active"] == seeded, "a save is not active"

        # Add an article, uploaded from a Markdown file (named after the file)
        article = tmp_path / "Gift wrapping.md"
        article.write_text(GIFT_WRAPPING, encoding="utf-8")
        page.get_by_role("button", name="Add a document").click()
        page.get_by_label("Or load the text from a Markdown file").set_input_files(str(article))
        expect(page.get_by_label("Name")).to_have_value("Gift wrapping")
        expect(page.get_by_label("Text (Markdown)")).to_have_value(GIFT_WRAPPING)
        page.get_by_label("Kind").select_option("article")
        page.get_by_role("button", name="Save as a new version").click()
        expect(versions).to_have_count(3)
        expect(page.locator("#detail-changes")).to_contain_text("added Gift wrapping.")
        expect(page.locator(".kn-doc[data-name='Gift wrapping'] .kn-mark")).to_have_text("New")

        # Another admin saves meanwhile: this page's edit starts from a stale head and is refused (409)
        stale_head = knowledge(server, page)["head"]["id"]
        rule = {"name": "Legal", "kind": "guidance", "text": "Hand off any legal threat."}
        other = httpx.post(f"{server.url}/api/v1/admin/knowledge", json=rule, headers=admin_headers(page))
        assert other.status_code == 201, other.text
        page.get_by_role("button", name="Edit Gift wrapping").click()
        edited = GIFT_WRAPPING.replace("4 EUR", "5 EUR")
        page.get_by_label("Text (Markdown)").fill(edited)
        page.get_by_role("button", name="Save as a new version").click()
        error = page.locator("#editor-error")
        expect(error).to_contain_text("Someone saved a newer version")
        expect(error).to_contain_text(f"changed since version {stale_head}")
        expect(error).to_contain_text("knowledge_conflict, 409")
        expect(page.get_by_label("Text (Markdown)")).to_have_value(edited)
        page.get_by_role("button", name="Load the latest version").click()
        expect(page.locator(".kn-doc[data-name='Legal']")).to_be_visible()
        expect(page.get_by_label("Text (Markdown)")).to_have_value(edited)  # the admin's text is kept
        page.get_by_role("button", name="Save as a new version").click()
        expect(versions).to_have_count(5)
        draft = knowledge(server, page)["head"]["id"]
        expect(page.locator("#detail-id")).to_have_text(draft)
        page.locator(".kn-doc[data-name='Gift wrapping'] summary").click()
        expect(page.locator(".kn-doc[data-name='Gift wrapping'] pre")).to_have_text(edited)

        # Activate after a confirmation; cancelling changes nothing
        page.get_by_role("button", name="Activate this version").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text(f"Activate version {draft}?")
        dialog.get_by_role("button", name="Cancel").click()
        assert knowledge(server, page)["active"] == seeded
        page.get_by_role("button", name="Activate this version").click()
        dialog.get_by_role("button", name="Activate", exact=True).click()
        expect(page.locator("#announcer")).to_have_text(f"Version {draft} is active.")
        expect(page.locator("#detail-badges .kn-badge")).to_have_text(["Active", "Head"])
        assert knowledge(server, page)["active"] == draft
        page.locator(".kn-doc[data-name='Gift wrapping'] summary").click()
        page.screenshot(path=str(screenshot_dir / "console-knowledge-1280.png"), full_page=True)

        # Roll back to the seeded version
        page.locator(f"#versions .kn-version[data-id='{seeded}'] button").click()
        expect(page.locator("#detail-id")).to_have_text(seeded)
        expect(page.get_by_role("button", name="Add a document")).to_be_hidden()  # edits start from the head
        page.get_by_role("button", name="Roll back to this version").click()
        expect(dialog).to_contain_text(f"Roll back to version {seeded}?")
        dialog.get_by_role("button", name="Roll back", exact=True).click()
        expect(page.locator("#announcer")).to_have_text(f"Version {seeded} is active.")
        assert knowledge(server, page)["active"] == seeded
        expect(page.locator(f"#versions .kn-version[data-id='{seeded}'] .kn-badge")).to_have_text(["Active"])

        # Remove the guidance rule from the head, after a confirmation: one more version, not active
        page.locator(f"#versions .kn-version[data-id='{draft}'] button").click()
        page.get_by_role("button", name="Remove Legal").click()
        dialog.get_by_role("button", name="Remove", exact=True).click()
        expect(page.locator("#announcer")).to_contain_text("Removed Legal")
        expect(page.locator("#detail-changes")).to_have_text(f"Since {draft}: removed Legal.")
        expect(versions).to_have_count(6)
        assert knowledge(server, page)["active"] == seeded

        page.set_viewport_size({"width": 375, "height": 800})
        page.locator(f"#versions .kn-version[data-id='{draft}'] button").click()
        expect(page.locator("#detail-id")).to_have_text(draft)
        page.locator(".kn-doc[data-name='Gift wrapping'] summary").click()
        expect(page.locator(".kn-doc[data-name='Gift wrapping'] pre")).to_be_visible()
        page.screenshot(path=str(screenshot_dir / "console-knowledge-375.png"), full_page=True)
        no_sideways_scroll(page)
    finally:
        page.close()


def test_an_admin_uploads_cases_runs_a_draft_against_the_active_version_reads_the_changes_and_activates(
    browser: Browser, server: ServerProcess, screenshot_dir: Path, tmp_path: Path, clean_redis: str
) -> None:
    create_agent(server, "root@example.com", "Root", role="admin")
    page = sign_in(browser, server, "root@example.com")
    try:
        active = knowledge(server, page)["active"]
        docs = [("policy", "policy", POLICY_V2), ("Gift wrapping", "article", GIFT_WRAPPING)]
        body = {"documents": [{"name": n, "kind": k, "text": t} for n, k, t in docs]}
        saved = httpx.post(
            f"{server.url}/api/v1/admin/knowledge/import", json=body, headers=admin_headers(page)
        )
        draft = saved.json()["version"]["id"]

        page.get_by_role("link", name="Evaluate").click()
        expect(page.get_by_role("heading", name="Evaluate", exact=True)).to_be_visible()
        expect(page.get_by_label("Knowledge version to evaluate")).to_have_value(
            draft
        )  # the unactivated head
        expect(page.get_by_label("Compare with")).to_have_value(active)
        expect(page.locator("#history-empty")).to_be_visible()

        # A broken case file: refused with every bad line named
        broken = tmp_path / "broken.jsonl"
        broken.write_text(json.dumps(CASES[0]) + "\n{not json\n", encoding="utf-8")
        page.get_by_label("Upload a case file").check()
        page.get_by_label("Case file", exact=True).set_input_files(str(broken))
        expect(page.locator("#ev-file-info")).to_contain_text("broken.jsonl: 2 cases")
        page.get_by_role("button", name="Run the evaluation").click()
        expect(page.locator("#ev-form-error")).to_contain_text("cases line 2: not JSON")
        expect(page.locator("#ev-form-error")).to_contain_text("cases_invalid, 400")

        cases = tmp_path / "cases.jsonl"
        cases.write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")
        page.get_by_label("Case file", exact=True).set_input_files(str(cases))
        expect(page.locator("#ev-file-info")).to_contain_text("cases.jsonl: 5 cases")
        # Another run holds the workspace's one slot: refused, and the page says so
        redis = sync_redis_client_for(clean_redis)
        try:
            redis.set(keys.evaluation_running(), "0123456789abcdef", px=30_000)
            page.get_by_role("button", name="Run the evaluation").click()
            expect(page.locator("#ev-form-error")).to_contain_text("evaluation_running, 409")
            redis.delete(keys.evaluation_running())
        finally:
            redis.close()
        page.get_by_role("button", name="Run the evaluation").click()
        expect(page.locator("#run-what")).to_contain_text(f"Version {draft} compared with {active}, 5 cases")
        expect(page.locator("#run-status")).to_have_text("Finished", timeout=RUN_TIMEOUT_MS)
        expect(page.locator("#run-progress")).to_be_hidden()

        summary = page.locator("#summary")
        columns = ["Metric", f"{active} (compared with)", f"{draft} (evaluated)"]
        expect(summary.locator("thead th")).to_have_text(columns)
        expect(summary.locator("tr[data-metric=answered] td")).to_have_text(["2", "4"])
        expect(summary.locator("tr[data-metric=handed_off] td")).to_have_text(["3", "1"])
        expect(summary.locator("tr[data-metric=cost_usd] td").last).to_contain_text("$0.")
        expect(page.locator("#run-cost")).to_contain_text("both versions")
        changed = page.locator("#changed tbody tr")
        expect(changed.locator("th")).to_have_text(["gift-wrap", "rental-price", "gift-wrap-cost"])
        expect(changed.nth(0).locator("td")).to_have_text(
            ["Handed off (bot declined to answer)", "Answered, judge: pass"]
        )
        expect(changed.nth(1).locator("td")).to_have_text(["Answered, judge: fail", "Answered, judge: pass"])
        expect(page.locator("#history li")).to_have_count(1)
        page.screenshot(path=str(screenshot_dir / "console-evaluate-1280.png"), full_page=True)

        page.get_by_role("button", name="Activate this version").click()
        page.get_by_role("dialog").get_by_role("button", name="Activate", exact=True).click()
        expect(page.locator("#announcer")).to_have_text(f"Version {draft} is active.")
        expect(page.get_by_role("button", name="Activate this version")).to_be_hidden()
        assert knowledge(server, page)["active"] == draft

        page.set_viewport_size({"width": 375, "height": 800})
        page.reload()
        expect(page.locator("#run-status")).to_have_text("Finished")  # the latest run is shown again
        expect(page.locator("#changed tbody tr")).to_have_count(3)
        page.screenshot(path=str(screenshot_dir / "console-evaluate-375.png"), full_page=True)
        no_sideways_scroll(page)
    finally:
        page.close()


def test_agents_who_are_not_admins_get_neither_screen(browser: Browser, server: ServerProcess) -> None:
    create_agent(server, "grace@example.com", "Grace")
    page = sign_in(browser, server, "grace@example.com")
    try:
        expect(page.get_by_role("link", name="Knowledge")).to_be_hidden()
        expect(page.get_by_role("link", name="Evaluate")).to_be_hidden()
        for name in ("knowledge", "evaluate"):
            page.goto(f"{server.url}/console/{name}.html")
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect(page.locator("#forbidden")).to_be_visible()
            expect(page.locator("#page")).to_be_hidden()
    finally:
        page.close()

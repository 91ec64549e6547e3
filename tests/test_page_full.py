"""The live page opens full and finds any shopper: real Chromium against the real exporter.

One exporter runs the demo ten times faster than real time from the start of this module, so by
its last tests the service holds over two minutes of history, as a newcomer would find it after
two minutes of demo.
"""

from __future__ import annotations

import io
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from support import (
    RunningProcess,
    brief_example,
    http_get,
    iso,
    require_axe,
    run_exporter,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ARTIFACTS = Path(__file__).resolve().parent / "page_artifacts"
SECONDS = 1000  # Playwright timeouts are in milliseconds
TIME_CHARTS = ("active-shoppers", "events-per-second", "session-duration", "cart-actions")
TABS = ("activity", "shoppers", "behavior", "events")
THEMES = ("light", "dark")


@pytest.fixture(scope="module", autouse=True)
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """The exporter running the demo at ten times a real store's pace, from the module's start."""
    with run_exporter(tmp_path_factory.mktemp("demo"), "--demo", "30", "--demo-speed", "10") as run:
        yield run


def new_page(browser: Browser, theme: str = "light") -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=theme)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.script_errors = errors  # type: ignore[attr-defined]
    return page


def close(page: Page) -> None:
    errors = page.script_errors  # type: ignore[attr-defined]
    page.context.close()
    assert not errors, f"script errors on the page: {errors}"


def open_live(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    expect(page.get_by_test_id("connection-state")).to_have_text("live", timeout=15 * SECONDS)


def select_tab(page: Page, name: str) -> None:
    page.locator(f"#tab-{name}").click()
    expect(page.locator(f"#panel-{name}")).to_be_visible()


def screenshot(page: Page, name: str) -> None:
    """The whole page; with the drawer open, what the screen shows (the drawer is fixed to it)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = str(ARTIFACTS / f"{name}.png")
    page.screenshot(path=path, full_page="drawer" not in name)


def get_json(url: str) -> Any:
    status, body = http_get(url)
    assert status == 200, body
    return json.loads(body)


def push(base_url: str, records: list[dict[str, Any]]) -> None:
    """POST updates a thousand to a body, as a producer would."""
    for start in range(0, len(records), 1000):
        body = json.dumps(records[start : start + 1000]).encode()
        request = urllib.request.Request(
            base_url + "/api/metrics", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert json.load(io.TextIOWrapper(reply))["rejected"] == []


def ten_thousand_shoppers() -> list[dict[str, Any]]:
    """10,000 shoppers with names that never contain "Sarah" or "shopper_123"."""
    first = ("Miguel", "Priya", "James", "Aisha", "Chen", "Olivia", "Mateo", "Grace")
    last = ("Garcia", "Patel", "Smith", "Khan", "Wang", "Brown", "Lopez", "Kim")
    now = iso()
    return [
        {
            "userId": f"customer_{i:05d}",
            "userName": f"{first[i % 8]} {last[i // 8 % 8]}",
            "company": ("Austin, TX", "Denver, CO", "Boston, MA")[i % 3],
            "timestamp": now,
            "isActive": i % 4 != 0,
            "activeFeature": ("Browsing", "Search", "Product", "Cart")[i % 4],
            "cartValue": float(i % 120),
            "itemsInCart": i % 6,
        }
        for i in range(10_000)
    ]


def search(page: Page, text: str) -> None:
    page.locator("#shopper-search").fill(text)
    page.wait_for_function(
        """(text) => {
            const rows = [...document.querySelectorAll('#shopper-rows tr[data-user]')];
            return rows.length > 0 && rows.every((row) => row.textContent.toLowerCase()
                .includes(text.toLowerCase()));
        }""",
        arg=text,
        timeout=10 * SECONDS,
    )


def test_the_example_shopper_is_found_among_ten_thousand(browser: Browser, tmp_path: Path) -> None:
    """shopper_123 pushed among 10,000 others is found by id and by name, and its drawer opens."""
    with run_exporter(tmp_path) as exporter:
        push(exporter.base_url, [*ten_thousand_shoppers(), brief_example()])
        page = new_page(browser)
        try:
            open_live(page, exporter.base_url)
            select_tab(page, "shoppers")
            rows = page.locator("#shopper-rows tr[data-user]")
            expect(rows).to_have_count(25, timeout=10 * SECONDS)  # one page, never all 10,001

            search(page, "shopper_123")
            expect(rows).to_have_count(1)
            expect(rows.first).to_have_attribute("data-user", "shopper_123")
            search(page, "Sarah Johnson")
            expect(rows).to_have_count(1)
            screenshot(page, "full-shoppers-search-light")

            rows.first.locator(".shopper-name").click()
            drawer = page.locator("#shopper-dialog")
            expect(drawer).to_be_visible()
            expect(page.locator("#shopper-dialog-title")).to_have_text("Sarah Johnson")
            expect(page.locator("#shopper-facts")).to_contain_text("San Francisco, CA")
            expect(page.locator("#shopper-facts")).to_contain_text("$127.50")
            expect(page.locator("#shopper-timeline li:not(.empty)")).not_to_have_count(0)
            screenshot(page, "full-drawer-light")
            page.keyboard.press("Escape")
            expect(drawer).to_be_hidden()
        finally:
            close(page)


def test_the_row_under_the_keyboard_holds_still(browser: Browser, tmp_path: Path) -> None:
    """While a row has keyboard focus, background refreshes neither move nor remove it, so Enter
    opens the shopper the user is on; once focus leaves, the table follows the store again."""
    with run_exporter(tmp_path) as exporter:
        push(exporter.base_url, ten_thousand_shoppers()[:30])
        page = new_page(browser)
        try:
            open_live(page, exporter.base_url)
            select_tab(page, "shoppers")
            rows = page.locator("#shopper-rows tr[data-user]")
            expect(rows).to_have_count(25, timeout=10 * SECONDS)
            focused_id = rows.first.get_attribute("data-user")
            rows.first.locator(".shopper-name").focus()

            # 30 newer updates push every row shown off the first page ("most recent" sort).
            newer = ten_thousand_shoppers()[1000:1030]
            push(exporter.base_url, newer)
            page.wait_for_timeout(12 * SECONDS)  # over two background refreshes
            focused = page.locator("#shopper-rows .shopper-name:focus")
            expect(focused).to_have_count(1)
            expect(rows.first).to_have_attribute("data-user", focused_id or "")
            page.keyboard.press("Enter")
            expect(page.locator("#shopper-dialog")).to_be_visible()
            expect(page.locator("#shopper-facts")).to_contain_text(focused_id or "")
            page.keyboard.press("Escape")

            page.locator("#shopper-search").focus()
            newest = {record["userId"] for record in newer}
            expect(rows.first).to_have_attribute(
                "data-user", re.compile("|".join(sorted(newest))), timeout=12 * SECONDS
            )
        finally:
            close(page)


def test_table_counts_equal_the_summary(browser: Browser, tmp_path: Path) -> None:
    """The table's totals, unfiltered and online only, are the summary's tracked and active."""
    with run_exporter(tmp_path) as exporter:
        push(exporter.base_url, ten_thousand_shoppers())
        summary = get_json(exporter.base_url + "/api/summary")
        page = new_page(browser)
        try:
            open_live(page, exporter.base_url)
            select_tab(page, "shoppers")
            counts = page.locator("#shopper-count")
            expect(counts).to_have_attribute("data-total", str(summary["trackedShoppers"]))
            expect(counts).to_have_attribute("data-tracked", str(summary["trackedShoppers"]))
            expect(counts).to_have_attribute("data-online", str(summary["activeShoppers"]))
            page.locator("#shopper-online-only").check()
            expect(counts).to_have_attribute("data-total", str(summary["activeShoppers"]))
            expect(page.locator("#shopper-range")).to_contain_text(
                f"of {summary['activeShoppers']:,}"
            )
            page.locator("#shopper-activity").select_option("Cart")
            cart = next(d for d in summary["activityDistribution"] if d["activity"] == "Cart")
            expect(counts).to_have_attribute("data-total", str(cart["shoppers"]))

            page.locator("#shopper-next").click()  # a second page, still one page of rows
            expect(page.locator("#shopper-range")).to_have_text(re.compile(r"^26–50 of "))
            assert page.locator("#shopper-rows tr").count() <= 25
            expect(page.get_by_test_id("demo-badge")).to_be_hidden()  # no demo runs here
        finally:
            close(page)


def rgb(color: str) -> tuple[int, int, int]:
    found = re.findall(r"[\d.]+", color)
    return round(float(found[0])), round(float(found[1])), round(float(found[2]))


def test_every_activity_has_its_own_colour_and_unknown_is_grey(
    browser: Browser, tmp_path: Path
) -> None:
    """No two activities share a colour, in either theme; unknown and other are grey, so named."""
    activities = ["Browsing", "Search", "Product", "Deals", "Cart", "Checkout", "Delivery"]
    activities += ["Account", "Recipes", "Returns", "Gift cards", ""]
    with run_exporter(tmp_path, "--label-cap", "10") as exporter:
        now = iso()
        records = [
            {"userId": f"a{i}_{k}", "userName": f"Shopper {i}", "timestamp": now,
             "isActive": True, "activeFeature": name}
            for i, name in enumerate(activities)
            for k in range(i + 1)
        ]  # fmt: skip
        push(exporter.base_url, records)
        for theme in THEMES:
            page = new_page(browser, theme)
            try:
                open_live(page, exporter.base_url)
                select_tab(page, "behavior")
                legend = page.locator("#activity-legend li")
                expect(legend).to_have_count(12, timeout=10 * SECONDS)  # 10 named, Unknown, Other
                # One script reads them all: the chart is redrawn every second.
                fills = page.evaluate(
                    """[...document.querySelectorAll('#chart-activity-pie path.chart-slice')]
                        .map((s) => getComputedStyle(s).fill)"""
                )
                assert len(fills) == 12
                assert len(set(fills)) == len(fills), fills
                labels = page.evaluate(
                    """[...document.querySelectorAll('#activity-legend li')].map((li) => [
                        li.dataset.activity, li.children[1].textContent,
                        getComputedStyle(li.children[0]).backgroundColor])"""
                )
                by_name = {name: (label, color) for name, label, color in labels}
                for raw, shown in (("unknown", "Unknown"), ("other", "Other")):
                    label, color = by_name[raw]
                    assert label == shown
                    r, g, b = rgb(color)
                    assert r == g == b, (raw, color)  # neutral grey
                assert all(len(set(rgb(c))) > 1 for n, (_, c) in by_name.items()
                           if n not in ("unknown", "other"))  # fmt: skip
                units = legend.first.locator(".legend-value").inner_text()
                assert re.search(r"shoppers? · [\d.]+%", units), units
                screenshot(page, f"full-colours-{theme}")
            finally:
                close(page)


def history_points(base_url: str) -> int:
    return len(get_json(base_url + "/api/history?window=300")["time"])


def aged(demo_store: RunningProcess) -> str:
    """The demo exporter once it holds over two minutes of per-second history."""
    wait_until(lambda: history_points(demo_store.base_url) >= 125, timeout=200, interval=1)
    return demo_store.base_url


def test_charts_are_full_at_first_paint(browser: Browser, demo_store: RunningProcess) -> None:
    """After two minutes of demo, every time chart has at least 100 points when first drawn,
    the statistics show trends at once, and the page says the demo runs ten times faster."""
    base_url = aged(demo_store)
    page = new_page(browser)
    try:
        page.goto(base_url + "/")
        page.wait_for_function(
            "document.documentElement.dataset.chartsPoints", timeout=10 * SECONDS
        )
        first_paint = json.loads(page.evaluate("document.documentElement.dataset.chartsPoints"))
        assert set(first_paint) == {f"chart-{c}" for c in TIME_CHARTS}
        assert min(first_paint.values()) >= 100, first_paint
        expect(page.get_by_test_id("demo-badge")).to_have_text("demo ×10", timeout=5 * SECONDS)
        select_tab(page, "behavior")
        trends = page.locator("#store-stats-rows td.trend")
        expect(trends.first).not_to_have_text(re.compile("collecting"), timeout=5 * SECONDS)
        texts = trends.all_inner_texts()
        assert not [t for t in texts if "collecting" in t], texts
        spikes = page.evaluate(
            """() => [...document.querySelectorAll('#chart-cart-actions path.chart-line')]
                .map((p) => p.getAttribute('d').split('L').length)"""
        )
        assert min(spikes) >= 100  # both lines drawn across the window, not from one sample
    finally:
        close(page)


def test_switching_the_window_refetches_the_history(
    browser: Browser, demo_store: RunningProcess
) -> None:
    """5 min, 15 min and 1 hour each ask the server for that window and redraw the axis."""
    base_url = aged(demo_store)
    page = new_page(browser)
    try:
        open_live(page, base_url)
        page.wait_for_function("document.documentElement.dataset.chartsPoints")
        for label, seconds, axis in (("15 min", 900, "−15 min"), ("1 hour", 3600, "−60 min")):
            button = page.get_by_role("button", name=label, exact=True)
            with page.expect_request(lambda r, s=seconds: f"/api/history?window={s}" in r.url):
                button.click()
            expect(button).to_have_attribute("aria-pressed", "true")
            expect(page.locator("#chart-active-shoppers text", has_text=axis)).to_have_count(1)
            screenshot(page, f"full-activity-{seconds // 60}min-light")
        five = page.get_by_role("button", name="5 min", exact=True)
        page.keyboard.press("Shift+Tab")  # from "1 hour", by keyboard: the focus ring shows
        page.keyboard.press("Shift+Tab")
        expect(five).to_be_focused()
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
        with page.expect_request(lambda r: "/api/history?window=300" in r.url):
            page.keyboard.press("Enter")
        expect(five).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#chart-active-shoppers text", has_text="−5 min")).to_have_count(1)
    finally:
        close(page)


AXE_RUN = """async () => {
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}"""


def axe_violations(page: Page, axe: Path) -> list[str]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe))
    found: list[str] = page.evaluate(AXE_RUN)
    return found


def test_every_view_is_accessible_in_both_themes(
    browser: Browser, demo_store: RunningProcess
) -> None:
    """axe-core finds no serious or critical violation in any tab or the drawer, light or dark;
    screenshots of each view go to tests/page_artifacts."""
    axe = require_axe()
    base_url = aged(demo_store)
    problems: dict[str, list[str]] = {}
    for theme in THEMES:
        page = new_page(browser, theme)
        try:
            open_live(page, base_url)
            page.wait_for_function("document.documentElement.dataset.chartsPoints")
            for tab in TABS:
                select_tab(page, tab)
                if tab == "shoppers":
                    expect(page.locator("#shopper-rows tr[data-user]")).not_to_have_count(0)
                if tab == "events":
                    expect(page.locator("#event-list li.event")).not_to_have_count(0)
                page.wait_for_timeout(300)  # one frame of live data drawn
                problems[f"{tab}-{theme}"] = axe_violations(page, axe)
                screenshot(page, f"full-{tab}-{theme}")
            select_tab(page, "shoppers")
            page.locator("#shopper-rows .shopper-name").first.focus()
            page.keyboard.press("Enter")
            expect(page.locator("#shopper-dialog")).to_be_visible()
            expect(page.locator("#shopper-timeline li:not(.empty)")).not_to_have_count(0)
            problems[f"drawer-{theme}"] = axe_violations(page, axe)
            screenshot(page, f"full-drawer-{theme}")
            page.keyboard.press("Escape")
        finally:
            close(page)
    assert {view: found for view, found in problems.items() if found} == {}


def test_demo_badge_follows_the_speed(browser: Browser, tmp_path: Path) -> None:
    """At a real store's pace there is no badge; a standalone demo four times faster brings one."""
    with run_exporter(tmp_path, "--demo", "10") as exporter:
        page = new_page(browser)
        try:
            open_live(page, exporter.base_url)
            expect(page.locator("#demo-button")).to_have_text("Stop Demo")
            expect(page.get_by_test_id("demo-badge")).to_be_hidden()
            page.locator("#demo-button").click()
            expect(page.locator("#demo-button")).to_have_text("Start Demo")
            request = urllib.request.Request(
                exporter.base_url + "/api/demo/announce",
                data=json.dumps({"speed": 4, "shoppers": 40}).encode(),
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=5).close()
            page.reload()
            expect(page.get_by_test_id("demo-badge")).to_have_text("demo ×4", timeout=5 * SECONDS)
        finally:
            close(page)

"""The built-in live page in a real headless Chromium against the real exporter and its demo."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from browser_shop import checked_page
from support import free_port, http_get, run_exporter, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ARTIFACTS = Path(__file__).resolve().parent / "page_artifacts"
TABS = ("activity", "shoppers", "behavior", "events")
KPIS = (
    "activeShoppers",
    "activeCarts",
    "cartValue",
    "ordersPerHour",
    "sessionDuration",
    "cartAbandonment",
    "productViews",
    "searchActivity",
)
SECONDS = 1000  # Playwright timeouts are in milliseconds


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh light-themed desktop page; fails the test if the page throws a script error."""
    with checked_page(
        browser, viewport={"width": 1280, "height": 900}, color_scheme="light"
    ) as tab:
        yield tab


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[str]:
    """The real exporter with 30 demo shoppers; yields its base URL."""
    with run_exporter(tmp_path, "--demo", "30") as running:
        yield running.base_url


def open_live(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    expect(page.get_by_test_id("connection-state")).to_have_text("live", timeout=15 * SECONDS)


def kpi_text(page: Page, name: str) -> str:
    return page.locator(f'[data-kpi="{name}"] .kpi-value').inner_text()


def kpi_number(page: Page, name: str) -> float:
    raw = page.locator(f'[data-kpi="{name}"] .kpi-value').get_attribute("data-value")
    return float(raw or "nan")


def select_tab(page: Page, name: str) -> None:
    page.locator(f"#tab-{name}").click()
    expect(page.locator(f"#panel-{name}")).to_be_visible()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def demo_state(base_url: str) -> dict[str, object]:
    status, body = http_get(base_url + "/api/demo")
    assert status == 200, body
    state: dict[str, object] = json.loads(body)
    return state


def test_kpis_show_the_eight_key_metrics_and_change(page: Page, exporter: str) -> None:
    """All eight KPI cards fill in from the live summary and their figures move on."""
    open_live(page, exporter)
    for name in KPIS:
        expect(page.locator(f'[data-kpi="{name}"] .kpi-value')).not_to_have_text(
            "—", timeout=10 * SECONDS
        )
    assert re.fullmatch(r"\$[\d,]+\.\d\d", kpi_text(page, "cartValue"))
    assert re.fullmatch(r"\d+\.\d%", kpi_text(page, "cartAbandonment"))
    assert re.fullmatch(r"(\d+:)?\d+:\d\d", kpi_text(page, "sessionDuration"))
    wait_until(lambda: kpi_number(page, "activeShoppers") > 0, timeout=15)

    before = {name: kpi_text(page, name) for name in KPIS}
    page.wait_for_function(
        """([names, before]) => names.some((name) => document.querySelector(
            `[data-kpi="${name}"] .kpi-value`).textContent !== before[name])""",
        arg=[list(KPIS), before],
        timeout=20 * SECONDS,
    )


def test_each_tab_renders_its_charts_and_tables(page: Page, exporter: str) -> None:
    """Every tab draws its charts and fills its tables; screenshots go to tests/page_artifacts."""
    open_live(page, exporter)
    # a few seconds of summaries, so the time series have a line to draw
    page.wait_for_function(
        "document.querySelectorAll('#chart-active-shoppers path.chart-line').length > 0"
        " && document.querySelector('#chart-active-shoppers path.chart-line')"
        ".getAttribute('d').split('L').length > 3",
        timeout=20 * SECONDS,
    )
    for chart in ("active-shoppers", "events-per-second", "session-duration", "cart-actions"):
        expect(page.locator(f"#chart-{chart} path.chart-line").first).to_be_attached()
    expect(page.locator("#chart-active-shoppers path.chart-area")).not_to_have_count(0)
    expect(page.locator("#top-activities li.activity-card")).not_to_have_count(0)
    assert page.locator("#top-activities li.activity-card").count() <= 5
    screenshot(page, "activity-light")

    select_tab(page, "shoppers")
    expect(page.locator("#shopper-rows tr[data-user]")).not_to_have_count(0, timeout=10 * SECONDS)
    first_row = page.locator("#shopper-rows tr[data-user]").first
    expect(first_row.locator(".presence .dot")).to_be_attached()
    expect(first_row.locator(".badge.activity")).not_to_be_empty()
    expect(first_row.locator(".cart-value")).to_have_text(re.compile(r"^\$[\d,]+\.\d\d$"))
    expect(page.locator("#shopper-table th[scope=col]")).to_have_count(7)
    screenshot(page, "shoppers-light")

    select_tab(page, "behavior")
    expect(page.locator("#chart-activity-pie path.chart-slice")).not_to_have_count(
        0, timeout=10 * SECONDS
    )
    expect(page.locator("#chart-engagement rect.chart-bar")).not_to_have_count(0)
    expect(page.locator("#chart-funnel rect.chart-bar")).to_have_count(4)
    expect(page.locator("#store-stats-rows tr")).not_to_have_count(0)
    expect(page.locator("#store-stats-rows th[scope=row]").first).to_have_text("Active shoppers")
    trends = page.locator("#store-stats-rows td.trend").all_inner_texts()
    assert trends
    assert all(re.search(r"up|down|stable|collecting", t) for t in trends), trends
    expect(page.locator("#activity-stats-rows tr")).not_to_have_count(0)
    screenshot(page, "behavior-light")

    select_tab(page, "events")
    expect(page.locator("#event-list li.event")).not_to_have_count(0, timeout=15 * SECONDS)
    first_event = page.locator("#event-list li.event").first
    expect(first_event.locator(".badge.event-type")).not_to_be_empty()
    expect(first_event.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    expect(first_event.locator("button[data-user]")).not_to_be_empty()
    screenshot(page, "events-light")

    page.locator("#theme-button").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.locator("#theme-button")).to_have_attribute("aria-pressed", "true")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(243, 246, 244)", background  # the dark palette applied
    select_tab(page, "activity")
    screenshot(page, "activity-dark")
    select_tab(page, "behavior")
    screenshot(page, "behavior-dark")


def test_event_stream_grows_filters_and_pauses(page: Page, exporter: str) -> None:
    """New events appear newest first, the type filter narrows them, and pause buffers them."""
    open_live(page, exporter)
    select_tab(page, "events")
    events = page.locator("#event-list li.event")
    expect(events).not_to_have_count(0, timeout=15 * SECONDS)
    start = events.count()
    page.wait_for_function(
        f"document.querySelectorAll('#event-list li.event').length > {start}"
        " || document.querySelectorAll('#event-list li.event').length >= 50",
        timeout=20 * SECONDS,
    )
    assert events.count() <= 50
    seqs = [
        int(s)
        for s in page.eval_on_selector_all("#event-list li.event", "l => l.map(e => e.dataset.seq)")
    ]
    assert seqs == sorted(seqs, reverse=True), "newest first"

    first_type = events.first.get_attribute("data-type")
    page.locator("#event-type-filter").select_option(first_type)
    page.wait_for_function(
        """(type) => [...document.querySelectorAll('#event-list li.event')]
            .every((item) => item.dataset.type === type)""",
        arg=first_type,
        timeout=5 * SECONDS,
    )
    expect(events).not_to_have_count(0)
    page.locator("#event-type-filter").select_option("")

    page.locator("#pause-button").click()
    expect(page.locator("#pause-button")).to_have_text("Resume")
    expect(page.locator("#paused-note")).to_be_visible()
    newest_while_paused = events.first.get_attribute("data-seq")
    page.wait_for_function(
        "Number(document.querySelector('#paused-count').textContent) > 0",
        timeout=20 * SECONDS,
    )
    assert events.first.get_attribute("data-seq") == newest_while_paused, (
        "paused list must not move"
    )

    page.locator("#pause-button").click()
    expect(page.locator("#pause-button")).to_have_text("Pause")
    expect(page.locator("#paused-note")).to_be_hidden()
    expect(events.first).not_to_have_attribute("data-seq", newest_while_paused or "")


def test_shopper_search_and_timeline_panel(page: Page, exporter: str) -> None:
    """The shopper search filters by name, and a shopper opens a panel with their timeline."""
    open_live(page, exporter)
    select_tab(page, "shoppers")
    rows = page.locator("#shopper-rows tr[data-user]")
    expect(rows).not_to_have_count(0, timeout=10 * SECONDS)
    name = rows.first.locator(".shopper-name").inner_text()
    # The whole name: the search also matches locations, and a first name alone may be part of
    # one ("Mia" of "Miami, FL", "Diego" of "San Diego, CA").
    page.locator("#shopper-search").fill(name)
    page.wait_for_function(
        """(name) => [...document.querySelectorAll('#shopper-rows .shopper-name')]
            .every((cell) => cell.textContent.toLowerCase().includes(name))""",
        arg=name.lower(),
        timeout=5 * SECONDS,
    )
    expect(rows.first.locator(".shopper-name")).to_contain_text(name)
    page.locator("#shopper-search").fill("no shopper is called this")
    expect(page.locator("#shopper-rows tr.empty")).to_have_text("No shopper matches the search")
    page.locator("#shopper-search").fill("")

    opener = rows.first.locator(".shopper-name")
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#shopper-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#shopper-dialog-title")).not_to_be_empty()
    expect(page.locator("#shopper-facts dt")).not_to_have_count(0)
    expect(page.locator("#shopper-timeline li:not(.empty)")).not_to_have_count(
        0, timeout=10 * SECONDS
    )
    screenshot(page, "shopper-panel-light", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.classList.contains('shopper-name')")


def test_demo_button_stops_and_starts_the_demo(page: Page, exporter: str) -> None:
    """Stop Demo and Start Demo flip the button and the server's demo state."""
    open_live(page, exporter)
    button = page.locator("#demo-button")
    expect(button).to_have_text("Stop Demo", timeout=10 * SECONDS)
    button.click()
    expect(button).to_have_text("Start Demo")
    expect(button).to_be_enabled()
    assert demo_state(exporter)["running"] is False
    button.click()
    expect(button).to_have_text("Stop Demo")
    assert demo_state(exporter)["running"] is True


def test_demo_button_hidden_without_demo_control(page: Page, tmp_path: Path) -> None:
    """With --no-demo-control the page offers no demo button."""
    with run_exporter(tmp_path, "--no-demo-control") as running:
        open_live(page, running.base_url)
        page.wait_for_function("document.querySelector('.kpis').dataset.updated")
        expect(page.locator("#demo-button")).to_be_hidden()


def test_shows_disconnected_and_recovers_when_the_exporter_returns(
    page: Page, tmp_path: Path
) -> None:
    """Stopping the exporter shows "disconnected"; restarting it on the same port brings it back."""
    port = free_port()
    state = page.get_by_test_id("connection-state")
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
    with run_exporter(tmp_path / "first", "--demo", "30", port=port) as first:
        open_live(page, first.base_url)
        page.wait_for_function("document.querySelector('.kpis').dataset.updated")
        first.stop()
        expect(state).to_have_text("disconnected", timeout=15 * SECONDS)
        expect(state).to_be_visible()
    last_seen = page.locator(".kpis").get_attribute("data-updated")

    with run_exporter(tmp_path / "second", "--demo", "30", port=port):
        expect(state).to_have_text("live", timeout=30 * SECONDS)
        expect(page.locator(".kpis")).not_to_have_attribute(
            "data-updated", last_seen or "", timeout=15 * SECONDS
        )
        select_tab(page, "events")
        expect(page.locator("#event-list li.event")).not_to_have_count(0, timeout=20 * SECONDS)
        newest = page.locator("#event-list li.event").first.get_attribute("data-seq")
        expect(page.locator("#event-list li.event").first).not_to_have_attribute(
            "data-seq", newest or "", timeout=20 * SECONDS
        )


def test_keyboard_reaches_and_switches_tabs(page: Page, exporter: str) -> None:
    """Tab reaches the selected tab with a visible focus ring; arrows, Home and End switch tabs."""
    open_live(page, exporter)
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('role')") == "tab":
            break
    else:
        pytest.fail("Tab never reached the tab list")
    focused = page.locator("[role=tab]:focus")
    expect(focused).to_have_id("tab-activity")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"

    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-shoppers")).to_be_focused()
    expect(page.locator("#tab-shoppers")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-shoppers")).to_be_visible()
    expect(page.locator("#panel-activity")).to_be_hidden()
    page.keyboard.press("End")
    expect(page.locator("#tab-events")).to_be_focused()
    expect(page.locator("#panel-events")).to_be_visible()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-activity")).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#tab-events")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Home")
    expect(page.locator("#tab-activity")).to_have_attribute("aria-selected", "true")
    assert page.locator("[role=tab][tabindex='0']").count() == 1, "one tab stop for the list"


def test_phone_width_is_one_column_without_sideways_scrolling(
    browser: Browser, exporter: str
) -> None:
    """At a phone's width the layout is one column and nothing scrolls sideways."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    phone = context.new_page()
    try:
        open_live(phone, exporter)
        phone.wait_for_function("document.querySelector('.kpis').dataset.updated")
        for tab in TABS:
            select_tab(phone, tab)
            overflow = phone.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{tab} scrolls sideways by {overflow}px"
        columns = phone.evaluate(
            "getComputedStyle(document.querySelector('.kpis'))"
            ".gridTemplateColumns.split(' ').length"
        )
        assert columns == 1
        for tab in ("shoppers", "behavior"):
            select_tab(phone, tab)
            phone.evaluate("document.querySelector('nav.tabs').scrollIntoView()")
            screenshot(phone, f"{tab}-phone-dark", full_page=False)
        expect(phone.locator("#shopper-rows tr[data-user]")).not_to_have_count(0)
    finally:
        context.close()


def test_a_sharded_replicas_page_says_which_shard_it_shows(page: Page, tmp_path: Path) -> None:
    """With --shard 1/3 the header badge reads "shard 1/3" and explains it; unsharded, none."""
    with run_exporter(tmp_path, "--shard", "1/3", "--demo", "30") as running:
        open_live(page, running.base_url)
        badge = page.get_by_test_id("shard-badge")
        expect(badge).to_have_text("shard 1/3", timeout=15 * SECONDS)
        expect(badge).to_have_attribute("title", re.compile(r"only the shoppers of shard 1"))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "sharded-replica.png"))
    with run_exporter(tmp_path) as plain:
        open_live(page, plain.base_url)
        expect(page.locator(".kpis")).to_have_attribute(
            "data-updated", re.compile(r".+"), timeout=15 * SECONDS
        )
        expect(page.get_by_test_id("shard-badge")).to_be_hidden()

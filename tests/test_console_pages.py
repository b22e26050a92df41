"""The console in headless Chromium, as staff use it: set up, sign in with a password and a
TOTP code computed from the secret the page shows, add people, read the dashboard and the
audit trail, sign out; keyboard only, axe-clean, and no horizontal scroll at 375 px.

The console runs in-process (uvicorn in a thread, a free port) with a clock the test moves.
Only the console's own origin may be reached. Screenshots go to $DRIPMAIL_TEST_ARTIFACTS,
else <pytest's base temp>/test-artifacts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from campaigns.authoring.spec import Campaign
from campaigns.console.accounts import add_user
from campaigns.console.server import ConsoleServer, make_server
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.audit import entries
from campaigns.storage.store import Store
from tests.console_support import PASSWORD, Clock, add_person
from tests.helpers import utc
from tests.test_studio import artifacts, axe_source, browser, guarded, run_axe  # noqa: F401

NOW = utc("2026-03-09T14:00")
PHONE = {"width": 375, "height": 800}


@contextmanager
def running_console(store: Store, clock: Clock) -> Iterator[ConsoleServer]:
    server = make_server(store, port=0, clock=clock)
    ready = threading.Event()
    server.on_ready = lambda _url: ready.set()
    thread = threading.Thread(target=server.run_console, name="console", daemon=True)
    thread.start()
    assert ready.wait(30), "the console did not start"
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "the console did not stop"


@pytest.fixture
def setting(tmp_path: Path, clinic: Campaign) -> Iterator[tuple[Store, Clock, ConsoleServer]]:
    store = Store(f"sqlite:///{tmp_path / 'console.db'}")
    signup = Signup("pat@example.com", "Pat", "America/New_York", "2026-03-02T10:00", "form")
    enroll(store, clinic, signup, now=NOW)
    clock = Clock(NOW)
    with running_console(store, clock) as server:
        yield store, clock, server
    store.close()


def check_page(page: Page, axe_source: str, artifacts: Path, name: str) -> None:  # noqa: F811
    """axe-clean, charts legible, and no horizontal scroll at 375 px; a screenshot at each
    width."""
    assert run_axe(page, axe_source, iframes=False) == [], name
    assert chart_problems(page) == [], name
    assert unmarked_focus(page) == [], f"{name}: focus not shown on these"
    page.screenshot(path=str(artifacts / f"console-{name}.png"), full_page=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.set_viewport_size(PHONE)
    assert chart_problems(page) == [], f"{name} at 375 px"
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= PHONE["width"], (
        f"{name}: horizontal scroll at 375 px ({scroll}); too wide: {too_wide(page)}"
    )
    page.screenshot(path=str(artifacts / f"console-{name}-375.png"), full_page=True)
    page.set_viewport_size({"width": width or 1280, "height": 900})


# The innermost elements reaching past the viewport's right edge, to name in a failure.
_TOO_WIDE = """() => {
  const edge = document.documentElement.clientWidth + 0.5;
  const wide = [...document.body.querySelectorAll("*")].filter((e) => {
    const box = e.getBoundingClientRect();
    return box.right > edge || box.left + e.scrollWidth > edge;  // itself, or text overflowing it
  });
  return wide.filter((e) => !wide.some((o) => o !== e && e.contains(o))).slice(0, 8).map(
    (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
      + (e.className ? "." + e.className : "")
      + ` (${Math.round(e.getBoundingClientRect().right)} px)`);
}"""


def too_wide(page: Page) -> list[str]:
    """What sticks out past the right edge (a failure names it: no guessing from pixels)."""
    return page.evaluate(_TOO_WIDE)


SMALLEST = 11.0  # CSS px: a chart's smallest text

# Per chart (a figure): each drawing, whether it shows, and the boxes of what it draws.
_CHARTS = """() => [...document.querySelectorAll("figure.chart-box")].map((figure) =>
  [...figure.querySelectorAll("svg")].map((svg) => {
    const shown = getComputedStyle(svg).display !== "none";
    const box = svg.getBoundingClientRect();
    const scale = box.width / svg.viewBox.baseVal.width;
    const rect = (e) => { const r = e.getBoundingClientRect();
      return [r.left, r.top, r.right, r.bottom]; };
    const named = (svg.getAttribute("aria-labelledby") || "").split(" ").map(
      (id) => svg.querySelector(`[id="${id}"]`)?.tagName);
    return {
      id: svg.id, shown, role: svg.getAttribute("role"), named, box: rect(svg),
      texts: [...svg.querySelectorAll("text")].map((t) => ({
        text: t.textContent, box: rect(t),
        px: parseFloat(getComputedStyle(t).fontSize) * scale,
        ticks: t.parentNode === svg ? [] : [...t.parentNode.querySelectorAll("line")].map(rect)})),
      bars: [...svg.querySelectorAll("rect")].map(rect).filter((r) => r[2] > r[0] && r[3] > r[1]),
      columns: [...svg.querySelectorAll("rect")].map((r) => ({
        label: r.querySelector("title").textContent.replace(/: [^:]*$/, ""), box: rect(r)})),
    };
  }))"""


def _cross(a: list[float], b: list[float], slack: float = 0.5) -> bool:
    """Whether two boxes share more than `slack` px each way."""
    return min(a[2], b[2]) - max(a[0], b[0]) > slack and min(a[3], b[3]) - max(a[1], b[1]) > slack


def chart_problems(page: Page) -> list[str]:
    """Everything unreadable in the page's charts, as it renders now (empty: all well)."""
    problems = []
    for drawings in page.evaluate(_CHARTS):
        shown = [d for d in drawings if d["shown"]]
        if len(shown) != 1:
            problems.append(f"{len(shown)} drawings of {[d['id'] for d in drawings]} show")
            continue
        chart = shown[0]
        name = chart["id"]
        if chart["role"] != "img" or chart["named"] != ["title", "desc"]:
            problems.append(f"{name}: role {chart['role']}, labelled by {chart['named']}")
        texts = chart["texts"]
        problems += [
            f"{name}: {t['text']!r} at {t['px']:.1f} px" for t in texts if t["px"] < SMALLEST
        ]
        problems += [
            f"{name}: {t['text']!r} leaves the chart"
            for t in texts
            if any(t["box"][i] < chart["box"][i] - 0.5 for i in (0, 1))
            or any(t["box"][i] > chart["box"][i] + 0.5 for i in (2, 3))
        ]
        problems += [
            f"{name}: {a['text']!r} overlaps {b['text']!r}"
            for n, a in enumerate(texts)
            for b in texts[n + 1 :]
            if _cross(a["box"], b["box"])
        ]
        problems += [
            f"{name}: {t['text']!r} overlaps a bar"
            for t in texts
            if any(_cross(t["box"], bar) for bar in chart["bars"])
        ]
        problems += _misplaced_labels(name, texts, chart["columns"])
    return problems


def _misplaced_labels(name: str, texts: list[dict], columns: list[dict]) -> list[str]:
    """Each label under the columns (a text naming a bar, below every bar) must have a tick
    from the columns' foot at its column's centre, and be centred on the tick or start at it."""
    problems = []
    foot = max((c["box"][3] for c in columns), default=0)
    for t in texts:
        named = t["text"].removesuffix("…")
        under = [
            c
            for c in columns
            if c["label"] == t["text"] or (t["text"].endswith("…") and c["label"].startswith(named))
        ]
        if not under or t["box"][1] < foot - 0.5:
            continue  # not a column's label (a row's label sits above its bar)
        if len(t["ticks"]) != 1:
            problems.append(f"{name}: {t['text']!r} under a column has no tick of its own")
            continue
        left, top, right, bottom = t["ticks"][0]
        x = (left + right) / 2
        centre = min(((c["box"][0] + c["box"][2]) / 2 for c in under), key=lambda c: abs(c - x))
        if abs(x - centre) > 0.5:
            problems.append(f"{name}: {t['text']!r}'s tick is {x - centre:+.1f} px off its column")
        if abs(top - foot) > 0.5 or bottom > t["box"][1] + 0.5:
            problems.append(f"{name}: {t['text']!r}'s tick does not run from the axis to it")
        box = t["box"]
        if abs((box[0] + box[2]) / 2 - x) > 0.5 and abs(box[0] - x) > 0.5:
            problems.append(f"{name}: {t['text']!r} neither centred on its tick nor starting at it")
    return problems


# Whether an element shows it has the focus (an outline or a ring).
_SHOWN = """(e) => {
  const style = getComputedStyle(e);
  return (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0)
    || style.boxShadow !== "none";
}"""

# What has the keyboard focus, and whether it shows it.
_FOCUSED = f"""() => {{
  let e = document.activeElement;
  if (!e || e === document.body) return null;
  const shown = ({_SHOWN})(e);
  const name = e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
    + (e.getAttribute("href") ? "[href=" + e.getAttribute("href") + "]" : "");
  return {{name, shown}};
}}"""


def unmarked_focus(page: Page, limit: int = 80) -> list[str]:
    """Tab through the page from the top: every element that takes the focus must show it."""
    page.evaluate("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur()")
    page.mouse.move(0, 0)
    seen: list[str] = []
    unmarked: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUSED)
        if focused is None or (seen and focused["name"] == seen[0]):
            break  # out of the page, or round to the first again
        seen.append(focused["name"])
        if focused["name"].startswith("iframe"):  # a preview: what is focused inside it
            handle = page.evaluate_handle("document.activeElement").as_element()
            frame = handle.content_frame() if handle is not None else None
            try:
                inner = frame.evaluate(_FOCUSED) if frame is not None else None
            except PlaywrightError:  # the live preview is reloading it: the frame's own ring
                inner = None
            if inner is not None:
                focused = {"name": f"{focused['name']} > {inner['name']}", "shown": inner["shown"]}
        if not focused["shown"] and not _shows_soon(page, focused["name"]):
            unmarked.append(focused["name"])
    page.evaluate("document.activeElement && document.activeElement.blur()")
    return unmarked


def _shows_soon(page: Page, name: str) -> bool:
    """Whether a focused preview frame (nothing focused inside it) shows its ring within a
    few seconds: console-frames.js marks the frame once the focus has moved into it, as
    it sees the move (at once, or within 200 ms). A real missing ring still fails."""
    if not name.startswith("iframe") or " > " in name:  # a focused element inside: its own ring
        return False
    try:
        page.wait_for_function(f"() => ({_SHOWN})(document.activeElement)", timeout=5000)
    except PlaywrightTimeout:
        return False
    return True


def tab_to(page: Page, selector: str, limit: int = 40) -> None:
    """Press Tab until `selector` has the focus (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def type_into(page: Page, selector: str, value: str) -> None:
    tab_to(page, selector)
    page.keyboard.type(value)


def test_an_admin_sets_up_signs_in_adds_an_editor_and_reads_every_page_by_keyboard(
    browser: Browser,  # noqa: F811
    axe_source: str,  # noqa: F811
    artifacts: Path,  # noqa: F811
    setting: tuple[Store, Clock, ConsoleServer],
    clinic: Campaign,
) -> None:
    store, clock, server = setting
    origin = server.url.rstrip("/")
    made = add_user(store, "ana@clinic.example", "admin", name="Ana <b>{{ 7*7 }}</b>", now=clock())
    with guarded(
        browser, (server.url,), viewport={"width": 1280, "height": 900}, bypass_csp=True
    ) as (
        context,
        _guard,
    ):
        page = context.new_page()
        # Set-up: the link's page, password twice, the code from the secret shown.
        page.goto(f"{origin}/setup/{made.token}")
        expect(page.locator("h1")).to_have_text("Set up your account")
        check_page(page, axe_source, artifacts, "setup")
        secret = page.locator("#totp-secret").inner_text()
        assert page.locator(".qr svg").count() == 1
        type_into(page, "#password", PASSWORD)
        type_into(page, "#confirm", PASSWORD)
        type_into(page, "#code", pyotp.TOTP(secret).at(clock()))
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("Your account is ready")
        expect(page.locator("#recovery-codes li")).to_have_count(10)
        check_page(page, axe_source, artifacts, "setup-done")
        clock.advance(seconds=31)

        # Sign in: the skip link first, then email, password, and the code.
        page.goto(f"{origin}/")
        assert page.url == f"{origin}/sign-in?next=/"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link"
        expect(page.locator("#email")).to_have_attribute("autocomplete", "username")
        expect(page.locator("#password")).to_have_attribute("autocomplete", "current-password")
        check_page(page, axe_source, artifacts, "sign-in")
        type_into(page, "#email", "ana@clinic.example")
        type_into(page, "#password", "a wrong password")
        page.keyboard.press("Enter")
        expect(page.locator(".problem")).to_contain_text("Sign-in failed")
        check_page(page, axe_source, artifacts, "sign-in-failed")
        page.fill("#password", "")
        type_into(page, "#password", PASSWORD)
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("Authenticator code")
        expect(page.locator("#code")).to_have_attribute("autocomplete", "one-time-code")
        check_page(page, axe_source, artifacts, "code")
        type_into(page, "#code", pyotp.TOTP(secret).at(clock()))
        page.keyboard.press("Enter")

        # The dashboard: the published campaign with its counts.
        expect(page.locator("h1")).to_have_text("Campaigns")
        row = page.locator("#campaigns tbody tr")
        expect(row).to_have_count(1)
        expect(row.locator("th")).to_have_text(clinic.name)
        expect(row.locator('[data-label="State"]')).to_have_text("published")
        expect(row.locator('[data-label="Enrolled"]')).to_have_text("1")
        expect(page.locator(".who")).to_contain_text("Ana <b>{{ 7*7 }}</b>")
        assert "pat@example.com" not in page.content()
        check_page(page, axe_source, artifacts, "dashboard")

        # People: add an editor by keyboard; the link is shown once.
        tab_to(page, 'a[href="/people"]')
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("People")
        type_into(page, "#new-email", "ed@clinic.example")
        type_into(page, "#new-name", "<script>alert(1)</script>")
        tab_to(page, "#new-role")
        page.select_option("#new-role", "editor")
        tab_to(page, "#add-person")
        page.keyboard.press("Enter")
        link = page.locator("#setup-link")
        expect(link).to_contain_text(f"{origin}/setup/")
        expect(page.locator("table")).to_contain_text("<script>alert(1)</script>")
        check_page(page, axe_source, artifacts, "people")

        # The audit trail.
        tab_to(page, 'a[href="/audit"]')
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("Audit trail")
        expect(page.locator("#audit")).to_contain_text("user.add")
        check_page(page, axe_source, artifacts, "audit")

        # Sign out by keyboard; the console is closed again.
        tab_to(page, "#sign-out")
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("Sign in")
        page.goto(f"{origin}/people")
        assert page.url.startswith(f"{origin}/sign-in")

        # A link already used (or never valid) says so, and nothing else.
        page.goto(f"{origin}/setup/{made.token}")
        expect(page.locator("h1")).to_have_text("This set-up link does not work")
        check_page(page, axe_source, artifacts, "setup-invalid")

    actions = [(e.actor_email, e.action) for e in entries(store) if e.action != "publish"]
    assert actions == [
        (None, "user.add"),
        ("ana@clinic.example", "user.setup"),
        ("ana@clinic.example", "sign-in.failed"),
        ("ana@clinic.example", "sign-in"),
        ("ana@clinic.example", "user.add"),
        ("ana@clinic.example", "sign-out"),
    ]


def test_a_viewer_sees_the_dashboard_and_a_refusal_for_people(
    browser: Browser,  # noqa: F811
    axe_source: str,  # noqa: F811
    artifacts: Path,  # noqa: F811
    setting: tuple[Store, Clock, ConsoleServer],
) -> None:
    store, clock, server = setting
    viewer = add_person(store, "viewer", clock, totp=False)
    origin = server.url.rstrip("/")
    with guarded(browser, (server.url,), viewport=PHONE, bypass_csp=True) as (context, _guard):
        page = context.new_page()
        page.goto(f"{origin}/sign-in")
        page.fill("#email", viewer.email)
        page.fill("#password", viewer.password)
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("Campaigns")
        expect(page.locator('a[href="/people"]')).to_have_count(0)
        expect(page.locator('a[href="/audit"]')).to_have_count(0)
        check_page(page, axe_source, artifacts, "dashboard-viewer")
        response = page.goto(f"{origin}/people")
        assert response is not None and response.status == 403
        expect(page.locator("h1")).to_have_text("Not allowed")
        check_page(page, axe_source, artifacts, "refused")

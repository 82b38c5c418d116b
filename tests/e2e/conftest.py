"""Browser tests: headless Debian Chromium driven by Playwright (never a downloaded browser)."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium; bin/test does this)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between browser steps are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        yield page
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page_errors(browser_page):
    """Uncaught script errors and failed (4xx/5xx) requests of the page, as readable lines.

    A test asserts the list is empty at the end: a page that "works" while its script
    throws or an image 404s is still broken.
    """
    errors: list[str] = []
    browser_page.on("pageerror", lambda exc: errors.append(f"script error: {exc}"))
    browser_page.on(
        "response",
        lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None,
    )
    return errors


def curators_group():
    """The `curators` group, made again if an earlier transactional test flushed it away.

    A data migration creates it, but a transactional test's flush empties every table, and
    only content types and permissions come back (post_migrate), not migration data.
    """
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name="curators")
    group.permissions.add(
        Permission.objects.get(codename="curate_genre", content_type__app_label="catalog")
    )
    return group


def sign_in(page, base_url: str, username: str, password: str, next_path: str) -> None:
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def screenshot(page, name: str) -> Path:
    """Keep a full-page screenshot in var/test-artifacts/ (for people, not assertions)."""
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def broken_images(page, selector: str = "img") -> list[str]:
    """The `src` of every matching image that finished loading without pixels (lazy images
    are switched to eager first, so images below the fold are checked too)."""
    page.eval_on_selector_all(selector, "imgs => imgs.forEach(i => { i.loading = 'eager'; })")
    page.wait_for_function(
        "sel => [...document.querySelectorAll(sel)].every(i => i.complete)", arg=selector
    )
    return page.eval_on_selector_all(
        selector, "imgs => imgs.filter(i => i.naturalWidth === 0).map(i => i.src)"
    )


def cards(page, selector: str = ".results .card") -> list[dict]:
    """The artwork cards of a list: linked artwork id, title and the text of each meta line."""
    return page.eval_on_selector_all(
        selector,
        """cards => cards.map(c => {
            const link = c.querySelector("a[href*='/artworks/']");
            const m = link ? link.getAttribute("href").match(/artworks\\/(\\d+)\\//) : null;
            const title = c.querySelector(".title");
            return {
                id: m ? Number(m[1]) : null,
                title: title ? title.innerText.trim() : "",
                meta: [...c.querySelectorAll(".meta")].map(e => e.innerText.trim()),
            };
        })""",
    )

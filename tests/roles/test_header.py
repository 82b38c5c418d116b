"""Sign-in, sign-out and the header through the pages, per role."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.roles.checks import text
from tests.roles.matrix import PASSWORD, ROLES

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", ROLES)
def test_header_shows_who_is_signed_in(role, client, world):
    w = world(role)
    if w.actor:
        client.force_login(w.actor)
    body = text(client.get("/"))
    header = body.split("<header", 1)[1].split("</header>", 1)[0]
    if w.actor is None:
        assert 'href="/accounts/login/?next=/"' in header and "Sign out" not in header
    else:
        assert w.actor.username in header.split('class="who"', 1)[1]
        # Sign-out is a POST form with a CSRF token (Django 5 refuses GET /accounts/logout/).
        assert 'method="post" action="/accounts/logout/"' in header
        assert 'name="csrfmiddlewaretoken"' in header and "Sign in</a>" not in header
    assert ('href="/review/"' in header) == (role in ("curator", "admin"))
    assert ('href="/admin/"' in header) == (role == "admin")


def _csrf(html: str) -> str:
    return html.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]


def test_sign_in_and_out_through_the_pages(world):
    """The real pages with CSRF checks on, as a browser would use them."""
    w = world("curator")
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/accounts/login/?next=/review/")
    assert page.status_code == 200 and 'name="username"' in text(page)
    wrong = browser.post(
        "/accounts/login/",
        {"username": "cora", "password": "nope", "csrfmiddlewaretoken": _csrf(text(page))},
    )
    assert wrong.status_code == 200 and "didn't match" in text(wrong)
    assert "_auth_user_id" not in browser.session
    signed_in = browser.post(
        "/accounts/login/",
        {
            "username": "cora",
            "password": PASSWORD,
            "next": "/review/",
            "csrfmiddlewaretoken": _csrf(text(wrong)),
        },
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == "/review/"
    home = text(browser.get("/"))
    assert "cora" in home.split('class="who"', 1)[1].split("</span>", 1)[0]
    # Without the token the sign-out form's post is refused; with it, it signs out.
    assert browser.post("/accounts/logout/").status_code == 403
    out = browser.post("/accounts/logout/", {"csrfmiddlewaretoken": _csrf(home)})
    assert out.status_code == 302 and out["Location"] == "/"
    assert "_auth_user_id" not in browser.session
    assert "Sign in</a>" in text(browser.get("/"))
    assert w.actor.username == "cora"


def test_signed_in_user_sent_to_a_curator_page_is_told_why(world, client):
    """The sign-in page, reached with ?next= by a signed-in non-curator, explains itself."""
    client.force_login(world("user").actor)
    page = client.get("/accounts/login/?next=/review/")
    assert page.status_code == 200 and "cannot open that page" in text(page)


def test_a_curators_session_cannot_be_used_cross_site(world):
    """API writes by session need the CSRF token, so another site cannot post them with a
    curator's cookie (the test client skips this check unless asked)."""
    w = world("curator")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(w.actor)
    art = w.artwork("a")
    url = f"/api/artworks/{art.pk}/genre/"
    body = {"genre": "cityscape", "expected_version": art.label_version}
    forged = browser.post(url, body, content_type="application/json")
    assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
    assert w.artwork("a").label_version == art.label_version
    token = _csrf(text(browser.get("/")))
    sent = browser.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert sent.status_code == 200 and w.artwork("a").genre.name == "cityscape"

"""Every `MATRIX` case run for every role (see the package's docstring)."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from tests.roles.cases import CASES
from tests.roles.checks import text
from tests.roles.matrix import ROLES, ROWS, Row
from tests.roles.world import snapshot

pytestmark = pytest.mark.django_db


def _params():
    for row in ROWS:
        for role in ROLES:
            if row.expect[role] != "-":
                yield pytest.param(row, role, id=f"{row.case}-{role}")


@pytest.mark.parametrize(("row", "role"), list(_params()))
def test_role_matrix(row: Row, role: str, client, world):
    case = CASES[row.case]
    w = world(role)
    if w.actor:
        client.force_login(w.actor)
    if case.needs:
        case.needs(w)
    request = case.prepare(w)
    mail.outbox.clear()
    before = snapshot(w.settings)

    response = request(client)

    expected = row.expect[role]
    if expected == "ok":
        assert response.status_code in case.ok, (response.status_code, text(response)[:500])
        if case.check:
            case.check(w, response, client)
        if not case.writes:
            assert snapshot(w.settings) == before, "a read changed the database"
        return
    code = response.status_code
    if expected == "denied":
        assert code in ((401, 403) if role == "anonymous" else (403,)), code
    elif expected == "login":
        assert code == 302 and response["Location"].startswith(reverse("login") + "?next="), code
    elif expected == "admin-login":
        login = reverse("admin:login") + "?next="
        assert code == 302 and response["Location"].startswith(login), code
    else:
        assert code == int(expected), code
    assert snapshot(w.settings) == before, "a refused request changed the database"
    assert not mail.outbox

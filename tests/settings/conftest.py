"""Settings fixtures: an admin of the default clinic and a second clinic with its own connection."""

from __future__ import annotations

import pytest


@pytest.fixture
def admin(clinic, make_user):
    return make_user(clinic, "admin", email="ada@sunrise.test", name="Ada")


@pytest.fixture
def admin_client(client, login, admin):
    return login(admin)


@pytest.fixture
def other_conn(make_clinic, db):
    """A connection of another clinic (tenant isolation checks)."""
    from wa_portal.services import connections

    other = make_clinic("moonlight")
    return connections.create_connection(
        clinic=other, provider="sandbox", settings={"display_phone": "+34910000099"}, label="Moonlight"
    )

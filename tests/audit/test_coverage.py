"""The table in web/audit_hooks.py matches the app: no stale names, no write endpoint left out."""

from __future__ import annotations

from wa_portal.web.audit_hooks import AUDITED, AUDITED_BLUEPRINTS, IGNORED, WRITE_METHODS


def _routes(app) -> set[tuple[str, str]]:
    return {(rule.endpoint, method) for rule in app.url_map.iter_rules() for method in rule.methods or ()}


def test_every_table_entry_names_a_registered_endpoint_and_method(app):
    routes = _routes(app)
    missing = sorted(key for key in [*AUDITED, *IGNORED] if key not in routes)
    assert missing == [], f"audit table names endpoints the app does not have: {missing}"


def test_no_entry_is_both_audited_and_ignored_and_every_ignore_says_why():
    assert set(AUDITED) & set(IGNORED) == set()
    assert all(len(reason) > 10 for reason in IGNORED.values())


def test_every_write_endpoint_of_the_patient_data_blueprints_is_audited_or_ignored(app):
    unaudited = sorted(
        (endpoint, method)
        for endpoint, method in _routes(app)
        if endpoint.split(".")[0] in AUDITED_BLUEPRINTS
        and method in WRITE_METHODS
        and (endpoint, method) not in AUDITED
        and (endpoint, method) not in IGNORED
    )
    assert unaudited == [], (
        "these endpoints change data but leave no audit row; add them to AUDITED "
        f"(or to IGNORED with a reason) in wa_portal/web/audit_hooks.py: {unaudited}"
    )


def test_the_blueprints_checked_above_exist(app):
    # A renamed blueprint would make the check above pass vacuously.
    assert set(AUDITED_BLUEPRINTS) <= set(app.blueprints)

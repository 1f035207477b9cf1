"""The migrations build exactly the schema the models describe, on PostgreSQL and on SQLite."""

from __future__ import annotations

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.conftest import ROOT, _pg_admin_url, _with_db, app_config


def _diff(app) -> list:
    from wa_portal.extensions import db

    with app.app_context(), db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        return compare_metadata(ctx, db.metadata)


# SQLite cannot reflect the PostgreSQL-only trigram expression index; alembic says so and skips it.
@pytest.mark.filterwarnings(
    "ignore:autogenerate skipping metadata-specified expression-based index:UserWarning"
)
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_upgrade_from_empty_matches_models(backend, tmp_path, redis_url):
    from flask_migrate import downgrade, upgrade

    from wa_portal import create_app
    from wa_portal.extensions import db

    admin = _pg_admin_url()
    name = f"wa_migr_{tmp_path.name[-20:].replace('-', '_').lower()}"
    if backend == "postgresql":
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = _with_db(admin, name)
    else:
        url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    app = create_app(app_config(url, redis_url))
    try:
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"), revision="heads")
        assert _diff(app) == []
        with app.app_context():
            downgrade(directory=str(ROOT / "migrations"), revision="base")
            upgrade(directory=str(ROOT / "migrations"), revision="heads")
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if backend == "postgresql":
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

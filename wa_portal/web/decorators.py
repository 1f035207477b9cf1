"""Role checks and the page-or-fragment helper shared by the blueprints."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app, make_response, render_template
from flask_login import current_user, login_required
from htmx_flask import request

F = TypeVar("F", bound=Callable[..., Any])


def roles_required(*roles: str) -> Callable[[F], F]:
    """Login plus one of ``roles``, checked on the server for every request."""

    def decorator(view: F) -> F:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.has_role(*roles):
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def wants_fragment() -> bool:
    """A plain htmx request gets the partial; history restores and boosted links get the page."""
    h = request.htmx
    return bool(h) and not h.history_restore_request and not h.boosted


def render_page_or_fragment(page: str, fragment: str, **ctx: Any):
    resp = make_response(render_template(fragment if wants_fragment() else page, **ctx))
    resp.headers["Vary"] = "HX-Request"
    return resp


def public_base_url() -> str:
    """Where providers must call us: PUBLIC_BASE_URL, else the address this page was opened on."""
    return (current_app.config.get("PUBLIC_BASE_URL") or request.host_url).rstrip("/")

"""The one role model: every route has a rule, the pages' sections and user roles agree, and
the security model's "Roles" table (docs/security.md) is the one ``notifier.auth.access`` makes."""

from __future__ import annotations

from fastapi.routing import iter_route_contexts

from notifier.app import create_app
from notifier.auth import access
from notifier.settings import PROJECT_ROOT
from notifier.users.service import ROLES as USER_ROLES
from notifier.web.deps import SECTIONS


def test_every_route_of_the_app_has_a_rule_and_every_rule_a_route() -> None:
    app = create_app()
    routes = {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if route.path is not None
        for method in (route.methods or {"GET"}) - {"HEAD"}
    }
    ruled = {(method, path.partition("?")[0]) for method, path in access.ROUTES}
    assert sorted(routes - ruled) == [], "add these routes to notifier/auth/access.py"
    assert sorted(ruled - routes) == [], "these rules name no route"


def test_a_route_has_one_rule() -> None:
    listed = [route for group in access.GROUPS for route in group.routes]
    assert len(listed) == len(set(listed))


def test_admins_may_do_all_that_any_role_may() -> None:
    for group in access.GROUPS:
        if group.rule.gate == "roles":
            assert "admin" in group.rule.roles, group.name


def test_the_pages_sections_follow_the_table() -> None:
    for section, roles in SECTIONS.items():
        home = access.rule_for("GET", f"/{section}")
        assert home is not None and home.roles == {*roles, "admin"}


def test_people_have_every_role_but_producer() -> None:
    assert USER_ROLES == access.USER_ROLES
    assert set(access.ROLES) - set(access.USER_ROLES) == {"producer"}


def test_the_security_model_shows_the_table() -> None:
    page = (PROJECT_ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert access.markdown_table() in page, (
        "docs/security.md's Roles table differs from notifier.auth.access.markdown_table(); paste:\n"
        + access.markdown_table()
    )

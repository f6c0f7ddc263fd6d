"""Who may do what: the one role model, and a rule for every route.

API keys and users share the roles (a user is never a ``producer``):

- ``producer``: the billing system. Posts events; reads the status of its own
  events only (another producer's event is a 404).
- ``ops``: the delivery log, deliveries and accounts with personal data
  masked; retries and cancels deliveries (the ops pages); previews notices.
- ``supervisor``: what ops may, and personal data unmasked (every unmasked
  view is one entry in the audit trail); supervises escalation cases: every
  case, reassigning (to any area), adding protections to accounts, outcomes on any
  case, the counts.
- ``agent``: their own escalation cases only, with the contact each needs
  (the phone for a call, the address for a visit).
- ``admin``: keys, users, agents and policy (the CLI); may do everything.

:data:`GROUPS` gives every route (method and path template, as FastAPI
routes them) its rule: the roles a key or a signed-in user needs, or one of
the gates :data:`PUBLIC`, :data:`SIGNED_IN`, :data:`TWILIO_SIGNATURE`,
:data:`METRICS_TOKEN`. The routes enforce their rule with their own
dependencies (``require(...)`` and ``OpsDep`` for keys, ``OpsUser``,
``AgentUser``, ``SupervisorUser`` for pages, ``signed_form``, the metrics
token); ``tests/integration/test_access_matrix.py`` walks every route of
``create_app()`` and checks each role against this table, so a route without
a rule here fails it. What a role sees inside a route (own events, own cases,
masked or unmasked) is a data rule, written in each rule's ``notes`` and
tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GROUPS",
    "METRICS_TOKEN",
    "PUBLIC",
    "ROLES",
    "ROUTES",
    "SIGNED_IN",
    "TWILIO_SIGNATURE",
    "USER_ROLES",
    "Group",
    "Role",
    "Rule",
    "markdown_table",
    "roles",
    "rule_for",
]

Role = Literal["producer", "ops", "agent", "supervisor", "admin"]
ROLES: tuple[Role, ...] = ("producer", "ops", "agent", "supervisor", "admin")
USER_ROLES: tuple[Role, ...] = ("ops", "agent", "supervisor", "admin")
"""A person's roles: all but ``producer`` (a program)."""
Gate = Literal["roles", "public", "signed-in", "twilio-signature", "url-token", "metrics-token"]


@dataclass(frozen=True)
class Rule:
    gate: Gate
    roles: frozenset[Role] = frozenset()
    """For ``gate == "roles"``: who is let in (admin always is)."""
    notes: tuple[tuple[str, str], ...] = ()
    """A data rule per role inside the route: ``("agent", "own cases")``."""

    def admits(self, role: Role) -> bool:
        """Whether a key or user of ``role`` passes the route's check (``roles`` gates only)."""
        return self.gate == "roles" and role in self.roles

    def note(self, role: str) -> str:
        return dict(self.notes).get(role, "")


def roles(*names: Role, **notes: str) -> Rule:
    """A rule letting in ``names`` and admins; ``notes`` are per-role data rules."""
    return Rule(
        gate="roles",
        roles=frozenset((*names, "admin")),
        notes=tuple(notes.items()),
    )


PUBLIC = Rule(gate="public")
"""Anyone, no credentials."""
SIGNED_IN = Rule(gate="signed-in")
"""Any signed-in user, whatever the role."""
TWILIO_SIGNATURE = Rule(gate="twilio-signature")
"""Twilio's ``X-Twilio-Signature`` over the URL and form (and the URL's own token); no key or
user opens it."""
URL_TOKEN = Rule(gate="url-token")
"""The signed, dated per-delivery token in the URL alone (Mitake signs nothing); no key or user
opens it."""
METRICS_TOKEN = Rule(gate="metrics-token")
"""``Authorization: Bearer <NOTIFIER_METRICS_TOKEN>`` (open while it is unset); no key opens it."""

_AUDITED = {"supervisor": "audited", "admin": "audited"}
_LINKED = {
    "agent": "own list",
    "supervisor": "own list, if linked to an agent",
    "admin": "own list, if linked to an agent",
}
"""Lists of the caller's own agent: a key or user not linked to an active agent gets 403."""


@dataclass(frozen=True)
class Group:
    """Routes that share one rule, as the Roles table of docs/security.md shows them."""

    name: str
    rule: Rule
    routes: tuple[tuple[str, str], ...]
    """``(method, path template)``; a ``?query`` marks a variant of a route with its own rule."""
    credentials: Literal["key", "user", "none"] = "key"
    """What a caller shows: an API key (``/v1``), a signed-in session (pages), or nothing."""


GROUPS: tuple[Group, ...] = (
    # --- the JSON API (/v1), API keys --------------------------------------------------------
    Group(
        "post events",
        roles("producer"),
        (("POST", "/v1/events"), ("POST", "/v1/events/batch")),
    ),
    Group(
        "an event's status",
        roles("producer", producer="own events"),
        (("GET", "/v1/events/{event_id}"),),
    ),
    Group(
        "the producer's callback URL",
        roles("producer", producer="own"),
        (
            ("GET", "/v1/producer/callback"),
            ("PUT", "/v1/producer/callback"),
            ("DELETE", "/v1/producer/callback"),
        ),
    ),
    Group(
        "callbacks sent to producers",
        roles("producer", "ops", "supervisor", producer="own"),
        (("GET", "/v1/producer/callbacks"),),
    ),
    Group(
        "delivery log, deliveries, accounts (masked), previews",
        roles("ops", "supervisor"),
        (
            ("GET", "/v1/deliveries"),
            ("GET", "/v1/deliveries/{delivery_id}"),
            ("GET", "/v1/accounts/{account_no}"),
            ("GET", "/v1/templates/preview"),
        ),
    ),
    Group(
        "an account unmasked",
        roles("supervisor", **_AUDITED),
        (("GET", "/v1/accounts/{account_no}?unmasked=true"),),
    ),
    Group(
        "today's list, its export and notices",
        roles("agent", "supervisor", **_LINKED),
        (("GET", "/v1/escalations/mine"), ("GET", "/v1/escalations/mine/notices.pdf")),
    ),
    Group(
        "one case, its notice, an outcome",
        roles("agent", "supervisor", agent="own cases", **_AUDITED),
        (
            ("GET", "/v1/escalations/{case_id}"),
            ("GET", "/v1/escalations/{case_id}/notice.pdf"),
            ("POST", "/v1/escalations/{case_id}/outcome"),
        ),
    ),
    Group(
        "every case, reassigning",
        roles("supervisor", **_AUDITED),
        (("GET", "/v1/escalations"), ("POST", "/v1/escalations/{case_id}/assign")),
    ),
    Group(
        "an account's service record (proof of service), JSON or PDF",
        roles("supervisor", supervisor="PDF audited", admin="PDF audited"),
        (("GET", "/v1/accounts/{account_no}/service-record"),),
    ),
    Group(
        "case counts, agents, sweep runs",
        roles("supervisor"),
        (
            ("GET", "/v1/escalations/stats"),
            ("GET", "/v1/agents"),
            ("GET", "/v1/escalations/sweeps/{run_id}"),
        ),
    ),
    Group("start a sweep", roles(), (("POST", "/v1/escalations/sweeps"),)),
    Group(
        "holds: place and release (an area hold: supervisors)",
        roles("producer", "supervisor"),
        (("POST", "/v1/holds"), ("DELETE", "/v1/holds/{hold_id}")),
    ),
    Group("holds: list", roles("producer", "ops", "supervisor"), (("GET", "/v1/holds"),)),
    Group(
        "add or change an agent (capacity, languages)",
        roles(admin="audited"),
        (("POST", "/v1/agents"), ("PATCH", "/v1/agents/{agent_id}")),
    ),
    Group(
        "add a protection to an account",
        roles("supervisor", **_AUDITED),
        (("POST", "/v1/accounts/{account_no}/protections"),),
    ),
    Group(
        "the collections ladder: cases by stage, a printed final demand",
        roles("supervisor", **_AUDITED),
        (("GET", "/v1/ladder"), ("GET", "/v1/ladder/{case_id}/final-demand.pdf")),
    ),
    Group(
        "Twilio status reports and voice menu",
        TWILIO_SIGNATURE,
        (
            ("POST", "/v1/callbacks/twilio/status/{token}"),
            ("POST", "/v1/callbacks/twilio/gather/{token}"),
            ("POST", "/v1/callbacks/twilio/machine/{token}"),
        ),
        credentials="none",
    ),
    Group(
        "Mitake delivery reports",
        URL_TOKEN,
        (
            ("GET", "/v1/callbacks/mitake/status/{token}"),
            ("POST", "/v1/callbacks/mitake/status/{token}"),
        ),
        credentials="none",
    ),
    Group("metrics", METRICS_TOKEN, (("GET", "/metrics"),), credentials="none"),
    # --- pages, signed-in users -------------------------------------------------------------
    Group(
        "ops pages: log, a notification, retry/cancel, dashboard, audit, unreachable customers",
        roles("ops", "supervisor"),
        (
            ("GET", "/ops"),
            ("GET", "/ops/deliveries/{delivery_id}"),
            ("GET", "/ops/notifications/{notification_id}"),
            ("GET", "/ops/deliveries/{delivery_id}/email.html"),
            ("POST", "/ops/deliveries/{delivery_id}/retry"),
            ("POST", "/ops/deliveries/{delivery_id}/cancel"),
            ("GET", "/ops/dashboard"),
            ("GET", "/ops/audit"),
            ("GET", "/ops/unreachable"),
            ("GET", "/ops/unreachable.{fmt}"),
        ),
        credentials="user",
    ),
    Group(
        "ops pages: the log's CSV, send now, reprint, bulk actions (confirmed), print batches, "
        "sweep runs, dead letters",
        roles("ops", "supervisor"),
        (
            ("GET", "/ops/deliveries.csv"),
            ("POST", "/ops/deliveries/{delivery_id}/send-now"),
            ("POST", "/ops/deliveries/{delivery_id}/reprint"),
            ("POST", "/ops/bulk"),
            ("POST", "/ops/bulk/confirm"),
            ("GET", "/ops/print-batches"),
            ("GET", "/ops/print-batches/{batch_id}"),
            ("GET", "/ops/sweeps"),
            ("GET", "/ops/dead-letters"),
        ),
        credentials="user",
    ),
    Group(
        "agent pages: today's list (supervisors: any area)",
        roles("agent", "supervisor", agent="own list", **_AUDITED),
        (("GET", "/agent"),),
        credentials="user",
    ),
    Group(
        "agent pages: downloads and notices",
        roles("agent", "supervisor", **_LINKED),
        (("GET", "/agent/export.{fmt}"), ("GET", "/agent/notices.pdf")),
        credentials="user",
    ),
    Group(
        "agent pages: an outcome",
        roles("agent", "supervisor", agent="own cases", **_AUDITED),
        (("POST", "/agent/cases/{case_id}/outcome"),),
        credentials="user",
    ),
    Group(
        "supervisor pages: the collections ladder",
        roles("supervisor"),
        (("GET", "/agent/ladder"),),
        credentials="user",
    ),
    Group(
        "agent pages: an account's service record (PDF)",
        roles("supervisor", **_AUDITED),
        (("GET", "/agent/accounts/{account_no}/service-record.pdf"),),
        credentials="user",
    ),
    Group(
        "agent pages: reassigning (one case or the ticked ones), adding a protection",
        roles("supervisor", **_AUDITED),
        (
            ("POST", "/agent/cases/{case_id}/assign"),
            ("POST", "/agent/cases/reassign"),
            ("POST", "/agent/accounts/{account_no}/protections"),
        ),
        credentials="user",
    ),
    Group(
        "agent pages: holds, placing and releasing them",
        roles("supervisor", **_AUDITED),
        (
            ("GET", "/agent/holds"),
            ("POST", "/agent/holds"),
            ("POST", "/agent/holds/{hold_id}/release"),
        ),
        credentials="user",
    ),
    Group("sign out", SIGNED_IN, (("POST", "/sign-out"),), credentials="user"),
    Group(
        "one's own TOTP key",
        SIGNED_IN,
        (("GET", "/account/totp"), ("POST", "/account/totp")),
        credentials="user",
    ),
    Group(
        "home, sign in, language",
        PUBLIC,
        (("GET", "/"), ("GET", "/sign-in"), ("POST", "/sign-in"), ("POST", "/language")),
        credentials="none",
    ),
    Group(
        # Each needs the pending session of a right password, or the directory's answer.
        "sign-in steps: TOTP code, TOTP enrolment, the directory",
        PUBLIC,
        (
            ("GET", "/sign-in/totp"),
            ("POST", "/sign-in/totp"),
            ("GET", "/sign-in/enrol"),
            ("POST", "/sign-in/enrol"),
            ("GET", "/sign-in/oidc"),
            ("GET", "/sign-in/oidc/callback"),
        ),
        credentials="none",
    ),
    Group(
        "health, API docs, static files",
        PUBLIC,
        (
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
            ("GET", "/redoc"),
            ("GET", "/static/apidocs"),
            ("GET", "/static"),
        ),
        credentials="none",
    ),
)

ROUTES: dict[tuple[str, str], Rule] = {
    route: group.rule for group in GROUPS for route in group.routes
}
"""``(method, path template)`` → its rule; ``?query`` keys are variants of a route."""


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a route, or None if it has none (a test failure)."""
    return ROUTES.get((method.upper(), path))


def _cells(group: Group) -> Iterator[str]:
    rule = group.rule
    for role in ROLES:
        if rule.gate == "public":
            yield "✓"
        elif rule.gate == "signed-in":
            yield "—" if role == "producer" else "✓"
        elif not rule.admits(role):
            yield "—"
        else:
            note = rule.note(role)
            yield f"✓ ({note})" if note else "✓"


_GATE_TEXT = {
    "public": "nothing",
    "signed-in": "signed in",
    "twilio-signature": "Twilio's signature",
    "url-token": "the URL's signed token",
    "metrics-token": "`NOTIFIER_METRICS_TOKEN`",
}


def markdown_table() -> str:
    """The "Roles" table of docs/security.md: route groups × roles, from :data:`GROUPS`."""
    head = ["what", "routes", "needs", *ROLES]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for group in GROUPS:
        routes = ", ".join(f"`{method} {path}`" for method, path in group.routes)
        if group.rule.gate == "roles":
            needs = "a key" if group.credentials == "key" else "signed in"
        else:
            needs = _GATE_TEXT[group.rule.gate]
        lines.append("| " + " | ".join([group.name, routes, needs, *_cells(group)]) + " |")
    return "\n".join(lines) + "\n"

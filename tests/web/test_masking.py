"""Ops see personal data masked on every page and download: a sweep of every page they may open."""

from __future__ import annotations

import io
import re
import zipfile

from sqlmodel import select

from notifier.deliveries.models import Delivery
from notifier.web import PAGES
from tests.support import events
from tests.support.stack import Stack
from tests.support.web import PASSWORD, Browser, new_user

PHONE = "+886900000001"  # the sandbox refuses it as an invalid number
ADDRESS = "苗栗縣頭份市中正路99號"


def _ops_pages() -> list[str]:
    """Every page path a GET reaches, as the routers declare them (a new page is swept too)."""
    return sorted(
        {route.path for module in PAGES for route in module.router.routes
         if "GET" in getattr(route, "methods", ())}
    )  # fmt: skip


def _text(body: bytes) -> str:
    """A page's text, or every member's text of a spreadsheet (XLSX and ODS are zips)."""
    if body[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            return "\n".join(
                archive.read(name).decode("utf-8", "replace") for name in archive.namelist()
            )
    return body.decode("utf-8", "replace")


def test_no_page_or_download_shows_ops_a_phone_email_or_address_unmasked(stack: Stack) -> None:
    acct = events.account(phone=PHONE, push_tokens=None, address=ADDRESS)
    email = acct["email"]
    stack.post(events.unpaid(acct))
    settled = stack.settled(acct["account_no"], count=3)  # SMS refused, email, the postcard
    nobody = events.account(phone=None, email=None, push_tokens=None, address=None)
    stack.post(events.unpaid(nobody))  # reaches nobody: the unreachable list
    [sms] = [d for d in settled if d.channel == "sms"]
    with stack.db() as session:
        # What Twilio answers for a bad number names it: the reason ops read is the provider's.
        row = session.exec(select(Delivery).where(Delivery.id == sms.id)).one()
        row.last_error = f"HTTP 400 error: The 'To' number {PHONE} is not a valid phone number."
        session.add(row)
        session.commit()
    fills = {
        "delivery_id": [str(d.id) for d in settled],
        "notification_id": [str(settled[0].notification_id)],
        "account_no": [acct["account_no"]],
        "fmt": ["csv", "xlsx", "ods"],
        # The postcard's print batch: its page lists the card's address.
        "batch_id": [d.provider_id for d in settled if d.channel == "postcard" and d.provider_id],
    }
    raw = [PHONE, PHONE.replace("+886", "0"), email, ADDRESS]

    user = new_user(stack, "ops")
    seen: dict[str, int] = {}
    with Browser(stack.base_url) as browser:
        assert browser.sign_in(user.username, PASSWORD).status_code == 303
        for pattern in _ops_pages():
            names = re.findall(r"{(\w+)}", pattern)
            paths = [pattern]
            for name in names:
                paths = [p.replace(f"{{{name}}}", value) for p in paths for value in fills[name]]
            for path in paths:
                answer = browser.get(path)
                seen[path] = answer.status_code
                if answer.status_code != 200:
                    continue
                text = _text(answer.content)
                shown = [value for value in raw if value in text]
                assert not shown, f"{path} shows ops {shown} unmasked"

    opened = [path for path, code in seen.items() if code == 200]
    # The sweep reached the pages that carry personal data, not only sign-in redirects.
    assert {"/ops", "/ops/dashboard", "/ops/unreachable", "/ops/unreachable.xlsx"} <= set(opened)
    assert any(path.startswith("/ops/notifications/") for path in opened), seen

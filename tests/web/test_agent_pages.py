"""Agents and supervisors on the web pages: today's list, an outcome, exports, notices, reassigning."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

from pypdf import PdfReader
from sqlmodel import col, select

from notifier.audit.models import AuditEntry
from notifier.escalation.agents import add_agent
from notifier.policy.local_time import shown
from notifier.users.service import actor_of
from tests.integration.test_escalation_api import TODAY, case_of, in_arrears, new_area, sweep_now
from tests.support import events
from tests.support.stack import Stack
from tests.support.tables import read_table
from tests.support.web import PASSWORD, Browser, csrf_token, new_user


def agent_browser(stack: Stack, area: str, kind: str) -> tuple[int, Browser]:
    with stack.db() as session:
        agent = add_agent(session, name="林建宏", area=area, kind=kind)
    assert agent.id is not None
    user = new_user(stack, "agent", agent_id=agent.id)
    browser = Browser(stack.base_url)
    assert browser.sign_in(user.username, PASSWORD).status_code == 303
    return agent.id, browser


def test_an_agent_records_an_outcome_and_the_case_leaves_the_list(stack: Stack) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "caller")
    first = in_arrears(stack, area, name="王小明")
    second = in_arrears(stack, area, name="李美玲")
    sweep_now(stack)
    case = case_of(stack, first["account_no"])

    with browser:
        page = browser.get("/agent")
        assert page.status_code == 200, page.text
        assert "王小明" in page.text and "李美玲" in page.text
        assert 'href="tel:+886912345678"' in page.text

        saved = browser.post(
            f"/agent/cases/{case.id}/outcome",
            {"csrf_token": csrf_token(page.text), "outcome": "refused", "note": "說電表有問題"},
        )
        assert saved.status_code == 303, saved.text
        after = browser.get(saved.headers["location"])
        assert f'id="case-{case.id}"' not in after.text
        assert second["account_no"] in after.text

        forged = browser.post(f"/agent/cases/{case.id}/outcome", {"outcome": "paid"})
        assert forged.status_code == 403


def test_a_promise_without_a_date_is_shown_again_on_its_card_with_the_note_kept(
    stack: Stack,
) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "caller")
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])
    typed = "客戶說月底發薪後會去超商繳 <b>全額</b>"

    with browser:
        page = browser.get("/agent")
        form = {"csrf_token": csrf_token(page.text), "outcome": "promised", "note": typed}
        refused = browser.post(f"/agent/cases/{case.id}/outcome", form)

        assert refused.status_code == 422, refused.text
        card = one_card(refused.text, case.id)
        assert 'role="alert"' in card and "未儲存：請檢查「承諾繳費日」" in card
        assert "客戶說月底發薪後會去超商繳 &lt;b&gt;全額&lt;/b&gt;</textarea>" in card
        assert '<option value="promised" selected>' in card
        assert 'aria-invalid="true"' in card and "autofocus" in card
        # The form sends the browser back to this card (the fragment of its action).
        assert f'action="/agent/cases/{case.id}/outcome#case-{case.id}"' in card
        assert case_of(stack, acct["account_no"]).attempts == 0

        promised = (TODAY + timedelta(days=3)).isoformat()
        fixed = browser.post(f"/agent/cases/{case.id}/outcome", {**form, "promise_date": promised})
    assert fixed.status_code == 303, fixed.text
    assert fixed.headers["location"] == f"/agent?done={case.id}#saved"
    stored = case_of(stack, acct["account_no"])
    assert (stored.attempts, stored.outcome) == (1, "promised")


def one_card(page: str, case_id: int | None) -> str:
    """The HTML of the case's card on a list page."""
    found = re.search(rf'<li class="card case[^"]*" id="case-{case_id}">(.*?)</li>\n', page, re.S)
    assert found, f"no card of case {case_id} in the page"
    return found[1]


def test_the_table_view_sorts_by_what_is_owed_and_keeps_the_choice_in_the_url(
    stack: Stack,
) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "caller")
    small = in_arrears(
        stack,
        area,
        amounts=(500, 600),
        name="陳小",
    )
    large = in_arrears(stack, area, amounts=(9000, 1000), name="張大")
    middle = in_arrears(stack, area, amounts=(2000, 1000), name="林中")
    sweep_now(stack)
    ids = {n: case_of(stack, a["account_no"]).id for n, a in
           (("small", small), ("large", large), ("middle", middle))}  # fmt: skip

    with browser:
        cards = browser.get("/agent").text
        assert 'href="/agent?view=table"' in cards
        ascending = browser.get("/agent", params={"view": "table", "sort": "owed"}).text
        descending = browser.get("/agent", params={"view": "table", "sort": "-owed"}).text
        stale = browser.get("/agent", params={"view": "grid", "sort": "shoe-size"})

    def order(page: str) -> list[int]:
        return [int(n) for n in re.findall(r'<tr id="row-(\d+)">', page)]

    assert order(ascending) == [ids["small"], ids["middle"], ids["large"]]
    assert order(descending) == [ids["large"], ids["middle"], ids["small"]]
    assert 'aria-sort="ascending"><a href="/agent?view=table&amp;sort=-owed">' in ascending
    assert 'aria-current="page">表格</a>' in ascending
    assert "NT$10,000" in descending and '<li class="card case' not in descending
    # An unknown view or sort (an old bookmark) is the cards, in working order.
    assert stale.status_code == 200 and order(stale.text) == []
    assert f'id="case-{ids["large"]}"' in stale.text


def test_a_card_shows_the_notices_sent_the_language_spoken_and_the_protections(
    stack: Stack,
) -> None:
    area = new_area()
    acct = in_arrears(
        stack, area, phone=None, push_tokens=None, spoken_language="hak", protections=["elderly"]
    )
    # Email: never deferred by quiet hours, so it is sent whatever the hour of the test.
    assert (
        stack.post(
            events.unpaid(acct, period="2026-07", due=TODAY - timedelta(days=90))
        ).status_code
        == 202
    )
    [email] = stack.settled(acct["account_no"], count=1)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])
    supervisor = new_user(stack, "supervisor")

    with Browser(stack.base_url) as browser:
        browser.sign_in(supervisor.username, PASSWORD)
        zh = one_card(browser.get("/agent", params={"area": area}).text, case.id)
        browser.client.cookies.set("lang", "en")
        en = one_card(browser.get("/agent", params={"area": area}).text, case.id)

    when = shown(email.created_at, TAIPEI, seconds=False)
    assert when.endswith(" Asia/Taipei")
    assert f'<span class="when">{when}</span> · 欠費催繳通知 (第 1 級) · 電子郵件 · ' in zh
    assert f"{STATUS_ZH[email.status]}</span>" in zh
    assert "客語" in zh and "高齡" in zh
    assert f'<span class="when">{when}</span> · Unpaid bill reminder (level 1) · email · ' in en
    assert "Hakka" in en and "elderly" in en
    visible = re.sub(r"<[^>]+>", " ", zh)
    for code in ("bill.unpaid", "email", "hak", "None", "visit", "call", "elderly", "sent"):
        assert code not in visible, code


STATUS_ZH = {"sent": "已送出", "delivered": "已送達"}
TAIPEI = ZoneInfo("Asia/Taipei")


def test_a_supervisor_sees_each_agents_count_and_reassigns_the_ticked_cases_after_saying_yes(
    stack: Stack,
) -> None:
    area = new_area()
    accounts = [in_arrears(stack, area) for _ in range(3)]
    sweep_now(stack)
    ids = [case_of(stack, a["account_no"]).id for a in accounts]
    with stack.db() as session:
        caller = add_agent(session, name="黃佩君", area=area, kind="caller")
        walker = add_agent(session, name="吳志明", area=area, kind="field")
        add_agent(session, name="鄭家豪", area=new_area(), kind="caller")  # not in the counts
    supervisor = new_user(stack, "supervisor")

    with Browser(stack.base_url) as browser:
        browser.sign_in(supervisor.username, PASSWORD)
        table = browser.get("/agent", params={"area": area, "view": "table"}).text
        assert "各專員未結案件數" in table and "黃佩君" in table
        loads = re.search(r'<table class="loads">(.*?)</table>', table, re.S)
        assert loads and set(re.findall(r"area-\d+", loads[1])) == {area}
        assert "鄭家豪" not in loads[1]
        ticked = [ids[0], ids[1]]
        form = {"csrf_token": csrf_token(table), "agent_id": str(caller.id),
                "back": f"/agent?area={area}&view=table"}  # fmt: skip
        asked = browser.client.post(
            "/agent/cases/reassign", data={**form, "case_id": [str(i) for i in ticked]}
        )
        assert asked.status_code == 200, asked.text
        assert "確定將這 2 件案件改派給 黃佩君" in asked.text
        assert all(case_of(stack, a["account_no"]).assignee_id is None for a in accounts)

        wrong_kind = browser.client.post(
            "/agent/cases/reassign",
            data={**form, "agent_id": str(walker.id), "confirmed": "yes",
                  "case_id": [str(i) for i in ticked]},
        )  # fmt: skip
        assert wrong_kind.status_code == 422 and "未改派任何案件" in wrong_kind.text
        assert all(case_of(stack, a["account_no"]).assignee_id is None for a in accounts)

        done = browser.client.post(
            "/agent/cases/reassign",
            data={**form, "confirmed": "yes", "case_id": [str(i) for i in ticked]},
        )
        assert done.status_code == 303, done.text
        after = browser.get(done.headers["location"]).text
        assert "已改派 2 件案件。" in after
        forged = browser.client.post(
            "/agent/cases/reassign",
            data={"agent_id": "", "confirmed": "yes", "case_id": [str(ids[2])]},
        )
        assert forged.status_code == 403

    assert [case_of(stack, a["account_no"]).assignee_id for a in accounts] == [
        caller.id, caller.id, None,
    ]  # fmt: skip
    loads = re.findall(
        r"<td>黃佩君</td>\s*<td>[^<]*</td><td>電訪</td><td class=\"number\">(\d+)</td>", after
    )
    assert loads == ["2"], loads
    with stack.db() as session:
        moved = session.exec(
            select(AuditEntry).where(AuditEntry.action == "case.reassigned",
                                     col(AuditEntry.target).in_([f"case {i}" for i in ticked]))
        ).all()  # fmt: skip
    assert sorted(str(e.target) for e in moved) == sorted(f"case {i}" for i in ticked)
    assert {e.actor for e in moved} == {actor_of(supervisor)}


def test_an_agent_downloads_the_list_and_prints_the_notices(stack: Stack) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "field")
    acct = in_arrears(stack, area, vulnerable=True)
    sweep_now(stack)

    with browser:
        xlsx = browser.get("/agent/export.xlsx")
        pdf = browser.get("/agent/notices.pdf")
    header, *rows = read_table(xlsx.content, "xlsx")
    assert header[:5] == ["case", "account", "name", "area", "address"]
    assert [r[1] for r in rows] == [acct["account_no"]]
    assert pdf.headers["content-type"] == "application/pdf"
    assert len(PdfReader(io.BytesIO(pdf.content)).pages) == 1


def test_a_supervisor_sees_the_unassigned_and_reassigns(stack: Stack) -> None:
    area = new_area()
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])
    agent_id, agents_browser = agent_browser(stack, area, "caller")
    supervisor = new_user(stack, "supervisor")

    with Browser(stack.base_url) as browser:
        browser.sign_in(supervisor.username, PASSWORD)
        waiting = browser.get("/agent", params={"unassigned": "true", "area": area})
        assert f'id="case-{case.id}"' in waiting.text
        moved = browser.post(
            f"/agent/cases/{case.id}/assign",
            {"csrf_token": csrf_token(waiting.text), "agent_id": str(agent_id)},
        )
        assert moved.status_code == 303, moved.text

    with agents_browser:
        assert f'id="case-{case.id}"' in agents_browser.get("/agent").text


def test_a_form_sent_twice_records_the_outcome_once(stack: Stack) -> None:
    area = new_area()
    _, browser = agent_browser(stack, area, "caller")
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])

    with browser:
        page = browser.get("/agent")
        attempt = re.search(r'name="attempt" value="([^"]+)"', page.text)
        assert attempt is not None
        form = {"csrf_token": csrf_token(page.text), "outcome": "no_answer", "attempt": attempt[1]}
        first = browser.post(f"/agent/cases/{case.id}/outcome", form)
        second = browser.post(f"/agent/cases/{case.id}/outcome", form)  # a double tap

    assert (first.status_code, second.status_code) == (303, 303)
    assert case_of(stack, acct["account_no"]).attempts == 1


def test_a_supervisor_opens_the_service_record_from_a_case_card(stack: Stack) -> None:
    area = new_area()
    acct = in_arrears(stack, area)
    sweep_now(stack)
    case = case_of(stack, acct["account_no"])
    _, agents_browser = agent_browser(stack, area, "caller")
    supervisor = new_user(stack, "supervisor")
    link = f"/agent/accounts/{acct['account_no']}/service-record.pdf"

    with Browser(stack.base_url) as browser:
        browser.sign_in(supervisor.username, PASSWORD)
        card = browser.get("/agent", params={"area": area}).text
        assert f'id="case-{case.id}"' in card and f'href="{link}"' in card
        printed = browser.get(link)
        assert printed.status_code == 200, printed.text
        assert printed.headers["content-type"] == "application/pdf"
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(printed.content)).pages)
        assert acct["account_no"] in text and f"#{case.id}" in text
        assert acct["name"] not in text

    with agents_browser:
        assert link not in agents_browser.get("/agent").text
        assert agents_browser.get(link).status_code == 403

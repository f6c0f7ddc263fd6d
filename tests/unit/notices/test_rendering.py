"""Notice rendering: the real templates, the fallbacks, the strictness, the filters."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from channels import speech
from channels.base import CHANNEL_NAMES
from notifier.notices.content import sms_segments
from notifier.notices.rendering import (
    DOCUMENTS,
    SAMPLE_VARIANTS,
    Renderer,
    TemplateError,
    format_date,
    format_money,
    format_percent,
    format_period,
    is_gsm7,
    sample_context,
    spell_digits,
    split_bills,
)

TEMPLATES = Path(__file__).parents[3] / "templates"
UNPAID_CHANNELS = ("sms", "voice", "email", "push", "postcard")
LANGUAGES = ("zh-TW", "en")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def one_bill(name: str | None = "王小明", *, level: int = 1) -> dict[str, Any]:
    """The everyday case: one NT$1,830 bill due 2026-11-20."""
    context = sample_context("bill.unpaid", level=level, variant="minimal")
    context["account"] = {**context["account"], "name": name}
    return context


LONG_PAY_URL = "https://pay.utility.example/bill/B202609-01234567890"
SMS_EVENTS = ("bill.unpaid", "usage.abnormal")
SMS_SAMPLES = (*SAMPLE_VARIANTS, "one-bill-long")


def sms_sample(event_type: str, level: int, variant: str) -> dict[str, Any]:
    """A sample variant, or "one-bill-long": one bill with the largest amount, a
    4-character name and the long pay link (the longest single-bill SMS)."""
    if variant != "one-bill-long":
        return sample_context(event_type, level=level, variant=variant)
    long = sample_context(event_type, level=level)
    context = sample_context(event_type, level=level, variant="minimal")
    context["account"] = long["account"]
    context["pay_url"] = long["pay_url"]
    if event_type == "bill.unpaid":
        largest = max(long["bills"], key=lambda b: b["amount"])
        context["bill"] = largest
        context.update(split_bills([largest], largest))
    return context


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- the real templates ----------------------------------------------------------------


def test_check_all_renders_every_template_at_both_levels(renderer: Renderer) -> None:
    notices = [p for p in TEMPLATES.glob("*/*.j2") if not p.parent.name.startswith(("_", "."))]
    assert len(notices) >= 28  # bill.unpaid 12, usage.abnormal 8, bill.paid 6, visit 2
    assert TEMPLATES / "escalation.visit" / "notice.zh-TW.j2" in notices
    assert TEMPLATES / "escalation.visit" / "notice.en.j2" in notices

    assert renderer.check_all() == len(notices) * 2 * len(SAMPLE_VARIANTS)


@pytest.mark.parametrize(
    ("event_type", "channels"),
    [
        ("bill.unpaid", UNPAID_CHANNELS),
        ("usage.abnormal", ("sms", "email", "push", "voice", "postcard")),
        ("bill.paid", ("email", "push")),
    ],
)
def test_every_policy_channel_has_a_zh_tw_and_an_en_template(
    renderer: Renderer, event_type: str, channels: tuple[str, ...]
) -> None:
    for channel in channels:
        assert renderer.available(event_type, channel)
        assert (TEMPLATES / event_type / f"{channel}.en.j2").is_file()
    if "email" in channels:
        for language in LANGUAGES:
            assert (TEMPLATES / event_type / f"email.{language}.html.j2").is_file()


def test_zh_tw_unpaid_sms_is_short_and_complete(renderer: Renderer) -> None:
    content = renderer.render("bill.unpaid", "sms", "zh-TW", one_bill())

    assert "NT$1,830" in content.body
    assert "012****7890" in content.body
    assert "115年11月20日" in content.body
    assert "115年9月" in content.body
    assert "王小明" in content.body
    assert "https://pay.example.com/b/ABC" in content.body
    assert "1911" in content.body
    assert "01234567890" not in content.body
    assert (content.subject, content.html) == (None, None)
    assert (content.language, content.language_fallback) == ("zh-TW", False)
    assert sms_segments(content.body) <= 2
    assert sms_segments(renderer.render("bill.unpaid", "sms", "zh-TW", one_bill(level=2)).body) <= 2


def test_the_sample_pay_link_is_as_long_as_a_real_one() -> None:
    for event_type in ("bill.unpaid", "usage.abnormal", "bill.paid", "escalation.visit"):
        assert len(sample_context(event_type)["pay_url"]) >= len(LONG_PAY_URL)


@pytest.mark.parametrize("variant", SMS_SAMPLES)
@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("event_type", SMS_EVENTS)
def test_every_sms_fits_in_two_segments(
    renderer: Renderer, event_type: str, language: str, level: int, variant: str
) -> None:
    context = sms_sample(event_type, level, variant)
    body = renderer.render(event_type, "sms", language, context).body
    segments = sms_segments(body)
    units = len(body.encode("utf-16-le")) // 2

    assert segments <= 2, (
        f"{event_type}/sms.{language} level {level} {variant}: {segments} segments "
        f"({units} UTF-16 units):\n{body}"
    )
    assert "012****7890" in body
    assert "01234567890" not in body.replace(context["pay_url"], "")
    assert context["service_phone"] in body
    if language == "en" and context["account"]["name"] is not None:
        # A name outside GSM-7 would make the whole English SMS UCS-2: left out.
        assert (context["account"]["name"] in body) == is_gsm7(context["account"]["name"])


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("level", [1, 2])
def test_an_sms_about_one_bill_tells_it_in_full(
    renderer: Renderer, language: str, level: int
) -> None:
    context = sms_sample("bill.unpaid", level, "one-bill-long")
    body = renderer.render("bill.unpaid", "sms", language, context).body
    bill = context["bill"]

    assert format_period(bill["period"], language) in body
    assert format_money(bill["amount"]) in body
    assert format_date(bill["due_date"], language) in body
    assert context["pay_url"] in body
    assert body.count(format_money(bill["amount"])) == 1


def test_a_long_name_leaves_out_the_sms_greeting_but_not_the_rest(renderer: Renderer) -> None:
    context = sample_context("bill.unpaid", level=2)
    context["account"] = {**context["account"], "name": "台灣電子材料股份有限公司"}

    body = renderer.render("bill.unpaid", "sms", "zh-TW", context).body

    assert "台灣電子材料" not in body
    assert body.startswith("【電費催繳】電號012****7890")
    assert sms_segments(body) <= 2


def test_gsm7() -> None:
    assert is_gsm7("Maximilian Alexander Montgomery-Featherstonehaugh")
    assert is_gsm7("O'Brien, Jr.")
    assert not is_gsm7("歐陽志明")
    assert not is_gsm7("a`b")
    assert not is_gsm7(None)


def test_en_without_minguo_dates_uses_the_western_calendar() -> None:
    renderer = Renderer(TEMPLATES, minguo_dates=False)

    en = renderer.render("bill.unpaid", "email", "en", one_bill("Mary Chen"))
    zh = renderer.render("bill.unpaid", "sms", "zh-TW", one_bill())

    assert "20 Nov 2026" in en.body
    assert en.html is not None and "20 Nov 2026" in en.html
    assert "Dear Mary Chen" in en.body
    assert "2026年11月20日" in zh.body
    assert "115年" not in zh.body


def test_a_language_without_templates_falls_back_to_zh_tw(renderer: Renderer) -> None:
    content = renderer.render("bill.unpaid", "email", "ja", one_bill())

    assert content.language == "zh-TW"
    assert content.language_fallback is True
    assert "您好" in content.body
    assert "115年11月20日" in content.body  # dates follow the language actually used
    assert content.html is not None and '<html lang="zh-TW">' in content.html


def test_a_language_that_is_not_a_language_tag_falls_back_too(renderer: Renderer) -> None:
    content = renderer.render("bill.unpaid", "sms", "../../etc/passwd", one_bill())

    assert (content.language, content.language_fallback) == ("zh-TW", True)


def test_html_email_escapes_the_name_and_the_text_part_keeps_it(renderer: Renderer) -> None:
    for language in LANGUAGES:
        content = renderer.render("bill.unpaid", "email", language, one_bill("<b>x</b>"))

        assert content.html is not None
        assert content.html.startswith("<!DOCTYPE html>")
        assert "&lt;b&gt;x&lt;/b&gt;" in content.html
        assert "<b>x</b>" not in content.html
        assert "<b>x</b>" in content.body


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("level", [1, 2])
def test_voice_is_written_for_speech(renderer: Renderer, language: str, level: int) -> None:
    context = sample_context("bill.unpaid", level=level)
    body = renderer.render("bill.unpaid", "voice", language, context).body

    assert "http" not in body
    assert "NT$" not in body
    assert "012****7890" not in body
    assert "7 8 9 0" in body
    assert "1 9 1 1" in body
    # Marked to be read as a number, not as a year or digit by digit (channels/speech.py),
    # and grouped wherever the script is shown or read by a voice without SSML.
    amount = '<say-as interpret-as="cardinal">398765</say-as>'
    assert (f"{amount}元" if language == "zh-TW" else f"{amount} dollars") in body
    assert ("398,765元" if language == "zh-TW" else "398,765 dollars") in speech.plain(body)


@pytest.mark.parametrize(
    ("name", "greeting"),
    [
        ("Mary Chen", "Hello Mary Chen,"),
        ("José Müller", "Hello José Müller,"),
        ("陳美玲", "Hello,"),
    ],
)
def test_an_english_call_greets_only_a_name_its_voice_can_read(
    renderer: Renderer, name: str, greeting: str
) -> None:
    context = sample_context("bill.unpaid", level=1)
    context["account"] = {**context["account"], "name": name}

    body = renderer.render("bill.unpaid", "voice", "en", context).body

    assert body.startswith(greeting)
    assert "陳" not in body


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("channel", UNPAID_CHANNELS)
def test_every_unpaid_notice_tells_everything_once(
    renderer: Renderer, channel: str, level: int, language: str
) -> None:
    context = sample_context("bill.unpaid", level=level)
    content = renderer.render("bill.unpaid", channel, language, context)
    text = content.body
    spoken = channel == "voice"

    name = context["account"]["name"]
    if channel == "sms" and language == "en":
        assert (name in text) == is_gsm7(name)  # else the SMS would go UCS-2
    elif spoken and language == "en":
        assert name not in text  # 歐陽志明: no en-US voice reads a CJK name
        assert text.startswith("Hello, this is")
    else:
        assert name in text
    if channel == "sms":
        # Several bills, said compactly: how many, the total, the earliest due date.
        bills = context["bills"]
        assert (f"{len(bills)}期" if language == "zh-TW" else f"{len(bills)} unpaid bills") in text
        assert format_date(min(b["due_date"] for b in bills), language) in text
        assert not any(format_money(b["amount"]) in text for b in bills)
    else:
        for bill in context["bills"]:
            period = format_period(bill["period"], language, spoken=spoken)
            due = format_date(bill["due_date"], language, spoken=spoken)
            amount = str(bill["amount"]) if spoken else format_money(bill["amount"])
            assert period in text
            assert due in text
            assert amount in text
    total = str(context["total"]) if spoken else format_money(context["total"])
    assert text.count(total) == 1
    # The pay link carries the bill number, which carries the account number: judge
    # the text around it.
    words = text.replace(context["pay_url"], "")
    assert ("01234567890" in words) == (channel == "email")
    assert ("012****7890" in words) == (channel in ("sms", "push", "postcard"))
    assert (context["pay_url"] in text) == (channel in ("sms", "email", "push"))
    assert "1911" in text or "1 9 1 1" in text
    if channel == "sms":
        # Two segments hold no list of ways to pay: the pay link leads to them.
        marker = "派員到府" if language == "zh-TW" else "visit"
        assert (marker in text) == (level >= 2)
    elif language == "zh-TW":
        assert "便利商店" in text or "超商" in text
        assert all(way in text for way in ("銀行轉帳", "App", "櫃台"))
        assert ("到府拜訪" in text) == (level >= 2)
    else:
        assert all(
            way in text.lower() for way in ("convenience store", "bank transfer", "app", "counter")
        )
        assert ("visit" in text) == (level >= 2)
    assert (content.subject is not None) == (channel in ("email", "push"))
    assert (content.html is not None) == (channel == "email")


@pytest.mark.parametrize("language", LANGUAGES)
def test_nothing_says_none_when_the_name_is_unknown(renderer: Renderer, language: str) -> None:
    for event_type, channels in (
        ("bill.unpaid", UNPAID_CHANNELS),
        ("usage.abnormal", ("sms", "email", "push", "voice", "postcard")),
        ("bill.paid", ("email", "push")),
    ):
        context = sample_context(event_type, variant="minimal")
        for channel in channels:
            content = renderer.render(event_type, channel, language, context)
            for part in (content.body, content.subject, content.html):
                assert "None" not in (part or ""), (event_type, channel)


def test_abnormal_usage_says_how_much_and_what_to_check(renderer: Renderer) -> None:
    context = sample_context("usage.abnormal")

    zh = renderer.render("usage.abnormal", "sms", "zh-TW", context).body
    en = renderer.render("usage.abnormal", "email", "en", context)

    assert "123,457度" in zh and "66,733度" in zh and "高出85%" in zh and "漏電" in zh
    assert "123,457 kWh" in en.body and "85% above" in en.body and "leak to ground" in en.body
    assert en.subject == "Unusually high electricity use (account 01234567890)"


def test_payment_received_thanks_and_lists_what_is_still_unpaid(renderer: Renderer) -> None:
    context = sample_context("bill.paid")

    push = renderer.render("bill.paid", "push", "zh-TW", context)

    assert push.subject == "繳費完成，感謝您"
    assert "NT$398,765已繳費完成" in push.body
    assert "合計NT$599,330" in push.body


def test_the_home_visit_notice_is_a_document_not_a_channel(renderer: Renderer) -> None:
    assert DOCUMENTS == ("notice",)
    assert "notice" not in CHANNEL_NAMES
    assert renderer.available("escalation.visit", "notice")
    assert not renderer.available("escalation.visit", "sms")


@pytest.mark.parametrize("level", [1, 2])
def test_the_zh_tw_home_visit_notice_tells_the_customer_everything(
    renderer: Renderer, level: int
) -> None:
    context = sample_context("escalation.visit", level=level)
    content = renderer.render("escalation.visit", "notice", "zh-TW", context)
    text = content.body

    assert content.subject == "電費欠費催繳通知（到府通知）"
    assert (content.html, content.language_fallback) == (None, False)
    assert "歐陽志明" in text
    assert "01234567890" in text  # the full number: it is addressed to the customer
    assert "012****7890" not in text
    for bill in context["bills"]:
        assert format_period(bill["period"], "zh-TW") in text
        assert format_money(bill["amount"]) in text
        assert format_date(bill["due_date"], "zh-TW") in text
    assert text.count("NT$998,095") == 1
    assert "115年12月8日" in text
    assert context["visit"]["agent_name"] in text
    assert "1911" in text
    assert all(way in text for way in ("便利商店", "銀行轉帳", "App", "櫃台"))
    assert "停止供電" in text
    assert "http" not in text


def test_the_en_home_visit_notice_and_one_without_a_name(renderer: Renderer) -> None:
    en = renderer.render(
        "escalation.visit", "notice", "en", sample_context("escalation.visit", level=2)
    )
    minimal = sample_context("escalation.visit", variant="minimal")
    zh = renderer.render("escalation.visit", "notice", "zh-TW", minimal)

    assert en.subject == "OVERDUE ELECTRICITY BILL: NOTICE OF HOME VISIT"
    assert "01234567890" in en.body and "Total due: NT$998,095" in en.body
    assert "8 Dec 2026" in en.body and "1911" in en.body
    assert zh.body.startswith("用電戶您好")
    assert "NT$1,830" in zh.body and "合計" not in zh.body
    assert "None" not in zh.body


# --- strictness ------------------------------------------------------------------------


def test_a_misspelled_variable_names_the_file_and_the_variable(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bill.unpaid/sms.zh-TW.j2",
        "{% block body %}\n您好\n{{ acount.name }}\n{% endblock %}\n",
    )
    renderer = Renderer(tmp_path)

    with pytest.raises(TemplateError) as raised:
        renderer.render("bill.unpaid", "sms", "zh-TW", one_bill())

    assert "bill.unpaid/sms.zh-TW.j2:3" in str(raised.value)
    assert "acount" in str(raised.value)
    assert (raised.value.template, raised.value.lineno) == ("bill.unpaid/sms.zh-TW.j2", 3)
    assert raised.value.variable == "acount"
    with pytest.raises(TemplateError, match="acount"):
        renderer.check_all()


def test_a_misspelled_attribute_is_named_too(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bill.unpaid/push.zh-TW.j2",
        "{% block subject %}t{% endblock %}\n{% block body %}{{ account.nmae }}{% endblock %}",
    )

    with pytest.raises(TemplateError, match=r"push\.zh-TW\.j2:2.*nmae") as raised:
        Renderer(tmp_path).render("bill.unpaid", "push", "zh-TW", one_bill())

    assert raised.value.variable == "nmae"


def test_a_dict_is_read_as_jinja_reads_it(tmp_path: Path) -> None:
    # The renderer's environment reads a dict's item without trying the attribute first;
    # a name that is also a dict method (items, keys…) must still be the method.
    write(
        tmp_path,
        "bill.unpaid/push.zh-TW.j2",
        "{% block subject %}{{ bill.items is callable }} {{ bill['items'] }}{% endblock %}\n"
        "{% block body %}{{ bill.owed }} {{ bill.keys() | list | length }}{% endblock %}",
    )
    context = one_bill()
    context["bill"] = {"owed": 1830, "items": "two lines"}

    rendered = Renderer(tmp_path).render("bill.unpaid", "push", "zh-TW", context)

    assert (rendered.body, rendered.subject) == ("1830 2", "True two lines")


def test_a_set_in_one_block_does_not_reach_the_next(tmp_path: Path) -> None:
    # Both blocks of a template are rendered with one context, as Jinja renders a page.
    write(
        tmp_path,
        "bill.unpaid/push.zh-TW.j2",
        "{% block body %}{% set title = 'from the body' %}{{ title }}{% endblock %}\n"
        "{% block subject %}{{ title | default('its own') }}{% endblock %}",
    )

    rendered = Renderer(tmp_path).render("bill.unpaid", "push", "zh-TW", one_bill())

    assert (rendered.body, rendered.subject) == ("from the body", "its own")


def test_an_error_in_the_shared_layout_names_both_files(tmp_path: Path) -> None:
    write(
        tmp_path, "_layout/mail.html.j2", "<p>{% block content %}{% endblock %}</p>\n{{ pay_ur }}"
    )
    write(
        tmp_path,
        "bill.paid/email.zh-TW.j2",
        "{% block subject %}s{% endblock %}{% block body %}b{% endblock %}",
    )
    write(
        tmp_path,
        "bill.paid/email.zh-TW.html.j2",
        '{% extends "_layout/mail.html.j2" %}{% block content %}x{% endblock %}',
    )

    with pytest.raises(
        TemplateError, match=r"email\.zh-TW\.html\.j2 \(in _layout/mail\.html\.j2:2\).*pay_ur"
    ):
        Renderer(tmp_path).render("bill.paid", "email", "zh-TW", sample_context("bill.paid"))


def test_a_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    write(
        tmp_path, "bill.unpaid/sms.zh-TW.j2", "{% block body %}\n{% if level %}\n{% endblock %}\n"
    )

    with pytest.raises(TemplateError, match=r"sms\.zh-TW\.j2:3: syntax error"):
        Renderer(tmp_path).render("bill.unpaid", "sms", "zh-TW", one_bill())


def test_a_missing_block_or_an_empty_body_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "bill.unpaid/email.zh-TW.j2", "{% block body %}b{% endblock %}")
    write(
        tmp_path,
        "bill.unpaid/sms.zh-TW.j2",
        "{% block body %}{% if false %}x{% endif %}{% endblock %}",
    )
    renderer = Renderer(tmp_path)

    with pytest.raises(TemplateError, match=r"email\.zh-TW\.j2: has no \{% block subject %\}"):
        renderer.render("bill.unpaid", "email", "zh-TW", one_bill())
    with pytest.raises(TemplateError, match=r"sms\.zh-TW\.j2: block 'body' renders empty"):
        renderer.render("bill.unpaid", "sms", "zh-TW", one_bill())


def test_no_template_at_all_is_an_error_and_not_available(renderer: Renderer) -> None:
    assert not renderer.available("bill.paid", "sms")
    assert not renderer.available("bill.unpaid", "notice")
    assert not renderer.available("escalation.visit", "letter")
    assert not renderer.available("bill.unpaid", "fax")
    assert not renderer.available("../bill.unpaid", "sms")
    with pytest.raises(TemplateError, match=r"bill\.paid/sms\.zh-TW\.j2: no template"):
        renderer.render("bill.paid", "sms", "en", sample_context("bill.paid"))
    with pytest.raises(TemplateError, match="unknown channel 'fax'"):
        renderer.render("bill.unpaid", "fax", "zh-TW", one_bill())


def test_check_all_refuses_a_translation_without_a_zh_tw_original(tmp_path: Path) -> None:
    write(tmp_path, "bill.unpaid/sms.en.j2", "{% block body %}x{% endblock %}")

    with pytest.raises(TemplateError, match=r"sms\.en\.j2: no zh-TW template"):
        Renderer(tmp_path).check_all()


def test_check_all_refuses_a_misnamed_file(tmp_path: Path) -> None:
    write(tmp_path, "bill.unpaid/smss.zh-TW.j2", "{% block body %}x{% endblock %}")

    with pytest.raises(TemplateError, match=r"smss\.zh-TW\.j2: expected <channel>"):
        Renderer(tmp_path).check_all()


def test_a_missing_templates_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="templates directory not found"):
        Renderer(tmp_path / "nowhere")


# --- filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1830, "NT$1,830"),
        (0, "NT$0"),
        (998_095, "NT$998,095"),
        (1830.5, "NT$1,831"),
        (-20, "-NT$20"),
    ],
)
def test_money(renderer: Renderer, value: float, expected: str) -> None:
    assert format_money(value) == expected
    assert renderer.environment.from_string("{{ v|money }}").render(v=value) == expected


def test_spell_digits(renderer: Renderer) -> None:
    assert spell_digits("01234567890") == "0 1 2 3 4 5 6 7 8 9 0"
    assert renderer.environment.from_string("{{ '1911'|spell_digits }}").render() == "1 9 1 1"


@pytest.mark.parametrize(
    ("language", "minguo", "expected"),
    [
        ("zh-TW", True, "115年11月20日"),
        ("zh-TW", False, "2026年11月20日"),
        ("en", True, "20 Nov 2026"),
        ("en", False, "20 Nov 2026"),
    ],
)
def test_date_takes_the_language_from_the_context(
    language: str, minguo: bool, expected: str
) -> None:
    env = Renderer(TEMPLATES, minguo_dates=minguo).environment
    template = env.from_string("{{ d|date }}")

    for value in (date(2026, 11, 20), "2026-11-20", datetime(2026, 11, 20, 9, 30)):
        assert template.render(d=value, language=language) == expected


def test_date_and_period_formats() -> None:
    assert format_date("2026-11-20", "en", spoken=True) == "20 November 2026"
    assert format_date("2026-11-20T09:00:00+08:00", "zh-TW") == "115年11月20日"
    assert format_period("2026-09", "zh-TW") == "115年9月"
    assert format_period("2026-09", "zh-TW", minguo=False) == "2026年9月"
    assert format_period("2026-09", "en") == "Sep 2026"
    assert format_period("2026-09", "en", spoken=True) == "September 2026"


def test_a_bad_date_is_a_template_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bill.unpaid/sms.zh-TW.j2",
        "{% block body %}{{ bill.due_date|date }}{% endblock %}",
    )
    context = one_bill()
    context["bill"] = {**context["bill"], "due_date": "20/11/2026"}

    with pytest.raises(TemplateError, match=r"sms\.zh-TW\.j2:1: ValueError"):
        Renderer(tmp_path).render("bill.unpaid", "sms", "zh-TW", context)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.4567, "46%"), (0.85, "85%"), (0.125, "13%"), (-0.6, "-60%"), (2, "200%")],
)
def test_percent(renderer: Renderer, value: float, expected: str) -> None:
    assert format_percent(value) == expected
    assert renderer.environment.from_string("{{ v|percent }}").render(v=value) == expected


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("channel", UNPAID_CHANNELS)
def test_a_bill_not_yet_due_is_never_in_an_overdue_total(
    renderer: Renderer, channel: str, language: str
) -> None:
    context = sample_context("bill.unpaid", level=2, variant="upcoming")
    text = renderer.render("bill.unpaid", channel, language, context).body
    spoken = channel == "voice"

    assert [b["period"] for b in context["upcoming"]] == ["2026-09"]
    overdue_total = str(context["overdue_total"]) if spoken else format_money(599_330)
    assert overdue_total in text
    everything = str(context["total"]) if spoken else format_money(context["total"])
    assert everything not in text

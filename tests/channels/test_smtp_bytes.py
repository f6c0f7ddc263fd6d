"""The email channel's message bytes parse back to what ``email.message`` would have built.

The channel puts each message's bytes together itself (channels/smtp_email.py,
"Building a message"); the reference is the same notice built as an
``EmailMessage`` and flattened under the same policy, as the channel did before.
Both are parsed with ``email.policy.default`` and compared header by header
and part by part.
"""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from email.message import EmailMessage
from email.message import Message as MimeMessage
from email.policy import default as default_policy
from typing import Any

import pytest

from channels import Message, PermanentChannelError
from channels.simulators.smtp import SmtpCatcher
from channels.smtp_email import SmtpEmail

CHINESE = "您的電費 1,830 元尚未繳納，請於 2026-11-20 前繳費。\n電號 01-23-4567-89\n\n客服 1911"
ENGLISH = (
    "Dear customer,\n\nYour bill of NT$1,830 for September is unpaid; please pay it by "
    "2026-11-20 or your supply may be cut.\n.\nA=B  \nThanks \u2014 Taipower\n"
)
NOTICES: dict[str, dict[str, Any]] = {
    "chinese-with-html": {
        "html": "<html><body><p>您的電費 <b>1,830</b> 元尚未繳納</p>\n<p>客服 1911</p></body></html>",
    },
    "chinese-plain-long-subject": {
        "subject": "電費帳單更正通知：115年9月電費（電號 01234567890）已更正，請依新金額於期限前繳納",
    },
    "english-plain": {
        "body": ENGLISH,
        "subject": "Your electricity bill is unpaid",
        "name": "Wang, Xiao-Ming",
    },
    "english-with-html": {
        "body": "Your bill of NT$1,830 is unpaid.\nPlease pay by 2026-11-20.\n",
        "html": "<p>Your bill of <b>NT$1,830</b> is unpaid.</p>",
        "subject": "Bill",
        "name": "Mr. O'Brien",
    },
    "ascii-only-short-lines": {
        "body": "Paid, thank you.\n",
        "subject": "Thank you",
        "name": None,
    },
    "long-ascii-subject": {
        "body": "Paid.",
        "subject": "Your electricity bill for account 0123456789 was corrected "
        "and the new amount is due on 2026-11-20",
    },
    "mixed-subject-long-name-no-subject-line-break": {
        "subject": "Bill 電費 115年9月 NT$1,830",
        "name": "台灣某某科技股份有限公司新竹科學園區分公司總務部王小明先生",
    },
    "no-subject": {"subject": None},
    "two-recipients": {"to": ("wang@example.com", "lin@example.com")},
    "long-line-body": {"body": "電費" * 200 + "\n" + "x" * 300},
}


def message(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "delivery_id": 42,
        "channel": "email",
        "to": ("wang@example.com",),
        "body": CHINESE,
        "subject": "電費催繳通知",
        "name": "王小明",
    }
    return Message(**(values | fields))


def channel(**options: Any) -> SmtpEmail:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "from_address": "notices@utility.example",
        "from_name": "台灣電力公司",
    }
    return SmtpEmail(**(settings | options))


def parse(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects
    return parsed


def headers(mail: MimeMessage) -> list[tuple[str, str]]:
    """The headers that mean the same in both builds (the boundary is random in each)."""
    return [
        (name, str(value))
        for name, value in mail.items()
        if name not in ("Date", "Message-ID")
        and not (name == "Content-Type" and mail.get_content_maintype() == "multipart")
    ]


def parts(mail: EmailMessage) -> list[tuple[str, str, str | None, bytes]]:
    found = []
    for part in mail.walk():
        if part.is_multipart():
            continue
        decoded = part.get_payload(decode=True)
        assert isinstance(decoded, bytes)
        found.append(
            (
                part.get_content_type(),
                part.get_content_charset(),
                part["Content-Transfer-Encoding"],
                decoded,
            )
        )
    return found


def built_both_ways(sender: SmtpEmail, notice: Message) -> tuple[EmailMessage, EmailMessage, str]:
    message_id, raw = sender._build(notice)
    assert isinstance(raw, bytes)
    reference = sender._build_message(notice).as_bytes()
    return parse(raw), parse(reference), message_id


@pytest.mark.parametrize("fields", NOTICES.values(), ids=NOTICES.keys())
@pytest.mark.parametrize("reply_to", ["", "service@utility.example"], ids=["", "reply-to"])
def test_the_bytes_parse_to_the_headers_and_bodies_email_message_builds(
    fields: dict[str, Any], reply_to: str
) -> None:
    ours, reference, message_id = built_both_ways(channel(reply_to=reply_to), message(**fields))

    assert headers(ours) == headers(reference)
    assert ours.get_content_type() == reference.get_content_type()
    assert parts(ours) == parts(reference)
    assert ours["Message-ID"] == f"<{message_id}>"
    assert ours["Date"].datetime.tzinfo is not None


def test_chinese_goes_as_base64_and_ascii_ish_as_quoted_printable_in_lines_of_at_most_78() -> None:
    sender = channel()
    chinese, _, _ = built_both_ways(sender, message(html="<p>電費</p>"))
    english, _, _ = built_both_ways(sender, message(**NOTICES["english-plain"]))
    plain, _, _ = built_both_ways(sender, message(**NOTICES["ascii-only-short-lines"]))

    assert [p["Content-Transfer-Encoding"] for p in chinese.walk() if not p.is_multipart()] == [
        "base64",
        "base64",
    ]
    assert english["Content-Transfer-Encoding"] == "quoted-printable"
    assert plain["Content-Transfer-Encoding"] == "7bit"
    for notice in NOTICES.values():
        _, raw = sender._build(message(**notice))
        assert isinstance(raw, bytes) and raw.isascii()
        lines = raw.split(b"\r\n")
        assert b"\n" not in b"".join(lines) and b"\r" not in b"".join(lines)
        # Only an unbreakable ASCII word may run past 78; none of these has one.
        assert max(map(len, lines)) <= 78 or notice is NOTICES["long-line-body"]


def test_a_long_chinese_subject_is_split_into_encoded_words_of_at_most_75_characters() -> None:
    _, raw = channel()._build(message(**NOTICES["chinese-plain-long-subject"]))
    assert isinstance(raw, bytes)
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    words = [w for w in head.split() if w.startswith("=?")]
    assert len(words) > 1 and all(len(w) <= 75 for w in words)


def test_a_malformed_address_is_still_refused_before_anything_is_sent() -> None:
    with pytest.raises(PermanentChannelError) as refused:
        asyncio.run(channel().send(message(to=("not an address@@example.com",))))

    assert refused.value.code == "invalid_message"


def test_a_non_ascii_address_goes_as_an_email_message_over_smtputf8() -> None:
    to = "wang@例子.台灣"
    _, mail = channel()._build(message(to=(to,)))
    assert isinstance(mail, EmailMessage)  # send_message asks for SMTPUTF8 itself

    with SmtpCatcher() as catcher:
        sender = channel(host=catcher.host, port=catcher.port, starttls=False)

        async def send() -> None:
            try:
                await sender.send(message(to=(to,)))
            finally:
                await sender.aclose()

        asyncio.run(send())

    [envelope] = catcher.envelopes
    assert envelope.rcpt_tos == (to,)
    assert len(catcher.messages) == 1

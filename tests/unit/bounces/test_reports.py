"""Bounce reports read as their senders write them: Postfix, Exim, Gmail, Exchange, RFC 3464's
own examples, and RFC 5965 complaint reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.bounces.reports import NotAReport, parse

REPORTS = Path(__file__).parent / "reports"


def read(name: str) -> bytes:
    return (REPORTS / name).read_bytes()


@pytest.mark.parametrize(
    ("fixture", "recipient", "action", "status", "hard", "original", "diagnostic"),
    [
        (
            "postfix-user-unknown.eml", "wang@example.net", "failed", "5.1.1", True,
            "176465550912.4242.123456789d42@utility.example", "550 5.1.1 <wang@example.net>",
        ),
        (
            "exim-no-such-domain.eml", "lin@nowhere.example.org", "failed", "5.0.0", True,
            "176465551001.4242.987654321d43@utility.example", "",
        ),
        (
            "gmail-account-disabled.eml", "chen.example@gmail.com", "failed", "5.1.1", True,
            "176465551101.4242.55555d44@utility.example", "The email account that you tried",
        ),
        (
            "exchange-recipient-not-found.eml", "huang@contoso.example", "failed", "5.1.10", True,
            "176465551201.4242.66666d45@utility.example", "550 5.1.10 RESOLVER.ADR",
        ),
        (
            "rfc3464-c5-delayed.eml", "thomas@de-montfort.ac.uk", "delayed", "4.0.0", False,
            "176465550913.4242.77777d46@utility.example", "",
        ),
        (
            "postfix-expired-4xx.eml", "lee@down.example.com", "failed", "4.4.1", False,
            "176465550914.4242.88888d47@utility.example", "connect to mx.down.example.com",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and value.endswith(".eml") else "",
)  # fmt: skip
def test_a_dsn_says_who_what_and_how_final(
    fixture: str,
    recipient: str,
    action: str,
    status: str,
    hard: bool,
    original: str,
    diagnostic: str,
) -> None:
    report = parse(read(fixture))

    assert report.kind == "dsn"
    [entry] = report.recipients
    assert (entry.recipient, entry.action, entry.status) == (recipient, action, status)
    assert entry.hard is hard
    assert entry.final is (action == "failed")
    assert entry.diagnostic.startswith(diagnostic)
    assert "\n" not in entry.diagnostic  # folded lines unfolded
    assert report.original_message_id == original
    assert report.reporting_mta


def test_rfc3464s_example_of_three_recipients_keeps_each_apart() -> None:
    report = parse(read("rfc3464-c3-multiple-recipients.eml"))

    assert [(r.recipient, r.action, r.status, r.hard) for r in report.recipients] == [
        ("arathib@vnet.ibm.com", "failed", "5.0.0", True),
        ("johnh@hpnjld.njd.hp.com", "delayed", "4.0.0", False),
        ("wsnell@sdcc13.ucsd.edu", "failed", "5.0.0", True),
    ]
    assert report.reporting_mta == "cs.utk.edu"
    assert report.original_message_id is None  # "[original message goes here]"


def test_a_complaint_names_its_feedback_type_recipient_and_original() -> None:
    report = parse(read("rfc5965-abuse.eml"))

    assert (report.kind, report.feedback_type) == ("complaint", "abuse")
    assert [r.recipient for r in report.recipients] == ["wu@example.com"]
    assert report.original_message_id == "176465550915.4242.99999d48@utility.example"
    assert report.report_id == "arf-20261203-0001@example.com"


def test_a_complaint_with_the_recipient_redacted_still_reads() -> None:
    raw = read("rfc5965-abuse.eml").replace(b"Original-Rcpt-To: <wu@example.com>\n", b"")

    report = parse(raw)

    assert (report.kind, report.recipients) == ("complaint", ())
    assert report.original_message_id == "176465550915.4242.99999d48@utility.example"


def test_a_status_missing_is_taken_from_the_diagnostic_code() -> None:
    raw = read("postfix-user-unknown.eml").replace(b"Status: 5.1.1\n", b"")

    [entry] = parse(raw).recipients

    assert (entry.status, entry.hard) == ("5.1.1", True)


def test_the_same_report_twice_has_the_same_id_and_different_ones_differ() -> None:
    with_id = read("postfix-user-unknown.eml")
    without_id = with_id.replace(
        b"Message-Id: <20261202060511.5E0F01C0A22@mail.example.net>\n", b""
    )

    assert parse(with_id).report_id == "20261202060511.5E0F01C0A22@mail.example.net"
    assert parse(without_id).report_id == parse(without_id).report_id  # a digest of its bytes
    assert parse(without_id).report_id != parse(without_id + b"\n").report_id


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (read("a-reply-in-prose.eml"), "not a multipart/report"),
        (
            read("postfix-user-unknown.eml").replace(
                b"report-type=delivery-status", b"report-type=x"
            ),
            "report-type 'x'",
        ),
        (
            read("postfix-user-unknown.eml").replace(b"Action: failed", b"Action: vanished"),
            "naming no recipient",
        ),
    ],
    ids=["a-reply", "another-report-type", "no-recipient-with-an-action"],
)
def test_mail_that_is_no_report_is_refused_saying_why(raw: bytes, why: str) -> None:
    with pytest.raises(NotAReport, match=why):
        parse(raw)

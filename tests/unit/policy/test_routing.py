"""Which channels a notice goes to: the default policy applied to in-memory accounts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from notifier.accounts.models import Account
from notifier.policy.routing import (
    Planned,
    next_fallback,
    plan,
    reachable,
    recipients_for,
    why_unreachable,
)
from notifier.policy.rules import Policy, load_policy

POLICY_FILE = Path(__file__).parents[3] / "config" / "policy.yaml"
MOBILE = "+886912345678"
LANDLINE = "+886223456789"
EMAIL = "a@example.com"
TOKEN = "tok-abc"
ADDRESS = "苗栗縣頭份市中正路1號"


def every_template(channel: str) -> bool:
    return True


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(POLICY_FILE)


def account(**fields: Any) -> Account:
    return Account(account_no="01234567890", **fields)


def everything(**fields: Any) -> Account:
    """Every contact point known."""
    contacts: dict[str, Any] = {
        "phone": MOBILE,
        "email": EMAIL,
        "push_tokens": [TOKEN],
        "address": ADDRESS,
    }
    return account(**{**contacts, **fields})


def channels(
    policy: Policy,
    who: Account,
    event_type: str = "bill.unpaid",
    level: int = 1,
    has_template: Callable[[str], bool] = every_template,
) -> list[str]:
    return [p.channel for p in plan(policy, who, event_type, level, has_template)]


# --- plan -----------------------------------------------------------------------------------

ALL_OPT_OUTS = ["push", "sms", "email", "voice", "postcard"]

PLANS = [
    pytest.param(everything(), 1, ["push", "sms", "email"], id="every-contact-level-1"),
    pytest.param(everything(), 2, ["push", "sms", "email", "voice"], id="every-contact-level-2"),
    pytest.param(everything(), 3, ["push", "sms", "email", "voice"], id="every-contact-level-3"),
    pytest.param(account(phone=LANDLINE), 1, [], id="landline-level-1"),
    pytest.param(account(phone=LANDLINE), 2, ["voice"], id="landline-level-2"),
    pytest.param(
        account(phone=LANDLINE, address=ADDRESS), 1, ["postcard"], id="landline-and-address"
    ),
    pytest.param(account(address=ADDRESS), 1, ["postcard"], id="address-only"),
    pytest.param(account(address=ADDRESS), 2, ["postcard"], id="address-only-level-2"),
    pytest.param(account(), 1, [], id="no-contact-at-all"),
    pytest.param(
        everything(prefers_paper=True), 1, ["push", "sms", "email", "postcard"], id="prefers-paper"
    ),
    pytest.param(
        everything(opt_outs=["sms", "email", "push"]), 1, ["postcard"], id="digital-opt-outs"
    ),
    pytest.param(
        everything(opt_outs=["sms", "email", "push"]), 2, ["voice"], id="digital-opt-outs-level-2"
    ),
    pytest.param(everything(opt_outs=ALL_OPT_OUTS), 1, [], id="opted-out-of-everything"),
    pytest.param(everything(opt_outs=ALL_OPT_OUTS), 2, [], id="opted-out-of-everything-2"),
    pytest.param(
        everything(prefers_voice=True), 1, ["push", "sms", "email", "voice"], id="prefers-voice"
    ),
    pytest.param(
        everything(prefers_voice=True, opt_outs=["voice"]),
        1,
        ["push", "sms", "email"],
        id="prefers-voice-but-opted-out",
    ),
]


@pytest.mark.parametrize(("who", "level", "expected"), PLANS)
def test_plan_for_bill_unpaid(
    policy: Policy, who: Account, level: int, expected: list[str]
) -> None:
    assert channels(policy, who, level=level) == expected


def test_plan_carries_each_channels_recipients(policy: Policy) -> None:
    assert plan(policy, everything(prefers_paper=True), "bill.unpaid", 2, every_template) == [
        Planned("push", (TOKEN,)),
        Planned("sms", (MOBILE,)),
        Planned("email", (EMAIL,)),
        Planned("voice", (MOBILE,)),
        Planned("postcard", (ADDRESS,)),
    ]


def test_push_goes_to_every_token(policy: Policy) -> None:
    [push] = plan(policy, account(push_tokens=["t1", "t2"]), "bill.unpaid", 1, every_template)
    assert push == Planned("push", ("t1", "t2"))


@pytest.mark.parametrize("level", [1, 2])
def test_prefers_voice_adds_voice_only_for_bill_unpaid(policy: Policy, level: int) -> None:
    assert channels(policy, everything(prefers_voice=True), "usage.abnormal", level) == [
        "push",
        "sms",
        "email",
    ]


def test_prefers_voice_does_not_change_the_policy(policy: Policy) -> None:
    channels(policy, everything(prefers_voice=True))
    assert policy.channels_for("bill.unpaid", 1) == ["push", "sms", "email"]


@pytest.mark.parametrize(
    "who", [everything(), everything(prefers_paper=True), everything(prefers_voice=True)]
)
@pytest.mark.parametrize("event_type", ["bill.paid", "bill.issued", "meter.tampered"])
def test_events_the_policy_does_not_route_send_nothing(
    policy: Policy, who: Account, event_type: str
) -> None:
    assert channels(policy, who, event_type) == []


def test_usage_abnormal_goes_digital(policy: Policy) -> None:
    assert channels(policy, everything(), "usage.abnormal") == ["push", "sms", "email"]


def test_a_channel_without_a_template_is_skipped(policy: Policy) -> None:
    assert channels(policy, everything(), level=2, has_template=lambda c: c != "voice") == [
        "push",
        "sms",
        "email",
    ]


def test_no_postcard_template_means_no_postcard(policy: Policy) -> None:
    no_paper = lambda c: c != "postcard"  # noqa: E731
    assert channels(policy, account(address=ADDRESS), has_template=no_paper) == []


# --- next_fallback --------------------------------------------------------------------------


def test_fallback_after_push_skips_a_used_sms(policy: Policy) -> None:
    assert next_fallback(policy, everything(), "push", {"push", "sms"}, every_template) == Planned(
        "voice", (MOBILE,)
    )


def test_fallback_after_push_is_sms_when_unused(policy: Policy) -> None:
    assert next_fallback(policy, everything(), "push", {"push"}, every_template) == Planned(
        "sms", (MOBILE,)
    )


def test_fallback_is_none_when_nothing_further_reaches(policy: Policy) -> None:
    assert (
        next_fallback(policy, account(push_tokens=[TOKEN]), "push", {"push"}, every_template)
        is None
    )


def test_fallback_skips_a_channel_without_a_template(policy: Policy) -> None:
    no_voice = lambda c: c != "voice"  # noqa: E731
    assert next_fallback(policy, everything(), "push", {"push", "sms"}, no_voice) == Planned(
        "postcard", (ADDRESS,)
    )


def test_fallback_honours_opt_outs(policy: Policy) -> None:
    who = everything(opt_outs=["voice"])
    assert next_fallback(policy, who, "sms", {"sms"}, every_template) == Planned(
        "postcard", (ADDRESS,)
    )


def test_fallback_after_email_is_postcard(policy: Policy) -> None:
    assert next_fallback(policy, everything(), "email", {"email"}, every_template) == Planned(
        "postcard", (ADDRESS,)
    )


def test_no_fallback_after_postcard(policy: Policy) -> None:
    assert next_fallback(policy, everything(), "postcard", {"postcard"}, every_template) is None


# --- recipients_for and reachable -----------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "channel", "to"),
    [
        (everything(), "push", (TOKEN,)),
        (everything(), "sms", (MOBILE,)),
        (everything(), "voice", (MOBILE,)),
        (everything(), "email", (EMAIL,)),
        (everything(), "postcard", (ADDRESS,)),
        (account(phone=LANDLINE), "sms", ()),
        (account(phone=LANDLINE), "voice", (LANDLINE,)),
        (account(), "push", ()),
        (account(), "sms", ()),
        (account(), "voice", ()),
        (account(), "email", ()),
        (account(), "postcard", ()),
    ],
)
def test_recipients_for(who: Account, channel: str, to: tuple[str, ...]) -> None:
    assert recipients_for(who, channel) == to


def test_recipients_for_an_unknown_channel_is_an_error() -> None:
    with pytest.raises(ValueError, match="fax"):
        recipients_for(everything(), "fax")


@pytest.mark.parametrize(
    ("who", "has_template", "to"),
    [
        (everything(), every_template, (MOBILE,)),
        (everything(opt_outs=["sms"]), every_template, ()),
        (everything(opt_outs=["email"]), every_template, (MOBILE,)),
        (everything(), lambda c: c != "sms", ()),
        (account(phone=LANDLINE), every_template, ()),
    ],
)
def test_reachable_by_sms(
    who: Account, has_template: Callable[[str], bool], to: tuple[str, ...]
) -> None:
    assert reachable(who, "sms", has_template) == to


def only_sms(channel: str) -> bool:
    return channel == "sms"


@pytest.mark.parametrize(
    ("who", "has_template", "reason"),
    [
        (account(), every_template, "no_contact"),
        (account(phone=LANDLINE), every_template, "no_contact"),  # no SMS; voice not routed
        (account(email=EMAIL, opt_outs=["email"]), every_template, "opted_out"),
        (account(address=ADDRESS, opt_outs=["postcard"]), every_template, "opted_out"),
        (account(email=EMAIL), only_sms, "no_template"),
        (account(email=EMAIL), every_template, None),
    ],
)
def test_why_a_notice_reaches_nobody(
    policy: Policy, who: Account, has_template: Callable[[str], bool], reason: str | None
) -> None:
    assert why_unreachable(policy, who, "usage.abnormal", 1, has_template) == reason


def test_an_urgent_alert_rings_a_landline(policy: Policy) -> None:
    landline = account(phone=LANDLINE)
    assert plan(policy, landline, "usage.abnormal", 1, every_template) == []
    urgent = plan(policy, landline, "usage.abnormal", 1, every_template, urgent=True)
    assert urgent == [Planned("voice", (LANDLINE,))]
    assert (
        why_unreachable(policy, landline, "usage.abnormal", 1, every_template, urgent=True) is None
    )

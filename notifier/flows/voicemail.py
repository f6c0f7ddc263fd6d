"""A call that an answering machine took: leave the policy's short voicemail instead.

Twilio's asynchronous answering-machine detection reports while the notice is
already playing, so the notice is cut off by replacing the live call's TwiML
(``Calls/{sid}`` update). The voicemail names no one and no amount (see
``voice.voicemail`` in config/policy.yaml); the call still counts as not
served (flows/reports.py), whatever the machine recorded.
"""

from __future__ import annotations

import logging

from sqlmodel import col, select

from channels.base import ChannelError
from channels.twilio_voice import TwilioVoice
from notifier.deliveries import service as deliveries
from notifier.deliveries.models import Delivery, DeliveryChange
from notifier.notices.rendering import spell_digits
from notifier.runtime import Runtime

__all__ = ["leave_voicemail", "voicemail_text"]

log = logging.getLogger(__name__)


def voicemail_text(rt: Runtime, language: str) -> str:
    """The policy's voicemail in ``language`` (else English): the utility's name in that
    language, the service phone spelled out."""
    texts = rt.policy.voice.voicemail
    text = texts.get(language) or texts.get(language.split("-")[0]) or texts.get("en") or ""
    return text.format(
        service_phone=spell_digits(rt.settings.service_phone),
        utility=rt.settings.identity.name_in(language),
    )


def leave_voicemail(rt: Runtime, delivery_id: int, call_sid: str) -> bool:
    """Replace call ``call_sid`` of the delivery with the voicemail; whether Twilio took it.

    At most once per call: a replayed detection report, or the task redelivered after
    a worker died, finds the attempt already in the timeline and leaves nothing again.
    The attempt is recorded before Twilio is asked, under the delivery's row lock, so
    a lost answer means no voicemail rather than two (nothing is sent twice).
    """
    channel = rt.channel("voice")
    if not isinstance(channel, TwilioVoice):
        return False  # the sandbox places no call to change
    with rt.db.session() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None or delivery.channel != "voice":
            return False
        language = delivery.language
        tried = session.exec(
            select(DeliveryChange.id).where(
                DeliveryChange.delivery_id == delivery_id,
                col(DeliveryChange.detail)["voicemail"].as_string() == "leaving",
                col(DeliveryChange.detail)["sid"].as_string() == call_sid,
            )
        ).first()
        if tried is not None:
            return False
        deliveries.record_change(session, delivery_id, "report", sid=call_sid, voicemail="leaving")
    text = voicemail_text(rt, language)
    try:
        rt.run_async(channel.leave_voicemail(call_sid, text, language))
    except ChannelError as exc:
        # The call may have ended meanwhile: the notice is unserved either way.
        log.warning(
            "delivery %s: voicemail not left: %s",
            delivery_id,
            exc,
            extra={"delivery_id": delivery_id},
        )
        left = False
    else:
        left = True
    with rt.db.session() as session:
        deliveries.record_change(
            session, delivery_id, "report", sid=call_sid, voicemail="left" if left else "not left"
        )
    return left

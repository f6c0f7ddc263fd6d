"""The simulators beside the service count what Mitake sent, per delivery, as for Twilio."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from channels import Message
from channels.mitake_sms import MitakeSms
from notifier.deliveries import callback_tokens
from notifier.providers.simulated import Simulators


def test_mitake_sends_are_counted_once_per_sms_that_went_out() -> None:
    sims = Simulators()
    env = sims.start()
    try:
        token = callback_tokens.issue(b"k", 41, purpose="status", now=datetime.now(UTC))
        url = f"http://127.0.0.1:9/v1/callbacks/mitake/status/{token}"  # nobody listens
        channel = MitakeSms(
            username=env["NOTIFIER_MITAKE__USERNAME"],
            password=env["NOTIFIER_MITAKE__PASSWORD"],
            base_url=env["NOTIFIER_MITAKE__BASE_URL"],
        )
        message = Message(
            delivery_id=41, channel="sms", to=("+886912345678",), body="電費", callback_url=url
        )

        async def twice() -> None:
            try:
                await channel.send(message)
                await channel.send(message)  # the same clientid: nothing more goes out
            finally:
                await channel.aclose()

        asyncio.run(twice())
        assert sims.sends()[41, "+886912345678"] == 1
    finally:
        sims.stop()

"""Provider simulators started beside the service, and the settings that point at them.

The embedded mode, the tests and the benchmarks run the real adapters
(twilio, aiosmtplib, firebase-admin) against these local peers, so the same
client code is exercised with no internet and no credentials.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from channels.simulators.base import FaultMix
from channels.simulators.fcm import FcmSimulator
from channels.simulators.mitake import MitakeSimulator
from channels.simulators.smtp import SmtpCatcher
from channels.simulators.twilio import TwilioSimulator
from notifier.deliveries.callback_tokens import unverified_delivery_id

__all__ = ["Simulators"]


@dataclass
class Simulators:
    """Twilio (SMS, voice), Mitake (SMS), FCM and an SMTP catcher on 127.0.0.1, at one latency.

    Mitake is started and configured beside Twilio; SMS goes through it only when
    chosen (``NOTIFIER_PROVIDERS__SMS=mitake``).
    """

    maildir: Path | None = None
    latency_ms: float = 0.0
    callback_delay: float = 0.05
    mitake_points: int = 100_000
    """Messages Mitake's prepaid account pays for; past them it answers ``s`` (no points)."""
    twilio: TwilioSimulator = field(init=False)
    mitake: MitakeSimulator = field(init=False)
    fcm: FcmSimulator = field(init=False)
    smtp: SmtpCatcher = field(init=False)

    def __post_init__(self) -> None:
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.fcm_token = secrets.token_urlsafe(24)
        self.mitake_password = secrets.token_hex(12)
        self.env: dict[str, str] = {}
        self.twilio = TwilioSimulator(
            account_sid=self.account_sid,
            auth_token=self.auth_token,
            callback_delay=self.callback_delay,
            faults=FaultMix(latency_ms=self.latency_ms),
        )
        self.mitake = MitakeSimulator(
            username="notifier-simulated",
            password=self.mitake_password,
            callback_delay=self.callback_delay,
            account_points=self.mitake_points,
            faults=FaultMix(latency_ms=self.latency_ms),
        )
        self.fcm = FcmSimulator(
            access_token=self.fcm_token,
            project="notifier-simulated",
            faults=FaultMix(latency_ms=self.latency_ms),
        )
        self.smtp = SmtpCatcher(latency_ms=self.latency_ms, maildir=self.maildir)

    def start(self) -> dict[str, str]:
        """Start them all; the ``NOTIFIER_*`` settings that point the service at them."""
        twilio_url = self.twilio.start()
        mitake_url = self.mitake.start()
        fcm_url = self.fcm.start()
        smtp_host, smtp_port = self.smtp.start()
        self.env = {
            "NOTIFIER_TWILIO__ACCOUNT_SID": self.account_sid,
            "NOTIFIER_TWILIO__AUTH_TOKEN": self.auth_token,
            "NOTIFIER_TWILIO__FROM_NUMBER": "+886900000000",
            "NOTIFIER_TWILIO__BASE_URL": twilio_url,
            "NOTIFIER_MITAKE__USERNAME": "notifier-simulated",
            "NOTIFIER_MITAKE__PASSWORD": self.mitake_password,
            "NOTIFIER_MITAKE__BASE_URL": mitake_url,
            "NOTIFIER_FCM__PROJECT_ID": "notifier-simulated",
            "NOTIFIER_FCM__ACCESS_TOKEN": self.fcm_token,
            "NOTIFIER_FCM__BASE_URL": fcm_url,
            "NOTIFIER_FCM__SDK_RETRIES": "false",
            "NOTIFIER_SMTP__HOST": smtp_host,
            "NOTIFIER_SMTP__PORT": str(smtp_port),
            "NOTIFIER_SMTP__STARTTLS": "false",
        }
        return self.env

    def sends(self) -> Counter[tuple[int, str]]:
        """Accepted sends per (delivery id, recipient), as the providers received them.

        Beside the sends each delivery's timeline records, this counts the
        duplicates a customer got. Sends that name no delivery (a benchmark's
        bare client) are left out.
        """
        sends: Counter[tuple[int, str]] = Counter()
        with self.fcm.lock:
            for push in self.fcm.received:
                if push.data.get("delivery_id", "").isdigit():
                    sends[int(push.data["delivery_id"]), push.token] += 1
        for mail in list(self.smtp.messages):
            if str(mail.get("X-Notifier-Delivery", "")).isdigit():
                sends[int(mail["X-Notifier-Delivery"]), str(mail["To"])] += 1
        with self.twilio.lock:
            for form in [*self.twilio.messages, *self.twilio.calls]:
                url = form.get("StatusCallback") or ""
                delivery_id = unverified_delivery_id(url.rsplit("/", 1)[-1]) if url else None
                if delivery_id is not None:
                    sends[delivery_id, form["To"]] += 1
        with self.mitake.lock:
            # What Mitake sent (a clientid it had seen sends nothing), by its national number.
            for form in self.mitake.messages:
                url = form.get("response") or ""
                delivery_id = unverified_delivery_id(url.rsplit("/", 1)[-1]) if url else None
                if delivery_id is not None:
                    sends[delivery_id, "+886" + form["dstaddr"][1:]] += 1
        return sends

    def stop(self) -> None:
        for simulator in (self.twilio, self.mitake, self.fcm, self.smtp):
            simulator.stop()

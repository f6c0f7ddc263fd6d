"""Messages/s per channel through the real SDKs against the simulators, run by hand.

    python bench/channels.py [--latency-ms 50] [--messages 400] [--in-flight 100]

For each adapter (Twilio SMS, Twilio voice, SMTP email, FCM push) it measures,
in the same run and against the same simulator:

* baseline: one blocking send at a time (await each before the next);
* concurrent: ``--in-flight`` sends at once through one channel instance;

and prints both rates and their ratio. The simulators answer after
``--latency-ms``, like a provider across a network.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import channels
from channels import Channel, Message
from notifier.providers.selection import provider_options
from notifier.providers.simulated import Simulators
from notifier.settings import Settings

BODY = "王小明您好，電號012****7890的115年9月電費NT$1,830尚未繳納，繳費期限115年11月20日。客服1911"


def _message(channel: str, n: int) -> Message:
    to = {
        "sms": f"+8869{n % 100000000:08d}",
        "voice": f"+8869{n % 100000000:08d}",
        "email": f"bench{n}@example.com",
        "push": f"bench-token-{n}",
    }[channel]
    if to.endswith(("21211", "21217", "21610", "21614", "30003", "0486", "0487")):
        to = to[:-1] + "9"  # stay clear of the simulator's magic numbers
    return Message(
        delivery_id=n,
        channel=channel,
        to=(to,),
        body=BODY,
        subject="電費催繳通知",
        language="zh-TW",
    )


async def _rate(channel: Channel, name: str, count: int, in_flight: int) -> float:
    gate = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        async with gate:
            await channel.send(_message(name, n))

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return count / (time.perf_counter() - started)


async def _measure(
    settings: Settings, name: str, provider: str, count: int, in_flight: int
) -> tuple[float, float]:
    channel = channels.create(name, provider, **provider_options(settings, name, provider))
    try:
        await channel.send(_message(name, 10_000_000))  # connect and warm up outside the timing
        baseline = await _rate(channel, name, max(count // 10, 20), 1)
        concurrent = await _rate(channel, name, count, in_flight)
    finally:
        await channel.aclose()
    return baseline, concurrent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    sims = Simulators(
        latency_ms=args.latency_ms, callback_delay=3600
    )  # callbacks are not measured here
    env = sims.start()
    try:
        settings = Settings(**{k.removeprefix("NOTIFIER_").lower(): v for k, v in env.items() if "__" not in k},
                            twilio={k.split("__")[1].lower(): v for k, v in env.items() if k.startswith("NOTIFIER_TWILIO__")},
                            smtp={k.split("__")[1].lower(): v for k, v in env.items() if k.startswith("NOTIFIER_SMTP__")},
                            fcm={k.split("__")[1].lower(): v for k, v in env.items() if k.startswith("NOTIFIER_FCM__")})  # fmt: skip
        print(
            f"provider latency {args.latency_ms:.0f} ms; concurrent = {args.in_flight} in flight on one channel instance"
        )
        for name, provider in (
            ("sms", "twilio"),
            ("voice", "twilio"),
            ("email", "smtp"),
            ("push", "fcm"),
        ):
            baseline, concurrent = asyncio.run(
                _measure(settings, name, provider, args.messages, args.in_flight)
            )
            print(
                f"{name:6} {provider:7} one at a time {baseline:7.1f}/s   concurrent {concurrent:8.1f}/s   "
                f"ratio {concurrent / baseline:5.1f}x"
            )
    finally:
        sims.stop()


if __name__ == "__main__":
    main()

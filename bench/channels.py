"""Messages/s and CPU per message per channel through the real SDKs against the simulators.

    python bench/channels.py [--latency-ms 50] [--messages 400] [--in-flight 100]
                             [--only email,push] [--cpu] [--smtp-connections N]

For each adapter (Twilio SMS, Twilio voice, SMTP email, FCM push) it measures,
in the same run and against the same simulator:

* baseline: one blocking send at a time (await each before the next);
* concurrent: ``--in-flight`` sends at once through one channel instance;

and prints both rates and their ratio. The simulators answer after
``--latency-ms``, like a provider across a network. They run in a child
process, so they neither share the GIL with the channel nor count in its CPU:
``--cpu`` prints this process's CPU milliseconds per message of the
concurrent phase (``time.process_time()`` around it), which is the channel's
own cost (SDK, HTTP or SMTP client, message building), beside the load
average of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import channels
from channels import Channel, Message
from notifier.providers.selection import provider_options
from notifier.providers.simulated import Simulators
from notifier.settings import Settings

HTML = (
    "<html><body><p>王小明您好，</p><p>電號012****7890的115年9月電費<b>NT$1,830</b>尚未繳納，"
    "繳費期限115年11月20日。</p><p>客服1911</p></body></html>"
)
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
    email = channel == "email"
    return Message(
        delivery_id=n,
        channel=channel,
        to=(to,),
        body=BODY,
        subject="電費催繳通知",
        language="zh-TW",
        # What a rendered notice carries: an HTML part, a VERP envelope sender.
        html=HTML if email else None,
        name="王小明" if email else None,
        return_path=f"bounces+d{n}x7f3a@utility.example" if email else None,
    )


async def _rate(channel: Channel, name: str, count: int, in_flight: int) -> tuple[float, float]:
    """Messages/s and CPU seconds per message of ``count`` sends, ``in_flight`` at once."""
    gate = asyncio.Semaphore(in_flight)
    messages = [_message(name, n) for n in range(count)]

    async def one(message: Message) -> None:
        async with gate:
            await channel.send(message)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*map(one, messages))
    return count / (time.perf_counter() - started), (time.process_time() - cpu) / count


async def _measure(
    settings: Settings, name: str, provider: str, count: int, in_flight: int
) -> tuple[float, float, float]:
    channel = channels.create(name, provider, **provider_options(settings, name, provider))
    try:
        await channel.send(_message(name, 10_000_000))  # connect and warm up outside the timing
        baseline, _ = await _rate(channel, name, max(count // 10, 20), 1)
        await _rate(channel, name, in_flight, in_flight)  # open every connection, untimed
        concurrent, cpu = await _rate(channel, name, count, in_flight)
    finally:
        await channel.aclose()
    return baseline, concurrent, cpu


def _serve(latency_ms: float, pipe: Connection) -> None:
    """The simulators, in a process of their own until the parent says stop."""
    sims = Simulators(latency_ms=latency_ms, callback_delay=3600)  # callbacks are not measured
    pipe.send(sims.start())
    try:
        pipe.recv()
    finally:
        sims.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--only", default="sms,voice,email,push", help="channels to measure")
    parser.add_argument("--cpu", action="store_true", help="print CPU ms per message")
    parser.add_argument(
        "--smtp-connections",
        type=int,
        default=0,
        help="NOTIFIER_SMTP__CONNECTIONS (0: the default)",
    )
    args = parser.parse_args()
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(args.latency_ms, theirs), daemon=True
    )
    server.start()
    env: dict[str, str] = ours.recv()
    try:
        settings = Settings(**{k.removeprefix("NOTIFIER_").lower(): v for k, v in env.items() if "__" not in k},
                            twilio={k.split("__")[1].lower(): v for k, v in env.items() if k.startswith("NOTIFIER_TWILIO__")},
                            smtp={k.split("__")[1].lower(): v for k, v in env.items() if k.startswith("NOTIFIER_SMTP__")}
                            | ({"connections": args.smtp_connections} if args.smtp_connections else {}),
                            fcm={k.split("__")[1].lower(): v for k, v in env.items() if k.startswith("NOTIFIER_FCM__")})  # fmt: skip
        print(
            f"provider latency {args.latency_ms:.0f} ms; concurrent = {args.in_flight} in flight on one channel instance"
        )
        wanted = args.only.split(",")
        for name, provider in (
            ("sms", "twilio"),
            ("voice", "twilio"),
            ("email", "smtp"),
            ("push", "fcm"),
        ):
            if name not in wanted:
                continue
            baseline, concurrent, cpu = asyncio.run(
                _measure(settings, name, provider, args.messages, args.in_flight)
            )
            line = (
                f"{name:6} {provider:7} one at a time {baseline:7.1f}/s   concurrent {concurrent:8.1f}/s   "
                f"ratio {concurrent / baseline:5.1f}x"
            )
            if args.cpu:
                load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
                line += f"   cpu {cpu * 1000:6.3f} ms/message   load {load}"
            print(line, flush=True)
    finally:
        ours.send("stop")
        server.join(timeout=10)


if __name__ == "__main__":
    main()

"""The lean provider fakes (bench/_fakes.py) alone: sends/s and their own CPU per send.

    python bench/fakes.py [--sends 20000] [--latency-ms 0] [--in-flight 200]
                          [--smtp-connections 32] [--fakes-cpu N]

Starts bench/_fakes.py (pinned to CPU N with --fakes-cpu), floods it with the
ceiling's client (bench/_ceiling.py: aiohttp, aiosmtplib) one channel at a
time, SMS naming a status callback URL served by a dummy receiver in this
process, and prints per channel the sends/s, the fakes' CPU seconds, their
share of one core and CPU per send (1 / that is what one core of fakes
allows, whatever the client reaches). An SMS's window lasts until both of its
callbacks (``sent``, ``delivered``) were received: they are its cost too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._ceiling import Targets, flood  # noqa: E402
from bench._fakes import HttpProtocol  # noqa: E402
from bench._processes import (  # noqa: E402
    Kind,
    Processes,
    ResourceMeter,
    read_exports,
    read_tally,
)

FAKES = [sys.executable, str(ROOT / "bench" / "_fakes.py")]
SETTINGS = ["NOTIFIER_TWILIO__BASE_URL", "NOTIFIER_FCM__BASE_URL", "NOTIFIER_SMTP__PORT"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--sends", type=int, default=20_000, help="sends per channel")
    add("--latency-ms", type=float, default=0.0, help="the fakes answer after this")
    add("--in-flight", type=int, default=200, help="HTTP requests in flight")
    add("--smtp-connections", type=int, default=32, help="SMTP connections, one send each")
    add("--fakes-cpu", type=int, help="pin the fakes to this CPU (taskset)")
    add("--channels", default="sms,push,email", help="which, in turn")
    return parser.parse_args(argv)


def load(when: str) -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average at {when} (1, 5, 15 min): {one:.2f} {five:.2f} {fifteen:.2f}"


async def measure(
    targets: Targets, channel: str, args: argparse.Namespace, meter_kinds: list[Kind]
) -> None:
    received = 0

    def sink(method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes:
        nonlocal received
        received += 1
        return b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(sink, 0.0), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    callback = f"http://127.0.0.1:{port}/v1/callbacks/twilio/status/bench"
    with ResourceMeter(meter_kinds) as meter:
        started = time.perf_counter()
        tally = await flood(
            targets, args.sends, args.in_flight, args.smtp_connections,
            channels=(channel,), status_callback=callback if channel == "sms" else None,
        )  # fmt: skip
        expected = 2 * tally.sent["sms"]
        deadline = time.monotonic() + 60
        while received < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
    server.close()
    fakes = meter.usage["fakes"]
    sent = tally.sent[channel]
    print(
        f"  {channel:<6} {tally.rate(channel):7.0f} sends/s ({sent} in {seconds:.2f} s incl. "
        f"callbacks; errors {sum(tally.errors.values())}); fakes {fakes.cpu:.2f} CPU s = "
        f"{100 * fakes.cpu / seconds:.0f}% of a core, {1e6 * fakes.cpu / max(sent, 1):.0f} "
        f"µs/send (one core: {sent / fakes.cpu if fakes.cpu else 0:,.0f} sends/s); "
        f"client {meter.usage['client'].cpu:.2f} CPU s"
        + (f"; callbacks received {received}/{expected}" if channel == "sms" else "")
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(load("start"))
    argv_fakes = [*FAKES, "--latency-ms", str(args.latency_ms)]
    if args.fakes_cpu is not None:
        argv_fakes = ["taskset", "-c", str(args.fakes_cpu), *argv_fakes]
    with TemporaryDirectory(prefix="notifier-fakes-") as folder:
        procs = Processes(Path(folder))
        try:
            process = procs.start("fakes", argv_fakes, dict(os.environ), stdout=subprocess.PIPE)
            targets = Targets(read_exports(process, SETTINGS))
            pid = process.pid
            kinds = [
                Kind("fakes", lambda _: [pid]),
                Kind("client", lambda _: [os.getpid()], tree=False),
            ]
            print(
                f"fakes: lean (bench/_fakes.py), latency {args.latency_ms:g} ms"
                + (f", pinned to CPU {args.fakes_cpu}" if args.fakes_cpu is not None else "")
                + f"; {args.sends} sends per channel, {args.in_flight} HTTP in flight, "
                f"{args.smtp_connections} SMTP connections"
            )
            for channel in args.channels.split(","):
                asyncio.run(measure(targets, channel, args, kinds))
            print(f"  fakes' counts: {read_tally(process)['counts']}")
        finally:
            procs.close()
    print(load("end"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

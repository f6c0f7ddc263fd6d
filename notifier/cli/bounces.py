"""``notifier bounces``: the SMTP server that bounce reports come back to.

An aiosmtpd server for the bounce domain (``NOTIFIER_BOUNCES__DOMAIN``, whose
MX points here), taking reports for our bounce addresses only; what it replies
and why is in notifier.cli.bounce_receiver.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from notifier.cli.common import runtime
from notifier.cli.common import settings as get_settings

__all__ = ["bounces_command"]


def bounces_command(
    host: Annotated[
        str | None, typer.Option(help="address to bind [default: NOTIFIER_BOUNCES__HOST]")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port to listen on [default: NOTIFIER_BOUNCES__PORT]")
    ] = None,
) -> None:
    """Receive bounce reports (DSNs, complaints) over SMTP and apply them (until Ctrl-C)."""
    import notifier.models  # noqa: F401  (every table: foreign keys span domains)
    from notifier.cli.bounce_receiver import BounceReceiver
    from notifier.observability.logs import configure_logging

    configure_logging()
    settings = get_settings()
    if not settings.bounces.domain:
        typer.echo("NOTIFIER_BOUNCES__DOMAIN is not set: no email names a bounce address", err=True)
        raise typer.Exit(2)
    rt = runtime()
    receiver = BounceReceiver(rt, host=host, port=port)
    bound_host, bound_port = receiver.start()
    typer.echo(
        f"bounces: taking reports for {settings.bounces.local_part}+*@{settings.bounces.domain}"
        f" on {bound_host}:{bound_port}"
    )
    stopped = threading.Event()

    def stop(_signum: int, _frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        stopped.wait()
    finally:
        receiver.stop()
        rt.close()

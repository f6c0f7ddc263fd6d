"""``python -m notifier`` is the ``notifier`` command."""

from notifier.cli import app

app(prog_name="notifier")

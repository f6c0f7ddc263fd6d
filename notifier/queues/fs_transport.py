"""kombu's filesystem transport with atomic message files (the embedded broker).

kombu writes a message by creating ``<name>.msg`` and then writing into it
under ``flock``; a consumer that lists the folder meanwhile moves the still
empty file away (moving ignores the lock), fails to parse it and stops the
whole worker, and the message is lost. Here the message is written under a
name consumers skip and renamed into place complete.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

__all__ = ["Transport"]


class Channel(filesystem.Channel):
    def _put(self, queue: Any, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # Consumers match "<queue>.msg" after the first dot: ".part" is never picked up.
        partial = final + ".part"
        try:
            with open(partial, "wb") as out:
                out.write(str_to_bytes(dumps(message)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"cannot add file {final!r} to the broker folder") from exc


class Transport(filesystem.Transport):
    Channel = Channel

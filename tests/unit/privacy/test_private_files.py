"""What the service writes is readable by its own user only: the database, print files, outboxes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from notifier.settings import PROJECT_ROOT


def test_every_notifier_process_writes_private_files(tmp_path: Path) -> None:
    data = tmp_path / "var"
    env = {
        **os.environ,
        "NOTIFIER_DATA_DIR": str(data),
        "NOTIFIER_DATABASE_URL": "",
        "PYTHONPATH": str(PROJECT_ROOT),  # this checkout's notifier, wherever the venv points
    }
    os.umask(0o022)  # the usual default: files the world can read
    subprocess.run([sys.executable, "-m", "notifier", "migrate"], env=env, check=True, cwd=tmp_path)

    written = [path for path in data.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in written), written
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(data)} is {oct(mode)}"

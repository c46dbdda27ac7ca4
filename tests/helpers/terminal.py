"""A command run as a person runs it: on a pseudo-terminal (``pty``), so that it sees a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass

from tests.helpers.workspace import REPO, Workspace


@dataclass(frozen=True)
class Terminal:
    """What a command wrote to its terminal, and its exit code."""

    text: str
    code: int


def run_on_terminal(ws: Workspace, args: list[str], typed: str = "", timeout: float = 120, **env: str) -> Terminal:
    """Run the command with a pseudo-terminal as its stdin, stdout and stderr; type ``typed`` once it prompts."""
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 40 rows, 160 columns: a terminal has a size
    process = subprocess.Popen(
        [sys.executable, str(REPO / "etl_pipeline.py"), *args],
        cwd=ws.root,
        env={**ws.env, "TERM": "xterm", **env},
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, b"".join(chunks).decode(errors="replace")
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: every process holding the terminal is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
            if typed and b"=#" in b"".join(chunks):  # psql's prompt
                os.write(main, typed.encode())
                typed = ""
        elif process.poll() is not None:
            break
    os.close(main)
    return Terminal(b"".join(chunks).decode(errors="replace"), process.wait(timeout))

"""Work for worker processes in the process tests (module-level: pickled by reference)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path


def note_pid_then_sleep(chunk: Sequence[str]) -> list[int]:
    """Write this worker's pid to the folder named by the chunk, then sleep a long time."""
    folder = Path(chunk[0])
    (folder / f"{os.getpid()}.pid").write_text(str(os.getpid()), encoding="ascii")
    time.sleep(120)
    return [os.getpid()]

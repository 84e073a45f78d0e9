"""Progress bars on stderr, so that stdout keeps only results (JSON summaries, tables).

    for photo in progress(photos, desc="noise sweep", unit="photo"): ...

(Lightning's own bar is moved to stderr by :class:`mlclipsim.machine.labelling.StderrProgressBar`.)

Bars show on a terminal and stay silent when stderr is not one (logs, pipes); ``MLCLIPSIM_PROGRESS=1``
forces them on, ``MLCLIPSIM_PROGRESS=0`` off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
PROGRESS_ENV = "MLCLIPSIM_PROGRESS"


def progress_disabled() -> bool | None:
    """tqdm's ``disable``: True/False when ``MLCLIPSIM_PROGRESS`` says so, else None (on when stderr is a tty)."""
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return False
    if value in ("0", "false", "no", "off"):
        return True
    return None


def progress(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterator[T]:
    """``items`` wrapped in a tqdm bar on stderr (see the module docstring)."""
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, unit=unit, total=total, file=sys.stderr, disable=progress_disabled(),
                    dynamic_ncols=True)

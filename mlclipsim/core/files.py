"""Writing output files without losing any: never over an input, never over an existing file unless
asked, and never a half-written file (write to a temporary file beside it, then rename).

    check_output(out, inputs=[image], overwrite=args.overwrite)   # ValueError saying what to do
    atomic_write(out, data)                                       # bytes, or a function writing a path
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

Writer = Callable[[Path], object]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False) -> Path:
    """Refuse an output path that is a folder, one of ``inputs`` (also through a link), or (unless
    ``overwrite``) an existing file; ValueError says what to do. Returns ``out`` as a Path."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"Output {str(out)!r} is a folder; give a file path (e.g. {str(out / 'out')!r}).")
    resolved, identity = out.resolve(), _identity(out)
    for source in inputs:
        source = Path(source)
        if resolved == source.resolve() or (identity is not None and identity == _identity(source)):
            raise ValueError(f"Output {str(out)!r} is the input {str(source)!r}; refusing to write over an input. "
                             "Give another output path.")
    if out.exists() and not overwrite:
        raise ValueError(f"Output {str(out)!r} exists; refusing to overwrite it. Pass --overwrite (overwrite=True) "
                         "to replace it, or give another path.")
    return out


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Refuse an output folder that is an existing file. Returns ``folder`` as a Path."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"Output folder {str(folder)!r} is a file; give a folder path.")
    return folder


def atomic_write(out: str | os.PathLike, content: bytes | Writer) -> Path:
    """Write ``content`` (bytes, or a function that writes the file at the path it is given) to a
    temporary file beside ``out`` with the same suffix, then rename it to ``out``: an interrupted write
    leaves ``out`` as it was. Parent folders are created."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=f".part{out.suffix}")
    os.close(handle)
    temporary = Path(name)
    try:
        if isinstance(content, (bytes, bytearray, memoryview)):
            temporary.write_bytes(content)
        else:
            content(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(temporary, out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return out

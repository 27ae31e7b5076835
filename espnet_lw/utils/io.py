"""Small file helpers every layer uses: hashing, atomic writes, YAML in and out.

One home for each, so that a fix (a permission bit, a clearer error) reaches every caller:

* :func:`sha256_of` - hex sha256 of a file, memoised per (path, size, mtime) within the process;
* :func:`atomic_write_text` - temp file in the same directory + ``os.replace``: a reader (or a
  re-run after a kill) sees the old content or the new one, never half of it;
* :func:`load_yaml` - a YAML mapping, or a :class:`~espnet_lw.utils.cli.UserError` naming the file;
* :func:`dump_yaml` / :func:`write_yaml` - block-style YAML (key order kept), written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import yaml

from espnet_lw.utils.cli import UserError

PathLike = Union[str, os.PathLike]

_hash_cache: Dict[Tuple[str, int, int], str] = {}


def sha256_of(path: PathLike) -> str:
    """Hex sha256 of a file's bytes (memoised per path, size and mtime within the process)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same directory + ``os.replace``).

    The parent directory is created when missing; the file gets the usual permissions
    (``0666`` less the umask), not ``mkstemp``'s ``0600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_yaml(path: PathLike, what: str = "YAML file", allow_empty: bool = False) -> dict:
    """Read a YAML mapping; any problem is a ``UserError`` naming ``path`` and what it should be.

    ``allow_empty``: an empty file reads as ``{}`` instead of an error.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such {what}", str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read the {what}: {e}", str(path)) from e
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"the {what} must be a YAML mapping", str(path))
    return data


def dump_yaml(data: Any) -> str:
    """Block-style YAML text, keys in the order given, unicode kept, 4-space indents."""
    return yaml.safe_dump(data, indent=4, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_yaml(path: PathLike, data: Any) -> None:
    """:func:`dump_yaml` written atomically to ``path``."""
    atomic_write_text(path, dump_yaml(data))

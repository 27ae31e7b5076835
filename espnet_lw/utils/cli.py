"""Small helpers shared by every ``python -m espnet_lw.bin.*`` entry point."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, NoReturn, Optional, Tuple

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


class UserError(RuntimeError):
    """A problem with the user's input: printed as one clear line, no traceback."""

    def __init__(self, what: str, path: str | None = None, fix: str | None = None):
        self.what = what
        self.path = path
        self.fix = fix
        super().__init__(self.format())

    def format(self) -> str:
        msg = f"{self.path}: {self.what}" if self.path else self.what
        if self.fix:
            msg += f"\n  fix: {self.fix}"
        return msg


class ConfigError(UserError, ValueError):
    """A bad value or key in a config the user wrote (YAML): a ``UserError`` that is also a ``ValueError``,
    so code that validates plain values (``float(x)``, ``dict`` checks) and callers that catch either agree."""


def str2bool(value: str) -> bool:
    """argparse ``type`` for ESPnet-style ``true``/``false`` options (also 1/0, yes/no)."""
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def split_passthrough(argv: Optional[List[str]]) -> Tuple[List[str], List[str]]:
    """``(own options, options after '--')`` of a command line (``sys.argv[1:]`` when ``argv`` is None):
    what a wrapper passes on to every ``./run.sh`` call comes after ``--``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def setup_logging(level: str | int = "INFO") -> None:
    """Configure root logging to stderr in ESPnet's format."""
    if isinstance(level, str):
        level = getattr(logging, level.upper())
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


def die(what: str, path: str | None = None, fix: str | None = None) -> NoReturn:
    """Print ``ERROR: <path>: <what>`` (+ the fix) on stderr and exit with status 1."""
    print("ERROR: " + UserError(what, path, fix).format(), file=sys.stderr)
    sys.exit(1)


def run_main(main, argv=None) -> None:
    """Run ``main(argv)``; a :class:`UserError` becomes a clean one-line error, exit 1."""
    try:
        main(argv)
    except UserError as e:
        print("ERROR: " + e.format(), file=sys.stderr)
        sys.exit(1)

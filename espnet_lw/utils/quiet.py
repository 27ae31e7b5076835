"""Keep ESPnet's import offline and quiet.

Two things happen when ``espnet2.tasks.asr`` is imported on a machine without NLTK data:

* ``g2p_en`` (pulled in through ESPnet's text frontends) calls ``nltk.download`` at import
  time, which tries the network and prints errors on stderr (or hangs on a slow network);
* ESPnet prints a Flash Attention notice on stdout.

:func:`make_espnet_quiet` replaces ``nltk.download`` with a function that only logs at debug
level (this project never uses g2p), and :func:`import_quietly` imports a module with its
stdout captured and sent to the debug log. Both are cheap and idempotent.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import io
import logging
import os
import sys
import warnings

_done = False


def _no_download(*args, **kwargs) -> bool:
    logging.getLogger("espnet_lw").debug("nltk.download%s skipped (offline, not needed)", args)
    return False


def _patch_nltk(nltk) -> None:
    nltk.download = _no_download
    downloader = getattr(nltk, "downloader", None)
    if downloader is not None:
        downloader.download = _no_download


class _NltkPatcher(importlib.abc.MetaPathFinder):
    """Import hook: patch ``nltk.download`` the moment nltk is imported (costs nothing before)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "nltk":
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                loader = spec.loader
                original = loader.exec_module

                def exec_module(module, _original=original):
                    _original(module)
                    _patch_nltk(module)

                loader.exec_module = exec_module
                return spec
        return None


def make_espnet_quiet() -> None:
    """Make nltk's downloader a no-op (now or when nltk is imported) and hush import warnings."""
    global _done
    if _done:
        return
    _done = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(espnet|espnet2|torch|librosa)")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(espnet2|torchaudio)")
    if "nltk" in sys.modules:
        _patch_nltk(sys.modules["nltk"])
    else:
        sys.meta_path.insert(0, _NltkPatcher())


def import_quietly(name: str):
    """Import module ``name`` with its stdout captured (logged at debug level)."""
    make_espnet_quiet()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        module = importlib.import_module(name)
    if buf.getvalue().strip():
        logging.getLogger("espnet_lw").debug("import %s printed: %s", name, buf.getvalue().strip())
    return module

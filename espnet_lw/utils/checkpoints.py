"""Model files in and out, safely: no code runs on load, no torn file on save.

* :func:`safe_torch_load` - ``torch.load(weights_only=True)`` with the small allow-list of types
  that ESPnet model files hold (tensors in an ``OrderedDict``; some carry numpy arrays or
  scalars); anything else (a pickled object whose ``__reduce__`` would run code, a whole pickled
  ``nn.Module``) is refused with a :class:`~espnet_lw.utils.cli.UserError` naming the file, what
  it asked for and the fix. Every pretrained file espnet-lw reads goes through it.
* :func:`atomic_torch_save` - ``torch.save`` to a temporary file in the same directory, flushed
  and ``os.replace``-d onto the target: the previous file stays whole until the new one is.
* :func:`safe_torch_loads` - the same for ``torch.load`` *of the given modules* (ESPnet's
  ``build_model_from_file``, which asks for ``weights_only=False``), e.g. when decoding;
* :func:`atomic_torch_saves` - a context manager that makes every ``torch.save`` *of the given
  modules* (ESPnet's trainer) atomic, without touching ``torch.save`` for anyone else.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import types
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Union

import torch

from espnet_lw.utils.cli import UserError

PathLike = Union[str, os.PathLike]


def _numpy_globals() -> List[Any]:
    """numpy's array / scalar reconstruction types (numpy 1.x and 2.x module paths)."""
    import numpy as np

    out: List[Any] = [np.ndarray, np.dtype]
    for mod_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            mod = __import__(mod_name, fromlist=["_reconstruct", "scalar"])
        except ImportError:
            continue
        out += [getattr(mod, n) for n in ("_reconstruct", "scalar") if hasattr(mod, n)]
    # the dtype classes pickled with arrays / scalars (np.dtypes.Float32DType, ...)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return out


def safe_globals() -> List[Any]:
    """The allow-list on top of torch's own (tensors, ``OrderedDict``, ``torch.Size``, primitives):
    what ESPnet model files (``valid.loss.ave.pth``, ``<N>epoch.pth``, DeepSpeed ``{"module": ...}``)
    and training checkpoints hold besides tensors: numpy arrays, dtypes and scalars (statistics,
    the reporter's values) and ``datetime.timedelta`` (the reporter's train time). Each is a plain
    value constructor: none runs code of the file's choosing."""
    import datetime

    return _numpy_globals() + [datetime.timedelta]


def safe_torch_load(path: PathLike, what: str = "model file", map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with :func:`safe_globals` allowed.

    A file that needs any other global to unpickle (code could run) is refused with a
    :class:`UserError` naming the file and the global; an unreadable file is a ``UserError`` too.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = " ".join(str(e).split())
        needed = ""
        for line in str(e).splitlines():
            if "Unsupported global" in line or "GLOBAL" in line:
                needed = " (" + " ".join(line.split())[:160] + ")"
                break
        raise UserError(
            f"refused to load this {what}: it is not a plain tensor file, and unpickling it could run code"
            f"{needed or ' (' + detail[:160] + ')'}",
            str(path),
            "use model files from a source you trust; if you trust this one, re-save its weights as a plain "
            "state dict (torch.save(model.state_dict(), 'weights.pth') or "
            "torch.save(dict(torch.load(FILE, weights_only=False)), 'weights.pth') in a throwaway environment) "
            "and pass that file",
        ) from None
    except FileNotFoundError:
        raise UserError(f"{what} not found", str(path)) from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"cannot read the {what} ({e.__class__.__name__}: {' '.join(str(e).split())[:300]})",
                        str(path)) from e


def atomic_torch_save(obj: Any, path: PathLike, _save=None) -> None:
    """``torch.save(obj, path)`` through a temporary file + ``os.replace`` (same directory).

    A kill, a full disk or an exception during the write leaves ``path`` as it was (the temporary
    file is removed when Python gets the chance); the new file appears whole or not at all.
    ``path`` may also be a file object, which is written to directly (nothing to make atomic).
    """
    save = _save or torch.save
    if not isinstance(path, (str, os.PathLike)):
        save(obj, path)
        return
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _TorchProxy(types.ModuleType):
    """Stands in for ``torch`` in one module's globals; subclasses override one function of it."""

    def __init__(self, real):
        super().__init__(real.__name__)
        self.__dict__["_real"] = real

    def __getattr__(self, name):
        return getattr(self.__dict__["_real"], name)


@contextlib.contextmanager
def _torch_replaced(modules: Sequence[types.ModuleType], proxy: type) -> Iterator[None]:
    """Within the block, the global ``torch`` of each of ``modules`` is a ``proxy`` of it (restored on exit)."""
    saved = []
    try:
        for mod in modules:
            real = mod.__dict__.get("torch")
            if real is None or isinstance(real, proxy):
                continue
            saved.append((mod, real))
            mod.torch = proxy(real)
        yield
    finally:
        for mod, real in saved:
            mod.torch = real


class _SafeTorch(_TorchProxy):
    """``torch`` whose ``load`` is :func:`safe_torch_load`."""

    def load(self, f, map_location=None, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return self.__dict__["_real"].load(f, map_location=map_location, weights_only=True)
        return safe_torch_load(f, "model file", map_location=map_location)


def safe_torch_loads(modules: Sequence[types.ModuleType]):
    """Within the block, ``torch.load`` called *from* ``modules`` (e.g. ESPnet's ``abs_task``, whose
    ``build_model_from_file`` passes ``weights_only=False``) is :func:`safe_torch_load`."""
    return _torch_replaced(modules, _SafeTorch)


class _AtomicTorch(_TorchProxy):
    """``torch`` whose ``save`` is atomic, everything else is torch's."""

    def save(self, obj, f, *args, **kwargs):
        real = self.__dict__["_real"]
        atomic_torch_save(obj, f, _save=lambda o, fh: real.save(o, fh, *args, **kwargs))


def atomic_torch_saves(modules: Sequence[types.ModuleType]):
    """Within the block, ``torch.save`` called *from* ``modules`` (their global ``torch``) is atomic.

    Only those modules' ``torch`` name is replaced (by a proxy whose ``save`` is
    :func:`atomic_torch_save`), and restored on exit; ``torch.save`` itself is never patched.
    """
    return _torch_replaced(modules, _AtomicTorch)

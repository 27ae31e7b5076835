"""Per-epoch WERs: keeping every ``<N>epoch.pth`` and decoding each one (cached).

ESPnet deletes every ``<N>epoch.pth`` that is not among the ``keep_nbest_models`` best (the
latest is kept). Raising ``--keep_nbest_models`` is not a fix: ESPnet averages that many
models into ``valid.loss.ave.pth``, so it would change the final model. Instead, while the
benchmark trains, a :class:`CheckpointKeeper` thread hard-links every new ``<N>epoch.pth`` of
``<expdir>/asr_*/`` into ``<expdir>/benchmark/ckpt/asr_*/`` (a copy where hard links fail), so
the file survives ESPnet's clean-up. Models trained before (or outside) the benchmark have only
the epochs ESPnet kept: their curves have gaps (``null`` in ``wer_per_epoch``).

:func:`decode_epochs` decodes (CTC greedy) and scores (sclite) every kept checkpoint once; the
WERs are cached in ``<expdir>/benchmark/epochs/<system>.json``, keyed by the checkpoint's size
and mtime, so re-running redoes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_lw import inference
from espnet_lw.benchmark.systems import SystemDir
from espnet_lw.scoring import score
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import atomic_write_text


# ---------------------------------------------------------------------------------- per-epoch cache
def epoch_cache_path(expdir: Path, name: str) -> Path:
    """The WER cache of system ``name``: ``<expdir>/benchmark/epochs/<name>.json``."""
    return expdir / "benchmark" / "epochs" / f"{name}.json"


def load_epoch_cache(expdir: Path, name: str) -> dict:
    """The cache of system ``name`` (``{"system": name, "sets": {set: {epoch: entry}}}``); empty if none."""
    path = epoch_cache_path(expdir, name)
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            logging.warning("%s: unreadable cache, starting again", path)
    return {"system": name, "sets": {}}


def wer_per_epoch(cache: dict, dset: str, epochs: int) -> List[Optional[float]]:
    """WERs of epochs 1..``epochs`` on ``dset`` from a cache (``None`` where not decoded)."""
    entries = (cache.get("sets") or {}).get(dset) or {}
    return [(entries.get(str(e)) or {}).get("wer") for e in range(1, epochs + 1)]


_EPOCH_FILE = re.compile(r"^(\d+)epoch\.pth$")


def epoch_checkpoints(expdir: Path, exp: Path) -> Dict[int, Path]:
    """``{epoch: path}`` of the ``<N>epoch.pth`` in ``exp`` and those kept under ``benchmark/ckpt``."""
    out: Dict[int, Path] = {}
    for d in (expdir / "benchmark" / "ckpt" / exp.name, exp):  # the exp dir's own file wins
        if d.is_dir():
            for p in d.iterdir():
                m = _EPOCH_FILE.match(p.name)
                if m and p.is_file():
                    out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def ckpt_id(path: Path) -> str:
    """What identifies a checkpoint's content in the cache: ``<size>:<mtime_ns>``."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def keep_checkpoints(expdir: Path) -> int:
    """Hard-link every ``asr_*/<N>epoch.pth`` into ``benchmark/ckpt/asr_*/`` (copy if linking fails);
    returns how many were newly kept."""
    n = 0
    for src in expdir.glob("asr_*/*epoch.pth"):
        if not _EPOCH_FILE.match(src.name) or ".old." in src.parent.name:
            continue
        dst = expdir / "benchmark" / "ckpt" / src.parent.name / src.name
        try:
            if dst.exists() and (os.path.samefile(src, dst) or ckpt_id(src) == ckpt_id(dst)):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copy2(src, tmp)
            os.replace(tmp, dst)
            n += 1
        except FileNotFoundError:
            continue  # ESPnet removed it meanwhile
    return n


class CheckpointKeeper:
    """A thread that calls :func:`keep_checkpoints` every ``interval`` seconds while training runs."""

    def __init__(self, expdir: Path, interval: float = 5.0):
        self.expdir, self.interval = expdir, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                keep_checkpoints(self.expdir)
            except OSError as e:  # keep going: a missed epoch is a gap in a curve, not a failure
                logging.warning("checkpoint keeper: %s", e)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        keep_checkpoints(self.expdir)


# ---------------------------------------------------------------------------------- epochs decoding
def read_audio(dumpdir: Path, dset: str) -> List[Tuple[str, object]]:
    """``[(uttid, 1-D float tensor)]`` of ``<dumpdir>/raw/<dset>/wav.scp``, shortest first."""
    import soundfile as sf
    import torch

    items = []
    for uttid, path in inference.read_scp(dumpdir / "raw" / dset / "wav.scp"):
        try:
            wav, _ = sf.read(path, dtype="float32", always_2d=False)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot read audio of utterance {uttid}: {e}", path) from e
        if wav.ndim > 1:
            wav = wav[:, 0]
        items.append((uttid, torch.from_numpy(wav)))
    items.sort(key=lambda kv: (len(kv[1]), kv[0]))
    return items


def decode_epochs(expdir: Path, dumpdir: Path, systems: Sequence[SystemDir], sets: Sequence[str],
                  batch_size: int = 8) -> None:
    """CTC greedy decoding + sclite of every epoch checkpoint not in the cache yet.

    ESPnet is loaded once; each system's model is built once from its config and the first
    checkpoint, then every epoch's state dict is loaded into it (strictly: a missing or extra key
    is an error). Results go to ``<expdir>/benchmark/epochs/<system>.json`` (after every epoch)
    and the hypotheses / sclite reports to ``<expdir>/benchmark/epochs/<system>/<set>/<N>epoch/``.
    """
    from types import SimpleNamespace

    import torch

    audio: Dict[str, list] = {}
    opts = {"decoding": "greedy", "batch_size": batch_size, "beam_size": 1}
    for s in systems:
        ckpts = epoch_checkpoints(expdir, s.exp)
        cache = load_epoch_cache(expdir, s.name)
        todo = []
        for dset in sets:
            entries = cache.setdefault("sets", {}).setdefault(dset, {})
            for e, p in ckpts.items():
                if (entries.get(str(e)) or {}).get("ckpt") != ckpt_id(p):
                    todo.append((dset, e, p))
        if not todo:
            logging.info("%s: every kept epoch is decoded already (%d epochs)", s.name, len(ckpts))
            continue
        logging.info("%s: decoding %d epoch checkpoint(s) x set(s)", s.name, len(todo))
        first = todo[0][2]
        s2t = inference.build_speech2text(SimpleNamespace(asr_train_config=str(s.exp / "config.yaml"),
                                                          asr_model_file=str(first)), opts, "cpu")
        loaded = None
        for dset, e, p in todo:
            if dset not in audio:
                audio[dset] = read_audio(dumpdir, dset)
            if loaded != p:
                state = torch.load(p, map_location="cpu")
                try:
                    s2t.asr_model.load_state_dict(state, strict=True)
                except RuntimeError as err:
                    raise UserError(f"checkpoint does not fit the model of {s.exp}/config.yaml: {err}", str(p)) from err
                s2t.asr_model.eval()
                loaded = p
            out = expdir / "benchmark" / "epochs" / s.name / dset / f"{e}epoch"
            out.mkdir(parents=True, exist_ok=True)
            lines = []
            items = audio[dset]
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                for (uttid, _), ids in zip(chunk, inference.decode_batch(s2t, [w for _, w in chunk], opts)):
                    lines.append(f"{uttid} {inference.ids_to_text(s2t, ids)[0]}".rstrip())
            (out / "text").write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
            data = dumpdir / "raw" / dset
            utt2spk = data / "utt2spk"
            res = score(data / "text", out / "text", out, utt2spk if utt2spk.is_file() else None,
                        score_types=("wer",), detail=False)["wer"]
            cache["sets"][dset][str(e)] = {"wer": res.err, "ckpt": ckpt_id(p), "checkpoint": str(p)}
            atomic_write_text(epoch_cache_path(expdir, s.name), json.dumps(cache, indent=1, sort_keys=True))
            logging.info("%s epoch %d %s: WER %.2f%%", s.name, e, dset, res.err)

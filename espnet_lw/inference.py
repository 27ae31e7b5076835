"""CTC decoding of a data set with a trained ESPnet/espnet-lw model (stage 12's library).

Two decoders, chosen with ``decoding:`` in the decoding YAML (conf/decode_ctc_*.yaml):

* ``greedy``: best path, batched (argmax per frame, merge repeats, drop blanks);
* ``beam``: CTC prefix beam search (frame-synchronous, ``espnet_lw.decoding``), batched
  encoder, no LM.

The model is loaded with ESPnet's ``Speech2Text`` (so any ESPnet ASR model works, plus
espnet-lw's classes). :func:`run_inference` writes ``text`` (uttid words), ``token``,
``token_int`` and ``decode.log`` with the real-time factor, the utterances split over
``nj`` processes. The command line is ``python -m espnet_lw.bin.asr_inference``; the benchmark's
per-epoch decoding (:mod:`espnet_lw.benchmark.epochs`) reuses the pieces.

The functions take the command line's ``argparse.Namespace`` (``args``: ``asr_train_config``,
``asr_model_file``, ``ngpu``, ...) and the decoding options of :func:`load_options` (``opts``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from importlib import import_module
from pathlib import Path

from espnet_lw.decoding import greedy_search, prefix_beam_search
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import load_yaml
from espnet_lw.utils.jobs import n_jobs

DEFAULTS = {"decoding": "greedy", "batch_size": 8, "beam_size": 10}
MIN_UTTS_PER_JOB = 100  # a decoding job gets at least this many utterances (decode_jobs)


def load_options(args) -> dict:
    """:data:`DEFAULTS`, updated from ``args.config`` (a YAML file) and then the explicit options."""
    opts = dict(DEFAULTS)
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UserError("no such decoding config", str(path), "see conf/decode_ctc_*.yaml")
        loaded = load_yaml(path, "decoding config", allow_empty=True)
        unknown = set(loaded) - set(DEFAULTS)
        if unknown:
            raise UserError(f"unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}", str(path))
        opts.update(loaded)
    for k in ("decoding", "beam_size", "batch_size"):
        if getattr(args, k) is not None:
            opts[k] = getattr(args, k)
    return opts


def read_scp(path: Path) -> list[tuple[str, str]]:
    """``[(uttid, audio path)]`` of a ``wav.scp``; a missing or empty file is a ``UserError``."""
    if not path.is_file():
        raise UserError("no such wav.scp", str(path), "run stage 3 first")
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            items.append((parts[0], parts[1].strip()))
    if not items:
        raise UserError("no utterances", str(path))
    return items


def build_speech2text(args, opts, device: str):
    """ESPnet's ``Speech2Text`` for ``args.asr_train_config`` / ``args.asr_model_file`` (CTC only, no LM)."""
    # espnet_lw.tasks.asr first: it imports ESPnet quietly; register_models adds the lw_* models
    from espnet_lw.tasks.asr import register_models  # noqa: I001
    from espnet2.bin.asr_inference import Speech2Text

    from espnet_lw.utils.checkpoints import safe_torch_loads

    register_models()
    for f in (args.asr_train_config, args.asr_model_file):
        if not Path(f).is_file():
            raise UserError("model file not found", f, "train the model first (stage 11)")
    # ESPnet loads the model file with weights_only=False: made a weights_only load here (a file that would
    # run code is refused, naming it)
    with safe_torch_loads([import_module("espnet2.tasks.abs_task")]):
        return Speech2Text(
            asr_train_config=args.asr_train_config,
            asr_model_file=args.asr_model_file,
            device=device,
            ctc_weight=1.0,
            lm_weight=0.0,
            nbest=1,
        )


def decode_batch(s2t, waves, opts):
    """CTC decoding of a list of 1-D float tensors; returns token ids per item."""
    import torch

    model = s2t.asr_model
    lengths = torch.tensor([len(w) for w in waves])
    speech = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        speech[i, : len(w)] = w
    with torch.no_grad():
        enc, enc_lens = model.encode(speech.to(s2t.device), lengths.to(s2t.device))
        logp = model.ctc.log_softmax(enc).cpu().numpy()
    out = []
    blank = model.blank_id
    for i in range(len(waves)):
        frames = logp[i, : int(enc_lens[i])]
        if opts["decoding"] == "greedy":
            out.append(greedy_search(frames, blank))
        else:
            out.append(prefix_beam_search(frames, int(opts["beam_size"]), blank)[0][0])
    return out


def ids_to_text(s2t, ids):
    """``(text, tokens)`` of decoded token ids (blank and <sos/eos> dropped, spaces normalised)."""
    ids = [i for i in ids if i not in (0, s2t.asr_model.sos)]
    tokens = s2t.converter.ids2tokens(ids)
    text = s2t.tokenizer.tokens2text(tokens) if s2t.tokenizer is not None else "".join(tokens)
    return " ".join(text.split()), tokens


def decode_part(job):
    """Decode one part of the utterances; returns [(uttid, text, tokens, ids)], audio seconds."""
    import soundfile as sf
    import torch

    args, opts, items, threads = job
    torch.set_num_threads(threads)
    device = "cuda" if args.ngpu > 0 else "cpu"
    s2t = build_speech2text(args, opts, device)
    results, audio_sec = [], 0.0
    bs = int(opts["batch_size"])
    for start in range(0, len(items), bs):
        chunk = items[start : start + bs]
        waves = []
        for uttid, path in chunk:
            try:
                wav, rate = sf.read(path, dtype="float32", always_2d=False)
            except Exception as e:  # noqa: BLE001 - any reader failure is a bad input file
                raise UserError(f"cannot read audio of utterance {uttid}: {e}", path) from e
            if wav.ndim > 1:
                wav = wav[:, 0]
            audio_sec += len(wav) / rate
            waves.append(torch.from_numpy(wav))
        for (uttid, _), ids in zip(chunk, decode_batch(s2t, waves, opts)):
            text, tokens = ids_to_text(s2t, ids)
            results.append((uttid, text, tokens, ids))
    return results, audio_sec


def decode_jobs(n_utts: int, nj: int, ngpu: int = 0, min_utts_per_job: int = MIN_UTTS_PER_JOB) -> int:
    """How many processes decode ``n_utts`` utterances: at most ``nj``, one on a GPU, and no more than
    one per ``min_utts_per_job`` utterances (a job's start, with ESPnet's imports and the model load,
    costs more than decoding a few utterances in a process that is already running)."""
    return 1 if ngpu > 0 else n_jobs(n_utts, nj, min_utts_per_job)


def run_inference(args) -> str:
    """Decode the utterances of ``args.data_path_and_name_and_type`` into ``args.output_dir``.

    Writes ``text``, ``token``, ``token_int`` and ``decode.log``; returns the summary line of
    ``decode.log`` (decoder, utterances, audio and wall seconds, real-time factor, jobs).
    """
    opts = load_options(args)
    scp = Path(args.data_path_and_name_and_type.split(",")[0])
    items = read_scp(scp)
    nj = decode_jobs(len(items), args.nj, args.ngpu, getattr(args, "min_utts_per_job", MIN_UTTS_PER_JOB))
    # each job's share of the cores; OMP_NUM_THREADS, when set, caps it (a caller that runs several things at once)
    threads = max(1, (os.cpu_count() or 1) // nj)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = max(1, min(threads, int(os.environ["OMP_NUM_THREADS"])))
    # sort by file size so that greedy batches hold utterances of similar length
    items.sort(key=lambda kv: os.path.getsize(kv[1]) if os.path.exists(kv[1]) else 0)
    parts = [items[j::nj] for j in range(nj)]
    logging.info("decoding %d utterances of %s (%s) with %d job(s)", len(items), scp, opts["decoding"], nj)
    t0 = time.time()
    if nj == 1:
        outputs = [decode_part((args, opts, parts[0], threads))]
    else:
        with mp.get_context("spawn").Pool(nj) as pool:
            outputs = pool.map(decode_part, [(args, opts, p, threads) for p in parts])
    elapsed = time.time() - t0
    results = sorted((r for out, _ in outputs for r in out), key=lambda r: r[0])
    audio_sec = sum(a for _, a in outputs)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "text", "w", encoding="utf-8") as ft, open(out / "token", "w", encoding="utf-8") as fk, open(
        out / "token_int", "w", encoding="utf-8"
    ) as fi:
        for uttid, text, tokens, ids in results:
            ft.write(f"{uttid} {text}\n")
            fk.write(f"{uttid} {' '.join(tokens)}\n")
            fi.write(f"{uttid} {' '.join(map(str, ids))}\n")
    rtf = elapsed / max(audio_sec, 1e-9)
    summary = (
        f"decoding={opts['decoding']} utterances={len(results)} audio_seconds={audio_sec:.1f} "
        f"wall_seconds={elapsed:.1f} rtf={rtf:.4f} jobs={nj}\n"
    )
    (out / "decode.log").write_text(summary, encoding="utf-8")
    logging.info("wrote %s: %s", out / "text", summary.strip())
    return summary.strip()

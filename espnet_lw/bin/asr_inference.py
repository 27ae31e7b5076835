"""Stage 12: CTC decoding of a data set with a trained ESPnet/espnet-lw model.

Two decoders, chosen with ``decoding:`` in the ``--config`` YAML (conf/decode_ctc_*.yaml):

* ``greedy``: best path, batched (argmax per frame, merge repeats, drop blanks);
* ``beam``: CTC prefix beam search (frame-synchronous, ``espnet_lw.decoding``), batched
  encoder, no LM.

The model is loaded with ESPnet's ``Speech2Text`` (so any ESPnet ASR model works, plus
espnet-lw's classes). Outputs in ``--output_dir``: ``text`` (uttid words), ``token``,
``token_int`` and ``decode.log`` with the real-time factor. Utterances are split over
``--nj`` processes.

    python -m espnet_lw.bin.asr_inference --config conf/decode_ctc_greedy.yaml \\
        --asr_train_config exp/asr_x/config.yaml --asr_model_file exp/asr_x/valid.loss.ave.pth \\
        --data_path_and_name_and_type dump/raw/test/wav.scp,speech,sound --output_dir exp/asr_x/decode/test
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import time
from pathlib import Path

import yaml

from espnet_lw.decoding import greedy_search, prefix_beam_search
from espnet_lw.utils.cli import UserError, run_main, setup_logging

DEFAULTS = {"decoding": "greedy", "batch_size": 8, "beam_size": 10}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="decoding YAML (keys: decoding, batch_size, beam_size)")
    p.add_argument("--asr_train_config", required=True, help="config.yaml written by training")
    p.add_argument("--asr_model_file", required=True, help="model parameters (.pth)")
    p.add_argument("--data_path_and_name_and_type", required=True, help="wav.scp,speech,sound")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--nj", type=int, default=1, help="parallel decoding processes")
    p.add_argument("--ngpu", type=int, default=0, help="1: decode on the GPU (then --nj 1)")
    p.add_argument("--decoding", choices=["greedy", "beam"], help="overrides the config")
    p.add_argument("--beam_size", type=int, help="overrides the config")
    p.add_argument("--batch_size", type=int, help="overrides the config (greedy only)")
    return p


def load_options(args) -> dict:
    opts = dict(DEFAULTS)
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UserError("no such decoding config", str(path), "see conf/decode_ctc_*.yaml")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        unknown = set(loaded) - set(DEFAULTS)
        if unknown:
            raise UserError(f"unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}", str(path))
        opts.update(loaded)
    for k in ("decoding", "beam_size", "batch_size"):
        if getattr(args, k) is not None:
            opts[k] = getattr(args, k)
    return opts


def read_scp(path: Path) -> list[tuple[str, str]]:
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
    from espnet_lw.tasks.asr import register_models  # registers lw_* models in this process
    from espnet2.bin.asr_inference import Speech2Text

    register_models()
    for f in (args.asr_train_config, args.asr_model_file):
        if not Path(f).is_file():
            raise UserError("model file not found", f, "train the model first (stage 11)")
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


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    opts = load_options(args)
    scp = Path(args.data_path_and_name_and_type.split(",")[0])
    items = read_scp(scp)
    nj = 1 if args.ngpu > 0 else max(1, min(args.nj, len(items)))
    threads = max(1, (os.cpu_count() or 1) // nj)
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


if __name__ == "__main__":
    run_main(main)

"""Parity of an exported model with the ESPnet model it came from (written by the export).

Each utterance is decoded alone (batch size 1, as ESPnet's ``Speech2Text`` does) three ways: the
ESPnet model in torch (``encode`` + CTC log-softmax), the fp32 ONNX file and the int8 ONNX file
under onnxruntime (CPU), the ONNX files fed with the torch frontend's features. Reported:

* ``fp32_vs_torch``: max |log-prob difference| over the first :data:`LOGPROB_UTTS` utterances, and
  how many greedy (best-path) hypotheses of all the utterances are the same;
* ``int8_vs_fp32``: the same between the int8 and the fp32 files (log-probabilities of unlikely
  tokens move most under int8: ``max_abs_prob_diff`` is the difference of probabilities);
* ``wer`` (when a ``text`` file is beside the ``wav.scp``): word error rate (%) of each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from espnet_lw.decoding import greedy_search
from espnet_lw.inference import read_scp
from espnet_lw.utils.cli import UserError

#: utterances whose log-probabilities are compared (the hypotheses are compared on all)
LOGPROB_UTTS = 5
#: fp32 ONNX vs torch: above this the export is reported as not in parity
FP32_TOLERANCE = 1e-3


@dataclass
class Utterance:
    uttid: str
    wave: np.ndarray  # float32, mono, the model's sampling rate
    text: Optional[str] = None  # reference transcript, when known


def read_utterances(scp, fs: int, n: int = 20) -> List[Utterance]:
    """The first ``n`` (0: all) utterances of a ``wav.scp`` (``uttid path`` lines), read as mono float32.

    A ``text`` file in the same directory gives each utterance its reference transcript.
    """
    import soundfile as sf

    scp = Path(scp)
    items = read_scp(scp)
    if n > 0:
        items = items[:n]
    texts: Dict[str, str] = {}
    text_file = scp.parent / "text"
    if text_file.is_file():
        for line in text_file.read_text(encoding="utf-8").splitlines():
            parts = line.split(maxsplit=1)
            if parts:
                texts[parts[0]] = parts[1] if len(parts) == 2 else ""
    utts = []
    for uttid, path in items:
        if path.endswith("|"):
            raise UserError(f"utterance {uttid} is a command ({path}), not a file: give a formatted wav.scp "
                            "(stage 3's dump/raw/<set>/wav.scp)", str(scp))
        try:
            wav, rate = sf.read(path, dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001 - any reader failure is a bad input file
            raise UserError(f"cannot read the audio of utterance {uttid} ({e})", path) from e
        if rate != fs:
            raise UserError(f"utterance {uttid} is sampled at {rate} Hz, the model at {fs} Hz", path)
        utts.append(Utterance(uttid, wav[:, 0].copy(), texts.get(uttid)))
    return utts


def synthetic_utterances(fs: int) -> List[Utterance]:
    """Three deterministic signals (tones + noise, 1.1 / 2.3 / 3.7 s) for a parity check without data."""
    rng = np.random.default_rng(0)
    utts = []
    for i, sec in enumerate((1.1, 2.3, 3.7)):
        t = np.arange(int(sec * fs)) / fs
        wav = 0.1 * np.sin(2 * np.pi * (200 + 150 * i) * t * (1 + 0.3 * t)) + 0.02 * rng.standard_normal(t.size)
        utts.append(Utterance(f"synthetic{i}", wav.astype(np.float32)))
    return utts


def ids_to_text(ids: Sequence[int], tokens: Sequence[str], info: dict) -> str:
    """Token ids -> words, as ESPnet's char / sentencepiece tokenizers join them."""
    pieces = [tokens[i] for i in ids if tokens[i] not in ("<blank>", "<sos/eos>")]
    if info.get("token_type") == "char":
        text = "".join(" " if p == info.get("space_token", "<space>") else p for p in pieces)
    elif info.get("token_type") == "bpe":
        text = "".join(pieces).replace("\u2581", " ")
    else:
        text = " ".join(pieces)
    return " ".join(text.split())


def word_errors(ref: str, hyp: str) -> int:
    """Levenshtein distance between the word sequences."""
    r, h = ref.split(), hyp.split()
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        cur = [i] + [0] * len(h)
        for j, hw in enumerate(h, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rw != hw))
        prev = cur
    return prev[-1]


def _session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _compare(a: List[np.ndarray], b: List[np.ndarray], blank: int, n_logprob: int) -> dict:
    same = sum(greedy_search(x, blank) == greedy_search(y, blank) for x, y in zip(a, b))
    k = min(n_logprob, len(a))
    diff = max((float(np.abs(x - y).max()) for x, y in zip(a[:k], b[:k])), default=0.0)
    pdiff = max((float(np.abs(np.exp(x) - np.exp(y)).max()) for x, y in zip(a[:k], b[:k])), default=0.0)
    return {"logprob_utterances": k, "max_abs_diff": diff, "max_abs_prob_diff": pdiff,
            "hypotheses": len(a), "same_hypotheses": int(same), "agreement": same / max(len(a), 1)}


def check(model, files: Dict[str, Path], utts: List[Utterance], info: dict, tokens: Sequence[str],
          source: str) -> dict:
    """The parity report (see the module docstring) of the exported ``files`` (precision -> path)."""
    blank = int(info["blank_id"])
    outputs: Dict[str, List[np.ndarray]] = {"torch": []}
    feats_list = []
    with torch.no_grad():
        for u in utts:
            speech = torch.from_numpy(u.wave)[None]
            lens = torch.tensor([speech.size(1)])
            enc, enc_lens = model.encode(speech, lens)
            outputs["torch"].append(model.ctc.log_softmax(enc)[0, : int(enc_lens[0])].numpy())
            feats, feats_lens = model._extract_feats(speech, lens)
            feats_list.append((feats.numpy().astype(np.float32), feats_lens.numpy().astype(np.int64)))
    for precision, path in files.items():
        sess = _session(path)
        outputs[precision] = []
        for feats, feats_lens in feats_list:
            logp, out_lens = sess.run(None, {"feats": feats, "feats_lens": feats_lens})
            outputs[precision].append(logp[0, : int(out_lens[0])])
    report = {"utterances": {"source": source, "count": len(utts)},
              "fp32_vs_torch": _compare(outputs["fp32"], outputs["torch"], blank, LOGPROB_UTTS)}
    if "int8" in outputs:
        report["int8_vs_fp32"] = _compare(outputs["int8"], outputs["fp32"], blank, LOGPROB_UTTS)
    if utts and all(u.text is not None for u in utts):
        n_words = sum(len(u.text.split()) for u in utts)
        report["wer"] = {"words": n_words}
        for name, logps in outputs.items():
            errs = sum(word_errors(u.text, ids_to_text(greedy_search(lp, blank), tokens, info))
                       for u, lp in zip(utts, logps))
            report["wer"][name] = round(100.0 * errs / max(n_words, 1), 2)
    fp = report["fp32_vs_torch"]
    report["ok"] = bool(fp["max_abs_diff"] <= FP32_TOLERANCE and fp["same_hypotheses"] == fp["hypotheses"])
    report["tolerance"] = FP32_TOLERANCE
    return report


def choose_precision(report: dict, max_relative: float) -> tuple:
    """``("int8" | "fp32", reason)``: int8 unless its parity-set WER exceeds fp32's by more than ``max_relative``."""
    wer = report.get("wer")
    if not wer or "int8" not in wer:
        return "int8", "no reference text for the parity utterances: int8 by default"
    fp32, int8 = wer["fp32"], wer["int8"]
    limit = fp32 * (1 + max_relative)
    if int8 <= limit + 1e-9 or math.isclose(int8, fp32):
        return "int8", f"int8 WER {int8} % <= fp32 {fp32} % x {1 + max_relative:g}"
    return "fp32", f"int8 WER {int8} % > fp32 {fp32} % x {1 + max_relative:g}: fp32 kept"

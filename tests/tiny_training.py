"""A tiny training set-up for ESPnet's trainer (random audio, 10 character tokens, a 2-block Conformer),
shared by the checkpoint, multi-process training and EncRL model tests (test_checkpoints.py, test_ddp_cpu.py,
test_encrl_model.py)."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import List

import numpy as np
import soundfile
import torch
import yaml
from tiny_models import asr_config, write_stats

from espnet_lw.tasks.asr import LWASRTask

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "d", "e", "f", "g", "<sos/eos>"]
FRONTEND = {"n_fft": 128, "win_length": 128, "hop_length": 64, "n_mels": 8, "fs": 16000}
ENCODER = {
    "output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 4,
    "input_layer": "conv2d", "cnn_module_kernel": 3, "macaron_style": True, "rel_pos_type": "latest",
    "pos_enc_layer_type": "rel_pos", "selfattention_layer_type": "rel_selfattn", "use_cnn_module": True,
}


def write_reference(d: Path, seed: int = 0, **over) -> tuple[Path, Path]:
    """A random 'trained' 4-block reference: ``d/config.yaml`` + ``d/model.pth`` (``over``: config keys
    replaced)."""
    d.mkdir(parents=True, exist_ok=True)
    stats = write_stats(d / "feats_stats.npz")
    conf = asr_config(TOKENS, FRONTEND, ENCODER, normalize_conf={"stats_file": str(stats)}, **over)
    torch.manual_seed(seed)
    model = LWASRTask.build_model(argparse.Namespace(**copy.deepcopy(conf)))
    (d / "config.yaml").write_text(yaml.safe_dump(conf))
    torch.save(model.state_dict(), d / "model.pth")
    return d / "config.yaml", d / "model.pth"


def write_data(d: Path, n: int = 8) -> Path:
    """``d/data`` (wav.scp + text of ``n`` short random utterances), token list and shape files in ``d``."""
    data = d / "data"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    wav, text, shape, tshape = [], [], [], []
    for i in range(n):
        x = (rng.normal(size=1600 + 300 * i) * 0.1).astype(np.float32)
        soundfile.write(data / f"u{i}.flac", x, 16000, subtype="PCM_16")
        wav.append(f"u{i} {data / f'u{i}.flac'}\n")
        text.append(f"u{i} a b c\n")
        shape.append(f"u{i} {len(x)}\n")
        tshape.append(f"u{i} 3,10\n")
    (data / "wav.scp").write_text("".join(wav))
    (data / "text").write_text("".join(text))
    (d / "speech_shape").write_text("".join(shape))
    (d / "text_shape").write_text("".join(tshape))
    (d / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    return data


def train_args(d: Path, config: Path, out: Path, extra: List[str] = ()) -> List[str]:
    """The trainer's command line for ``config`` on the data of :func:`write_data` (in ``d``)."""
    data = d / "data"
    return [
        "--config", str(config), "--output_dir", str(out), "--token_list", str(d / "tokens.txt"),
        "--token_type", "char", "--fold_length", "80000", "--fold_length", "150",
        "--train_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
        "--train_data_path_and_name_and_type", f"{data}/text,text,text",
        "--valid_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
        "--valid_data_path_and_name_and_type", f"{data}/text,text,text",
        "--train_shape_file", str(d / "speech_shape"), "--train_shape_file", str(d / "text_shape"),
        "--valid_shape_file", str(d / "speech_shape"), "--valid_shape_file", str(d / "text_shape"),
        *extra,
    ]


def common_conf(stats: Path, max_epoch: int, batch_size: int = 4) -> dict:
    return {
        "frontend": "default", "frontend_conf": FRONTEND, "specaug": None,
        "normalize": "global_mvn", "normalize_conf": {"stats_file": str(stats)},
        "encoder": "conformer", "encoder_conf": {**ENCODER, "num_blocks": 2}, "decoder": "none",
        "optim": "adam", "optim_conf": {"lr": 0.001}, "batch_type": "folded", "batch_size": batch_size,
        "max_epoch": max_epoch, "num_workers": 0, "best_model_criterion": [["valid", "loss", "min"]],
        "keep_nbest_models": 1, "use_tensorboard": False, "use_matplotlib": False, "num_att_plot": 0,
        "seed": 0,
    }


def write_ctc_config(path: Path, stats: Path, max_epoch: int = 1) -> Path:
    """A 2-block ``lw_ctc`` student config."""
    path.write_text(yaml.safe_dump({**common_conf(stats, max_epoch), "model": "lw_ctc", "model_conf": {}}))
    return path


def write_encrl_config(path: Path, ref: tuple[Path, Path], max_epoch: int = 1) -> Path:
    """A 2-block ``lw_encrl`` student config of ``ref`` (mse on the encoder output: the CTC head gets no gradient)."""
    cfg, pth = ref
    conf = {**common_conf(cfg.parent / "feats_stats.npz", max_epoch), "model": "lw_encrl",
            "model_conf": {"reference_config": str(cfg), "reference_model": str(pth),
                           "alignment": {"mse": {"weight": 1.0, "target": "encoder"}},
                           "init_from_reference": "every_other"}}
    path.write_text(yaml.safe_dump(conf))
    return path

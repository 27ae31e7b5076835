"""ONNX export (issue 11, item 2) on tiny random models: files, meta.json, dynamic shapes, parity
with torch, int8 quantization and the size bounds per parameter.

The models are random but "trained-looking" where it matters: BatchNorm statistics are not the
initial ones (the export folds them) and the CTC head is made peaky so that greedy hypotheses are
not all blank.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile
import torch
import yaml
from tiny_models import asr_config, write_stats

from espnet_lw.export.onnx_export import export_model, frontend_settings
from espnet_lw.export.parity import choose_precision, synthetic_utterances
from espnet_lw.export.wrapper import CTCExportModule, check_exportable, rel_positional_encoding
from espnet_lw.tasks.asr import LWASRTask
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import sha256_of

torch.set_num_threads(1)

CHARS = ["<blank>", "<unk>", "<space>", "a", "b", "c", "d", "e", "f", "g", "<sos/eos>"]
FRONTEND = {"n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 20, "fs": "16k"}
# d_model 64: big enough that the MatMul weights dominate the file (int8 smaller than fp32)
ENCODER = {"output_size": 64, "attention_heads": 2, "linear_units": 128, "num_blocks": 2, "input_layer": "conv2d",
           "cnn_module_kernel": 7, "macaron_style": True, "rel_pos_type": "latest", "pos_enc_layer_type": "rel_pos",
           "selfattention_layer_type": "rel_selfattn", "use_cnn_module": True}


def write_model(d: Path, model_name: str = "lw_ctc", encoder: dict | None = None, seed: int = 0,
                **over) -> tuple[Path, Path]:
    """``d/exp/asr_tiny/config.yaml`` + ``model.pth`` of a random model; stats path recipe-relative."""
    stats = "exp/asr_stats/train/feats_stats.npz"
    write_stats(d / stats, dim=FRONTEND["n_mels"], seed=seed)
    over = {"token_type": "char", "normalize_conf": {"stats_file": stats}, "model": model_name,
            "model_conf": {} if model_name == "lw_ctc" else {"ctc_weight": 1.0}, **over}
    conf = asr_config(CHARS, FRONTEND, encoder or ENCODER, **over)
    build = copy.deepcopy(conf)
    build["normalize_conf"] = {"stats_file": str(d / stats)}
    torch.manual_seed(seed)
    model = LWASRTask.build_model(argparse.Namespace(**build))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0, 0.2)
        # a head that reads what changes from frame to frame (a random encoder's output is mostly one
        # constant vector): remove the mean output on a synthetic signal, sharpen, fewer blanks
        model.eval()
        wav = torch.from_numpy(synthetic_utterances(16000)[2].wave)[None]
        enc, _ = model.encode(wav, torch.tensor([wav.size(1)]))
        lo = model.ctc.ctc_lo
        lo.weight.mul_(3.0)
        lo.bias.copy_(-lo.weight @ enc[0].mean(0))
        lo.bias[0] -= 1.0
        lo.bias[len(CHARS) - 1] -= 10.0  # <sos/eos>: not a CTC output
    exp = d / "exp" / "asr_tiny"
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "config.yaml").write_text(yaml.safe_dump(conf), encoding="utf-8")
    torch.save(model.state_dict(), exp / "model.pth")
    return exp / "config.yaml", exp / "model.pth"


def write_scp(d: Path, n: int = 4) -> Path:
    """A wav.scp + text of ``n`` synthetic 16 kHz utterances of different lengths."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    scp, text = [], []
    for i in range(n):
        # segments of 0.15 s: tone, noise burst or silence, so that the frames differ
        segs = []
        for _ in range(6 + 3 * i):
            t = np.arange(2400) / 16000
            kind = rng.integers(3)
            if kind == 0:
                segs.append(0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t))
            else:
                segs.append((rng.uniform(0.02, 0.3) if kind == 1 else 0.001) * rng.standard_normal(t.size))
        wav = np.concatenate(segs)
        soundfile.write(d / f"u{i}.wav", wav.astype(np.float32), 16000, subtype="PCM_16")
        scp.append(f"u{i} {d / f'u{i}.wav'}\n")
        text.append(f"u{i} {'ab cd' if i % 2 else 'abc'}\n")
    (d / "wav.scp").write_text("".join(scp), encoding="utf-8")
    (d / "text").write_text("".join(text), encoding="utf-8")
    return d / "wav.scp"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(config, model file, export result) of a tiny lw_ctc student, parity on a 4-utterance wav.scp."""
    d = tmp_path_factory.mktemp("export")
    cfg, pth = write_model(d)
    scp = write_scp(d / "data" / "dev")
    res = export_model(cfg, pth, d / "onnx", parity_scp=scp, parity_n=0)
    return cfg, pth, res


def build(cfg: Path, pth: Path):
    """ESPnet's own loader, run from the recipe dir (the config's stats path is recipe-relative)."""
    old = Path.cwd()
    os.chdir(cfg.parents[2])
    try:
        model, _ = LWASRTask.build_model_from_file(cfg, pth, "cpu")
    finally:
        os.chdir(old)
    return model.eval()


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_files_tokens_and_meta(exported):
    cfg, pth, res = exported
    out = res.out_dir
    for name in ("model.onnx", "model.int8.onnx", "tokens.txt", "meta.json", "parity.json"):
        assert (out / name).is_file(), name
    assert (out / "tokens.txt").read_text(encoding="utf-8").splitlines() == CHARS
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta == res.meta
    assert meta["format"] == "espnet_lw.onnx/1"
    assert meta["sample_rate"] == 16000 and meta["blank_id"] == 0 and meta["subsampling"] == 4
    assert meta["token_type"] == "char" and meta["space_token"] == "<space>"
    assert meta["default_precision"] == "int8"
    # the config's frontend_conf over ESPnet's DefaultFrontend defaults
    assert meta["frontend"] == {
        "type": "fbank", "n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 20, "fmin": 0,
        "fmax": 8000.0, "window": "hann", "center": True, "normalized": False, "onesided": True,
        "pad_mode": "reflect", "log_floor": 1e-10, "mel": "librosa-slaney"}
    model = build(cfg, pth)
    params = sum(p.numel() for p in model.parameters())
    assert meta["model"] == {"name": "asr_tiny", "class": "lw_ctc", "num_blocks": 2, "output_size": 64,
                             "vocab_size": len(CHARS), "params": params}
    assert meta["source"]["sha256"] == sha256_of(pth)
    assert meta["source"]["model_file"] == str(pth.resolve())
    assert json.loads((out / "parity.json").read_text(encoding="utf-8")) == meta["parity"]


def test_sizes_within_bounds_per_parameter(exported):
    _, _, res = exported
    params = res.meta["model"]["params"]
    fp32 = (res.out_dir / "model.onnx").stat().st_size
    int8 = (res.out_dir / "model.int8.onnx").stat().st_size
    assert fp32 <= 4.3 * params + 0.3e6, (fp32, params)
    assert int8 <= 1.3 * params + 0.3e6, (int8, params)
    assert int8 < 0.5 * fp32
    assert res.meta["files"]["fp32"]["bytes"] == fp32 and res.meta["files"]["int8"]["bytes"] == int8


def test_graphs_store_no_tables_and_quantize_matmuls(exported):
    _, _, res = exported
    d = ENCODER["output_size"]
    fp32 = onnx.load(str(res.out_dir / "model.onnx"))
    largest = max(int(np.prod(i.dims)) for i in fp32.graph.initializer)
    assert largest < 2 * d * d * 9, largest  # nothing like a (2 * 5000 - 1) x d positional table
    int8 = onnx.load(str(res.out_dir / "model.int8.onnx"))
    for g, full_convs in ((fp32, 1), (int8, 0)):  # fp32 keeps the 2nd subsampling conv as a Conv
        inits = {i.name: i for i in g.graph.initializer}
        n_full = 0
        for node in g.graph.node:
            assert node.op_type != "ConvInteger"
            if node.op_type == "Conv":  # else: the 1-channel first subsampling conv or a depthwise conv
                w = inits[node.input[1]]
                group = next((a.i for a in node.attribute if a.name == "group"), 1)
                if list(w.dims) == [d, d, 3, 3]:
                    n_full += 1
                    continue
                assert w.dims[1] == 1 and (group == w.dims[0] or w.dims[0] == d), (node.name, list(w.dims), group)
        assert n_full == full_convs
    assert not list(res.out_dir.glob(".*")), "no temporary files left"
    n_quant = sum(n.op_type == "MatMulInteger" for n in int8.graph.node)
    # 9 taps of the 2nd subsampling conv + its output linear + CTC head + 11 per block
    assert n_quant == 9 + 1 + 1 + 11 * ENCODER["num_blocks"]
    left = [n for n in int8.graph.node if n.op_type == "MatMul"]
    assert all(i not in {x.name for x in int8.graph.initializer} for n in left for i in n.input)
    # no Shape of a feature map in the int8 graph: the subsampling's sizes come from the input's shape
    # (a Shape of the first conv's output makes onnxruntime copy the whole map once more to read it)
    made_by = {o: n for n in int8.graph.node for o in n.output}

    def conv_output(name: str) -> bool:  # a Conv's output, or a Relu / Transpose of one
        node = made_by.get(name)
        while node is not None and node.op_type in ("Relu", "Transpose"):
            node = made_by.get(node.input[0])
        return node is not None and node.op_type == "Conv"

    assert not [n.name for n in int8.graph.node if n.op_type == "Shape" and conv_output(n.input[0])]


def test_dynamic_batch_and_length(exported):
    """B = 3 with different lengths (one longer than the export's trace): each utterance's valid
    frames are what it gives alone; fp32 to float rounding, int8 close (activation scales are per tensor)."""
    _, _, res = exported
    rng = np.random.default_rng(0)
    lens = np.array([640, 203, 57], dtype=np.int64)
    feats = (rng.normal(size=(3, int(lens.max()), FRONTEND["n_mels"])) * 2 + 3).astype(np.float32)
    for precision, tol_logp in (("model.onnx", 1e-4), ("model.int8.onnx", None)):
        sess = _session(res.out_dir / precision)
        logp, out_lens = sess.run(None, {"feats": feats, "feats_lens": lens})
        assert logp.shape[:2] == (3, ((lens.max() - 1) // 2 - 1) // 2)
        assert out_lens.tolist() == [((n - 1) // 2 - 1) // 2 for n in lens]
        for b, n in enumerate(lens):
            alone, alone_lens = sess.run(None, {"feats": feats[b : b + 1, :n], "feats_lens": lens[b : b + 1]})
            assert int(alone_lens[0]) == int(out_lens[b])
            a, bt = alone[0, : out_lens[b]], logp[b, : out_lens[b]]
            if tol_logp is not None:
                assert np.abs(a - bt).max() < tol_logp, (precision, b)
            else:
                assert np.abs(np.exp(a) - np.exp(bt)).max() < 0.1, (precision, b)
                assert (a.argmax(-1) == bt.argmax(-1)).mean() >= 0.9, (precision, b)


def test_wrapper_and_onnx_match_torch(exported):
    cfg, pth, res = exported
    par = res.meta["parity"]
    assert par["utterances"] == {"source": str(Path(cfg).parents[2] / "data" / "dev" / "wav.scp"), "count": 4}
    assert par["wrapper_vs_torch"]["max_abs_diff"] < 1e-4
    fp = par["fp32_vs_torch"]
    assert fp["max_abs_diff"] < 1e-4 and fp["logprob_utterances"] == 4
    assert fp["hypotheses"] == 4 and fp["same_hypotheses"] == 4 and par["ok"] is True
    q = par["int8_vs_fp32"]
    # a random model says little about int8's accuracy (the benchmark measures it on trained models)
    assert q["hypotheses"] == 4 and 0 <= q["agreement"] <= 1 and 0 < q["max_abs_prob_diff"] <= 1
    assert set(par["wer"]) == {"words", "torch", "fp32", "int8"} and par["wer"]["torch"] == par["wer"]["fp32"]

    # and independently of the export's own check: the fp32 file on a fresh utterance vs ESPnet in torch
    model = build(cfg, pth)
    wav = torch.from_numpy(synthetic_utterances(16000)[2].wave)[None]
    with torch.no_grad():
        enc, enc_lens = model.encode(wav, torch.tensor([wav.size(1)]))
        ref = model.ctc.log_softmax(enc)[0].numpy()
        feats, feats_lens = model._extract_feats(wav, torch.tensor([wav.size(1)]))
    logp, out_lens = _session(res.out_dir / "model.onnx").run(
        None, {"feats": feats.numpy(), "feats_lens": feats_lens.numpy().astype(np.int64)})
    assert int(out_lens[0]) == ref.shape[0] == int(enc_lens[0])
    assert np.abs(logp[0] - ref).max() < 1e-4


def test_choose_precision():
    assert choose_precision({}, 0.03)[0] == "int8"
    assert choose_precision({"wer": {"fp32": 10.0, "int8": 10.3}}, 0.03)[0] == "int8"
    precision, why = choose_precision({"wer": {"fp32": 10.0, "int8": 10.4}}, 0.03)
    assert precision == "fp32" and "fp32 kept" in why
    assert choose_precision({"wer": {"fp32": 0.0, "int8": 0.0}}, 0.03)[0] == "int8"


def test_rel_positional_encoding_is_espnets_table():
    from espnet.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding

    pe = RelPositionalEncoding(64, 0.0).eval()
    for t in (1, 2, 37, 300):
        _, ref = pe(torch.zeros(1, t, 64))
        assert torch.allclose(rel_positional_encoding(t, 64), ref, atol=1e-6), t


def test_reference_layout_without_macaron_post_norm_bpe_mvn(tmp_path):
    """A ``model: espnet`` reference with another block layout, BPE tokens and no feature normalisation;
    no parity data (synthetic signals)."""
    enc = {**ENCODER, "macaron_style": False, "normalize_before": False, "output_size": 32, "linear_units": 64,
           "cnn_module_kernel": 5}
    cfg, pth = write_model(tmp_path, "espnet", enc, seed=3, token_type="bpe", normalize=None)
    res = export_model(cfg, pth, tmp_path / "onnx", default_precision="fp32")
    meta = res.meta
    assert meta["token_type"] == "bpe" and "space_token" not in meta
    assert meta["default_precision"] == "fp32" and meta["model"]["class"] == "espnet"
    assert meta["parity"]["utterances"] == {"source": "synthetic", "count": 3}
    assert meta["parity"]["fp32_vs_torch"]["max_abs_diff"] < 1e-4 and meta["parity"]["ok"]


def test_cli_no_int8_and_user_errors(exported, tmp_path, capsys):
    from espnet_lw.bin.export_onnx import main
    from espnet_lw.utils.cli import run_main

    cfg, pth, _ = exported
    out = tmp_path / "fp32only"
    run_main(main, ["--asr_train_config", str(cfg), "--asr_model_file", str(pth), "--out_dir", str(out), "--no_int8"])
    assert (out / "model.onnx").is_file() and not (out / "model.int8.onnx").exists()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["default_precision"] == "fp32" and set(meta["files"]) == {"fp32"}
    assert "int8_vs_fp32" not in meta["parity"]

    missing = tmp_path / "nope" / "config.yaml"
    with pytest.raises(SystemExit) as e:
        run_main(main, ["--asr_train_config", str(missing), "--asr_model_file", str(pth), "--out_dir", str(out)])
    assert e.value.code == 1
    assert f"ERROR: {missing}: no such training config" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_main(main, ["--asr_train_config", str(cfg), "--asr_model_file", str(pth), "--out_dir", str(out),
                        "--parity_scp", str(tmp_path / "none" / "wav.scp")])
    assert f"{tmp_path / 'none' / 'wav.scp'}: no such wav.scp" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--parity_scp" in capsys.readouterr().out


def test_unsupported_layouts_are_refused(tmp_path):
    enc = {**ENCODER, "output_size": 16, "linear_units": 32, "pos_enc_layer_type": "abs_pos",
           "selfattention_layer_type": "selfattn"}
    cfg, pth = write_model(tmp_path, "espnet", enc)
    model = build(cfg, pth)
    problems = check_exportable(model)
    assert any("rel_pos" in p for p in problems) and any("rel_selfattn" in p for p in problems)
    with pytest.raises(UserError, match="cannot export this model"):
        CTCExportModule(model)
    with pytest.raises(UserError, match="frontend 's3prl' is not exported"):
        frontend_settings({"frontend": "s3prl"}, cfg)
    with pytest.raises(UserError, match=r"frontend_conf keys \['n_melz'\]"):
        frontend_settings({"frontend": "default", "frontend_conf": {"n_melz": 80}}, cfg)
    assert math.isclose(frontend_settings({"frontend_conf": {"fs": 8000}})["fmax"], 4000)

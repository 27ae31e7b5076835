"""Stage 14: a trained model packed with ESPnet's own packer, loadable by a plain ESPnet install.

The zip is what ``espnet2.bin.pack asr`` writes (``meta.yaml`` + the files it names), so ESPnet's
``unpack`` and ``Speech2Text`` read it::

    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.main_funcs.pack_funcs import unpack
    speech2text = Speech2Text(**unpack("model.zip", "model_dir"))   # or Speech2Text.from_pretrained(**...)

(``Speech2Text.from_pretrained("model.zip")`` goes through ``espnet_model_zoo``, which ESPnet does
not install.) Inside: ``exp/<name>/config.yaml``, the model file, the global-MVN statistics (the
recipe's file, or when it is gone, the statistics the model file holds, written back) and, for BPE
tokens, the sentencepiece model (each at ``exp/<name>/<file name>``: the config's paths
are rewritten to those names, which ``unpack`` turns into the extracted paths), and ``README.md``,
a short model card.

A ``model: lw_ctc`` student is ESPnet's CTC-only ``ESPnetASRModel`` in all but its registered
name (:class:`espnet_lw.models.linear_ctc.LinearCTCModel` adds only argument checks), so its
packed config declares ``model: espnet`` with ``ctc_weight: 1.0`` and no decoder: ESPnet builds
the same network and loads the same parameters without espnet-lw. ``model: lw_encrl`` (the EncRL
training model) is refused: pack the fine-tuned student.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from espnet_lw.losses.config import LW_CTC_TRAINING_ONLY_KEYS
from espnet_lw.models.loading import load_reference
from espnet_lw.scoring import ScoreSummary, parse_result
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import dump_yaml, load_yaml, sha256_of
from espnet_lw.utils.quiet import import_quietly

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: model classes of espnet-lw that ESPnet knows under another name
STOCK_NAMES = {"lw_ctc": "espnet"}


@dataclass
class PackResult:
    zip_path: Path
    members: Sequence[str]  # names inside the zip
    config: dict  # the packed config.yaml
    card: str  # README.md


def stock_config(conf: dict, config_path: PathLike = "config.yaml") -> dict:
    """``conf`` as a plain ESPnet install builds it: ``lw_ctc`` -> ``espnet`` (CTC only, no decoder)."""
    conf = copy.deepcopy(conf)
    name = conf.get("model", "espnet")
    if name == "lw_encrl":
        raise UserError("this is an EncRL training model (model: lw_encrl): pack the fine-tuned student "
                        "(its config declares model: lw_ctc)", str(config_path))
    if name in STOCK_NAMES:
        model_conf = dict(conf.get("model_conf") or {})
        for key in LW_CTC_TRAINING_ONLY_KEYS:  # e.g. the KD term of a kd student: training only
            model_conf.pop(key, None)
        model_conf["ctc_weight"] = 1.0
        model_conf.setdefault("report_wer", False)  # lw_ctc's default
        conf.update(model=STOCK_NAMES[name], model_conf=model_conf, decoder=None, decoder_conf={})
    elif isinstance(name, str) and name.startswith("lw_"):
        raise UserError(f"model class {name} has no ESPnet equivalent: it cannot be packed for ESPnet",
                        str(config_path))
    return conf


def locate_file(value, config_path: Path) -> Optional[Path]:
    """A file named in a training config: as given when absolute; else relative to the recipe directory
    (``<recipe>/exp/<name>/config.yaml``), the directories around the config, then the working directory
    (the model's own recipe first: ``exp/asr_stats_raw_char/...`` names a file of every recipe)."""
    if not isinstance(value, (str, Path)) or str(value) in ("", "none", "None"):
        return None
    p = Path(value)
    if p.is_absolute():
        return p if p.is_file() else None
    cfg_dir = config_path.resolve().parent
    for base in (cfg_dir.parent.parent, cfg_dir, cfg_dir.parent, Path.cwd()):
        if (base / p).is_file():
            return base / p
    return None


def model_card(name: str, conf: dict, trained_as: str, model, params: int, source_model: Path, sha256: str,
               results: Optional[str], command: Optional[str], zip_name: str) -> str:
    """README.md of the packed model: what it is, its size, its results and how it was made.

    ``conf`` is the packed config; ``trained_as`` the model class name the training config declared.
    """
    enc = conf.get("encoder_conf") or {}
    tokens = conf["token_list"]
    token_type = conf.get("token_type", "char")
    orig = trained_as
    lines = [
        f"# {name}",
        "",
        f"A CTC speech recogniser trained with espnet-lw on ESPnet: a {conf.get('encoder', 'conformer')} encoder "
        f"({len(model.encoder.encoders)} blocks, d_model {model.encoder.output_size()}, "
        f"{enc.get('attention_heads', '?')} attention heads, {enc.get('input_layer', 'conv2d')} subsampling) "
        f"and one linear CTC head over {len(tokens)} {token_type} tokens; no attention decoder, no language model.",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {params:,} ({params / 1e6:.2f} M) |",
        f"| encoder blocks | {len(model.encoder.encoders)} |",
        f"| tokens | {len(tokens)} ({token_type}) |",
        f"| features | {(conf.get('frontend_conf') or {}).get('n_mels', 80)}-dim log-mel, "
        f"{conf.get('normalize') or 'no'} normalisation |",
        f"| ESPnet model class | `{conf.get('model', 'espnet')}`"
        + (f" (trained as `{orig}`)" if orig in STOCK_NAMES else "") + " |",
        f"| source | `{source_model}` (sha256 {sha256[:16]}...) |",
        "",
    ]
    if orig in STOCK_NAMES:
        lines += [f"Trained as espnet-lw's `{orig}` (ESPnet's CTC-only model with argument checks), packed as "
                  "ESPnet's own `espnet` model with `ctc_weight: 1.0` and no decoder: a plain ESPnet install "
                  "loads it.", ""]
    if results:
        lines += ["## Results", "", results.strip(), ""]
    if command:
        lines += ["## How it was made", "", "```sh", command.strip(), "```", ""]
    lines += [
        "## Use",
        "",
        "```python",
        "import soundfile",
        "from espnet2.bin.asr_inference import Speech2Text",
        "from espnet2.main_funcs.pack_funcs import unpack",
        "",
        f'speech2text = Speech2Text(**unpack("{zip_name}", "{Path(zip_name).stem}"), ctc_weight=1.0, lm_weight=0.0)',
        "speech, rate = soundfile.read(\"utterance.wav\")",
        "text = speech2text(speech)[0][0]",
        "```",
        "",
    ]
    return "\n".join(lines)


def results_table(decode_dir: PathLike) -> str:
    """ESPnet-style WER / CER tables of the scored sets under ``decode_dir`` (``<set>/score_{wer,cer}/result.txt``,
    stage 13's layout); a :class:`UserError` when none is scored."""
    decode_dir = Path(decode_dir)
    parts = []
    for kind in ("wer", "cer"):
        rows = [(r.parent.parent.name, parse_result(r)) for r in sorted(decode_dir.glob(f"*/score_{kind}/result.txt"))]
        if rows:
            parts += [f"### {kind.upper()} ({decode_dir.name})", "",
                      "|dataset|" + "|".join(ScoreSummary.COLUMNS) + "|",
                      "|---|" + "---|" * len(ScoreSummary.COLUMNS)]
            parts += ["|" + name + "|" + "|".join(summary.row()) + "|" for name, summary in rows]
            parts.append("")
    if not parts:
        raise UserError("no scored data sets (<set>/score_wer/result.txt) here", str(decode_dir),
                        "run stage 13 first, or leave the results out")
    return "\n".join(parts)


def write_stats_of(normalize, path: Path) -> None:
    """A ``feats_stats.npz`` from which ESPnet's GlobalMVN computes ``normalize``'s mean and std again."""
    mean = normalize.mean.detach().double().cpu().numpy()
    std = normalize.std.detach().double().cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, count=np.array(1.0), sum=mean, sum_square=std * std + mean * mean)


@contextlib.contextmanager
def _in_dir(path: Path) -> Iterator[None]:
    """ESPnet's packer stores paths relative to the working directory: run it from ``path``."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _place(src: Path, dst: Path) -> None:
    """``src`` at ``dst`` (a hard link when possible: the packer resolves symbolic links)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def pack_model(
    asr_train_config: PathLike,
    asr_model_file: PathLike,
    out: PathLike,
    results: Optional[str] = None,
    command: Optional[str] = None,
    name: Optional[str] = None,
) -> PackResult:
    """Pack the model into ``out`` (a ``.zip``) with ESPnet's packer; see the module docstring.

    ``results``: markdown for the card's results section (e.g. the model's RESULTS.md table);
    ``command``: the command that made the model; ``name``: defaults to the config's directory name.
    """
    config, model_file, out = Path(asr_train_config), Path(asr_model_file), Path(out)
    if out.suffix != ".zip":
        raise UserError("the packed model must be a .zip", str(out))
    for f, what in ((config, "training config"), (model_file, "model file")):
        if not f.is_file():
            raise UserError(f"no such {what}", str(f))
    conf = load_yaml(config, "training config")
    packed = stock_config(conf, config)
    model, args = load_reference(config, model_file, "cpu")  # refuses a checkpoint that does not match
    params = int(sum(p.numel() for p in model.parameters()))
    packed["token_list"] = list(args.token_list)
    name = name or config.resolve().parent.name
    base = Path("exp") / name
    pack_funcs = import_quietly("espnet2.main_funcs.pack_funcs")

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".pack_{name}.", dir=out.parent) as tmp:
        stage = Path(tmp)
        options = []
        nconf = dict(packed.get("normalize_conf") or {})
        if packed.get("normalize") == "global_mvn" and "stats_file" in nconf:
            stats = locate_file(nconf["stats_file"], config)
            if stats is not None:
                _place(stats, stage / base / "feats_stats.npz")
            else:  # the checkpoint holds the statistics ESPnet uses: write them back as a stats file
                logger.warning("%s: normalize_conf.stats_file %s not found: packing the statistics the model "
                               "file holds", config, nconf["stats_file"])
                write_stats_of(model.normalize, stage / base / "feats_stats.npz")
            packed["normalize_conf"] = {**nconf, "stats_file": str(base / "feats_stats.npz")}
            options.append(str(base / "feats_stats.npz"))
        if packed.get("token_type") == "bpe" and packed.get("bpemodel"):
            bpe = locate_file(packed["bpemodel"], config)
            if bpe is None:
                raise UserError(f"bpemodel {packed['bpemodel']} not found", str(config))
            _place(bpe, stage / base / "bpe.model")
            packed["bpemodel"] = str(base / "bpe.model")
            options.append(str(base / "bpe.model"))
        (stage / base).mkdir(parents=True, exist_ok=True)
        (stage / base / "config.yaml").write_text(dump_yaml(packed), encoding="utf-8")
        _place(model_file.resolve(), stage / base / model_file.name)
        card = model_card(name, packed, conf.get("model", "espnet"), model, params, model_file.resolve(),
                          sha256_of(model_file), results, command, out.name)
        (stage / "README.md").write_text(card, encoding="utf-8")
        options.append("README.md")
        tmp_zip = out.resolve().with_name(f".{out.stem}.tmp.zip")  # resolved here: packing runs in ``stage``
        printed = io.StringIO()
        with _in_dir(stage), contextlib.redirect_stdout(printed):
            pack_funcs.pack(
                files={"asr_model_file": str(base / model_file.name)},
                yaml_files={"asr_train_config": str(base / "config.yaml")},
                option=options,
                outpath=str(tmp_zip),
            )
        logger.debug("espnet pack: %s", printed.getvalue().strip())
        os.replace(tmp_zip, out)
    members = [str(base / "config.yaml"), str(base / model_file.name), *options]
    return PackResult(out, members, packed, card)

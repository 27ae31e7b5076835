"""A pretrained ESPnet ASR model as the reference of stage 11: checked against the recipe, imported.

The model comes as an archive made by ``python -m espnet2.bin.pack asr`` (``.zip`` or ``.tar*``:
``meta.yaml`` naming ``asr_train_config`` and ``asr_model_file``, plus the files packed with
``--option``: normalisation statistics, sentencepiece model ...), as a ``config.yaml`` and a
``.pth``, or as an ESPnet experiment directory. :func:`import_reference` writes an experiment
directory that stage 11 uses like a reference it trained itself::

    out_dir/config.yaml          the model's config, paths pointing at the files below
    out_dir/valid.loss.ave.pth   the weights (copied / moved out of the unpacked archive)
    out_dir/feats_stats.npz      global MVN statistics (rebuilt from the checkpoint if not packed)
    out_dir/bpe.model            the model's sentencepiece model (token_type bpe)
    out_dir/tokens.txt           the model's token list
    out_dir/params.txt           parameter count first (as ``espnet_lw.bin.model_info`` prints it)
    out_dir/source.txt           where it came from, sha256 of the inputs, what was checked (YAML)
    out_dir/.done.stage11

Before anything is written the model is built with ESPnet from its config and the checkpoint is
loaded strictly (no missing, unexpected or reshaped keys; ESPnet's own loader would not say), and
it is compared with the recipe: token list, sampling rate, frontend (feature) settings,
normalisation, encoder type, CTC head. Every problem found is reported in one
:class:`~espnet_lw.utils.cli.UserError`; the output is written in a temporary directory next to
``out_dir`` and renamed into place only when it is complete.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import logging
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from espnet_lw.models.loading import load_reference, load_state, parameter_report
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import load_yaml, sha256_of, write_yaml

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: model files looked for, in this order, in an experiment directory given without a model file
MODEL_FILE_PREFERENCE = ("valid.loss.ave.pth", "valid.acc.ave.pth", "valid.cer_ctc.ave.pth", "valid.loss.best.pth",
                         "valid.acc.best.pth")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")
#: training settings students inherit from the reference's config: a difference from the recipe's is noted
STUDENT_TRAINING_KEYS = ("batch_type", "batch_bins", "batch_size", "max_epoch", "accum_grad", "optim", "optim_conf",
                         "scheduler", "scheduler_conf", "specaug")
#: the model classes a reference may have; others still work when they build, with a note
PLAIN_MODELS = ("espnet", "lw_ctc")


# ------------------------------------------------------------------------------ small helpers
def parse_fs(value) -> Optional[int]:
    """``16k`` / ``16000`` / ``16000.0`` -> 16000 (as ESPnet's frontend reads ``fs``)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    s = str(value).strip().lower()
    try:
        if s.endswith("k"):
            return int(float(s[:-1]) * 1000)
        return int(float(s))
    except ValueError:
        raise UserError(f"cannot read the sampling rate {value!r} (use e.g. 16k or 16000)") from None


def read_token_list(path: PathLike) -> List[str]:
    """A token list file as ESPnet reads it (one token a line, trailing whitespace dropped)."""
    with Path(path).open(encoding="utf-8") as fh:
        return [line.rstrip() for line in fh]


def is_archive(path: Path) -> bool:
    # by name, as ESPnet's Archiver does (a torch .pth is a zip file too)
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def _fmt(v) -> str:
    return repr(v) if isinstance(v, str) else str(v)


# ------------------------------------------------------------------------------ the recipe side
@dataclass
class Recipe:
    """What the recipe expects of its reference (everything optional: unknown -> not compared)."""

    token_list: Optional[Path] = None  #: data/token_list/<...>/tokens.txt (stage 5)
    token_type: Optional[str] = None  #: bpe | char
    bpemodel: Optional[Path] = None  #: data/token_list/<...>/bpe.model
    fs: Optional[int] = None  #: sampling rate of the recipe's audio (lw.sh --fs)
    asr_config: Optional[Path] = None  #: the recipe's --asr_config: its frontend made stage 10's statistics
    stats_file: Optional[Path] = None  #: stage 10's feats_stats.npz (the students' normalisation)
    normalize: Optional[str] = None  #: lw.sh --feats_normalize

    def fingerprint(self) -> dict:
        """The recipe inputs an import was checked against (a change means: check again)."""
        out: dict = {"fs": self.fs, "token_type": self.token_type, "normalize": self.normalize}
        for name in ("token_list", "bpemodel", "asr_config", "stats_file"):
            p = getattr(self, name)
            out[name] = None if p is None else {
                "path": str(p), "sha256": sha256_of(p) if Path(p).is_file() else None}
        return out


# ------------------------------------------------------------------------------ the model side
@dataclass
class Source:
    """The pretrained model as found: its config and model file (unpacked when it is an archive)."""

    given: Path  #: what the user passed (archive, config.yaml, .pth or directory)
    kind: str  #: archive | config | exp_dir
    config: Path  #: config.yaml (inside the unpacked archive for kind archive)
    model: Path  #: the .pth
    label: str  #: how messages name the config ("x.zip:exp/asr/config.yaml")
    unpack_root: Optional[Path] = None  #: where the archive was unpacked
    meta: dict = field(default_factory=dict)  #: the archive's meta.yaml
    members: List[str] = field(default_factory=list)  #: the archive's file names

    def fingerprint(self) -> dict:
        if self.kind == "archive":
            return {"path": str(self.given.resolve()), "sha256": sha256_of(self.given)}
        return {"config": {"path": str(self.config.resolve()), "sha256": sha256_of(self.config)},
                "model": {"path": str(self.model.resolve()), "sha256": sha256_of(self.model)}}


def _pick_model_file(d: Path, given: PathLike) -> Path:
    pths = sorted(p.name for p in d.glob("*.pth") if p.name != "checkpoint.pth")
    for name in MODEL_FILE_PREFERENCE:
        if (d / name).is_file():
            return d / name
    if len(pths) == 1:
        return d / pths[0]
    raise UserError(
        f"no model file chosen: {d} holds {', '.join(pths) if pths else 'no .pth file'}",
        str(given), "name the model file with --ref_model_file FILE.pth",
    )


def _resolve_model_file(name: PathLike, base: Path) -> Path:
    p = Path(name)
    if not p.is_file() and not p.is_absolute() and (base / p).is_file():
        p = base / p
    if not p.is_file():
        raise UserError("no such model file", str(name), "give the .pth the config was trained with")
    return p


def _safe_members(archive: Path) -> List[str]:
    """Names of the archive's files; refuses names that would land outside the unpack directory."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                names = [i.filename for i in zf.infolist() if not i.is_dir()]
        else:
            with tarfile.open(archive) as tf:
                names = [m.name for m in tf.getmembers() if m.isfile()]
                if any(not (m.isfile() or m.isdir()) for m in tf.getmembers()):
                    raise UserError("the archive holds links or special files", str(archive))
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as e:
        raise UserError(f"cannot read the archive ({e.__class__.__name__}: {e})", str(archive)) from e
    bad = [n for n in names if Path(n).is_absolute() or ".." in Path(n).parts]
    if bad:
        raise UserError(f"the archive has unsafe file names ({bad[0]})", str(archive))
    return names


def open_source(ref_model: PathLike, ref_model_file: Optional[PathLike], workdir: Path) -> Source:
    """Find the config and the model file; an archive is unpacked (by ESPnet's ``unpack``) into ``workdir``."""
    given = Path(ref_model)
    if not given.exists():
        raise UserError("no such file or directory", str(given),
                        "give a packed model (.zip from espnet2.bin.pack), an exp dir or a config.yaml")
    if is_archive(given):
        if ref_model_file:
            raise UserError("--ref_model_file is not used with a packed model (the archive names its model file)",
                            str(given))
        members = _safe_members(given)
        if not any(Path(n).name == "meta.yaml" for n in members):
            raise UserError("no meta.yaml in the archive: not a model packed by espnet2.bin.pack", str(given),
                            "pack it with: python -m espnet2.bin.pack asr --asr_train_config exp/X/config.yaml "
                            "--asr_model_file exp/X/valid.loss.ave.pth --option <stats.npz> --option <bpe.model> "
                            "--outpath model.zip")
        from espnet2.main_funcs.pack_funcs import unpack  # noqa: PLC0415 - ESPnet's own unpacking

        try:
            files = unpack(given, workdir, use_cache=False)
        except Exception as e:  # noqa: BLE001 - ESPnet raises RuntimeError / AssertionError / yaml errors
            raise UserError(f"cannot unpack ({e.__class__.__name__}: {e})", str(given)) from e
        meta_name = next(n for n in members if Path(n).name == "meta.yaml")
        meta = load_yaml(workdir / meta_name, "meta.yaml")
        if "asr_train_config" not in files or "asr_model_file" not in files:
            raise UserError(
                f"not a packed ASR model: meta.yaml names {sorted(files)}, not asr_train_config + asr_model_file",
                str(given), "pack an ASR model with: python -m espnet2.bin.pack asr ...",
            )
        config = _in_archive(meta["yaml_files"]["asr_train_config"], workdir)
        model = _in_archive(meta["files"]["asr_model_file"], workdir)
        for f in (config, model):
            if not f.is_file():
                raise UserError(f"meta.yaml names {f.relative_to(workdir)}, which is not in the archive", str(given))
        label = f"{given}:{meta['yaml_files']['asr_train_config']}"
        return Source(given, "archive", config, model, label, workdir, meta, members)
    if given.is_dir():
        config = given / "config.yaml"
        if not config.is_file():
            raise UserError("no config.yaml in this directory: not an ESPnet experiment directory", str(given))
        model = _resolve_model_file(ref_model_file, given) if ref_model_file else _pick_model_file(given, given)
        return Source(given, "exp_dir", config, model, str(config))
    if given.suffix == ".pth":
        config = Path(ref_model_file) if ref_model_file and str(ref_model_file).endswith((".yaml", ".yml")) \
            else given.parent / "config.yaml"
        if not config.is_file():
            raise UserError(f"no config for this model file ({config} not found)", str(given),
                            "give the config: --ref_model exp/X/config.yaml --ref_model_file exp/X/model.pth")
        return Source(given, "config", config, given, str(config))
    config = given
    model = _resolve_model_file(ref_model_file, config.parent) if ref_model_file else _pick_model_file(
        config.parent, given)
    return Source(given, "config", config, model, str(config))


def locate(value, source: Source) -> Optional[Path]:
    """Find a file a config names (``normalize_conf.stats_file``, ``bpemodel``, ``token_list``).

    In an archive: only among its own files (ESPnet's unpack rewrote the paths it recognised; a
    model packed with absolute paths keeps them, so the longest matching end of the path is looked
    for). Otherwise relative to the config's recipe directory (``exp/<name>/config.yaml`` -> two
    levels up, and the levels around it) before the working directory, so that a path like
    ``exp/asr_stats_raw_bpe256/...`` finds the model's own file, not the current recipe's.
    """
    if not isinstance(value, (str, Path)) or str(value) in ("", "none", "None"):
        return None
    p = Path(value)
    if source.unpack_root is not None:
        root = source.unpack_root.resolve()
        if p.is_absolute() and p.is_file() and root in p.resolve().parents:
            return p
        parts = [x for x in p.parts if x not in ("/", "")]
        for k in range(len(parts)):
            cand = source.unpack_root.joinpath(*parts[k:])
            if cand.is_file():
                return cand
        return None
    if p.is_absolute():
        return p if p.is_file() else None
    cfg_dir = source.config.resolve().parent
    for base in (cfg_dir.parent, cfg_dir, *cfg_dir.parents[1:3], Path.cwd()):
        if (base / p).is_file():
            return base / p
    return None


def _in_archive(value: str, root: Path) -> Path:
    """Where ESPnet's unpack put an archive member that meta.yaml names (absolute names lose their '/')."""
    p = Path(value)
    return root.joinpath(*p.parts[1:]) if p.is_absolute() else root / p


# ------------------------------------------------------------------------------ comparisons
def effective_frontend(conf: dict) -> Tuple[str, dict]:
    """The frontend name and its settings with ESPnet's defaults filled in (``fs`` as an int)."""
    name = conf.get("frontend", "default")
    fc = dict(conf.get("frontend_conf") or {})
    if name != "default":
        return str(name), fc
    from espnet_lw.utils.quiet import import_quietly  # noqa: PLC0415

    sig = inspect.signature(import_quietly("espnet2.asr.frontend.default").DefaultFrontend.__init__)
    eff = {k: copy.deepcopy(p.default) for k, p in sig.parameters.items()
           if k != "self" and p.default is not inspect.Parameter.empty}
    eff.update(fc)
    eff["fs"] = parse_fs(eff.get("fs"))
    if eff.get("win_length") is None:
        eff["win_length"] = eff.get("n_fft")
    if eff.get("fmin") is None:
        eff["fmin"] = 0
    if eff.get("fmax") is None and eff.get("fs"):
        eff["fmax"] = eff["fs"] // 2
    return "default", eff


def token_list_differences(model_tokens: Sequence[str], recipe_tokens: Sequence[str], n: int = 5) -> List[str]:
    """The first ``n`` positions where the two lists differ, as ``#i 'model' vs 'recipe'``."""
    out = []
    for i in range(max(len(model_tokens), len(recipe_tokens))):
        a = model_tokens[i] if i < len(model_tokens) else "(none)"
        b = recipe_tokens[i] if i < len(recipe_tokens) else "(none)"
        if a != b:
            out.append(f"#{i} {a!r} vs {b!r}")
            if len(out) == n:
                break
    return out


def stats_dim(path: Path) -> int:
    stats = np.load(path)
    if isinstance(stats, np.ndarray):  # Kaldi-style matrix: 2 x (dim + 1)
        return int(stats.shape[-1]) - 1
    return int(np.asarray(stats["sum"]).size)


@dataclass
class Report:
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def check_against_recipe(conf: dict, source: Source, recipe: Recipe, model_tokens: Optional[List[str]],
                         report: Report) -> None:
    """Compare the model's config with the recipe; add what differs to ``report``."""
    # encoder, CTC head, model class, inputs
    if conf.get("encoder") != "conformer":
        report.problems.append(
            f"encoder: the model's encoder is {conf.get('encoder')!r}; students are Conformers with fewer blocks "
            "built from the reference's encoder_conf, so the reference must be 'encoder: conformer'")
    ctc_weight = (conf.get("model_conf") or {}).get("ctc_weight", 0.5)
    if conf.get("model", "espnet") == "lw_encrl":
        report.problems.append("model: this is an EncRL training model (lw_encrl), not an ASR model: "
                               "import the fine-tuned model (lw_ctc) or the reference it learned from")
    elif conf.get("model", "espnet") not in PLAIN_MODELS:
        report.notes.append(f"model class {conf.get('model')!r}: only its encoder and CTC head are used")
    if isinstance(ctc_weight, (int, float)) and ctc_weight <= 0:
        report.problems.append("CTC head: model_conf.ctc_weight is 0, so the model has no trained CTC head; "
                               "EncRL and CTC decoding need one")
    elif conf.get("decoder") not in (None, "none"):
        report.notes.append(
            f"the model also has an attention decoder ({conf.get('decoder')}, ctc_weight {ctc_weight}): EncRL, the "
            "students and stage 12 use its encoder and CTC head only (CTC decoding without the decoder)")
    if conf.get("input_size") not in (None, "none") or conf.get("frontend") in (None, "none"):
        report.problems.append(
            f"input: the model reads precomputed features (input_size {conf.get('input_size')}, frontend "
            f"{conf.get('frontend')}); the recipe feeds raw audio to a frontend")

    # tokens
    if recipe.token_type and conf.get("token_type") and conf.get("token_type") != recipe.token_type:
        report.problems.append(
            f"token_type: {conf.get('token_type')!r} (model) vs {recipe.token_type!r} (recipe): run the recipe with "
            f"--token_type {conf.get('token_type')}")
    if recipe.token_list is not None and model_tokens is not None:
        if not recipe.token_list.is_file():
            report.problems.append(
                f"token list: the recipe's {recipe.token_list} does not exist: run stage 5 first, or write the "
                f"model's tokens there: python -m espnet_lw.bin.import_reference --ref_model {source.given} "
                f"--export_tokens {recipe.token_list.parent}")
        else:
            rtokens = read_token_list(recipe.token_list)
            if rtokens != model_tokens:
                diff = "; ".join(token_list_differences(model_tokens, rtokens))
                report.problems.append(
                    f"token list: the model has {len(model_tokens)} tokens, the recipe's {recipe.token_list} has "
                    f"{len(rtokens)}; first differences (index: model vs recipe): {diff}.\n"
                    f"     fix: use the pretrained model's tokens in the recipe: python -m "
                    f"espnet_lw.bin.import_reference --ref_model {source.given} "
                    f"--export_tokens {recipe.token_list.parent} (writes its tokens.txt and bpe model there, the "
                    f"old ones kept as *.old.<time>), then redo stages 10-11 (--stage 10 --overwrite true), as "
                    f"stage 10's text shapes depend on the tokens")
    if (recipe.bpemodel is not None and recipe.bpemodel.is_file() and conf.get("token_type") == "bpe"
            and model_tokens is not None and recipe.token_list is not None and recipe.token_list.is_file()
            and read_token_list(recipe.token_list) == model_tokens):
        ref_bpe = locate(conf.get("bpemodel"), source)
        if ref_bpe is not None and sha256_of(ref_bpe) != sha256_of(recipe.bpemodel):
            report.notes.append(
                f"the model's sentencepiece model differs from the recipe's {recipe.bpemodel} (same token list): "
                "texts may be split differently; --export_tokens makes them identical")

    # sampling rate and features
    mname, mfront = effective_frontend(conf)
    if mname == "default" and recipe.fs is not None and mfront.get("fs") != recipe.fs:
        report.problems.append(
            f"sampling rate: frontend_conf.fs is {mfront.get('fs')} (model) but the recipe's audio is {recipe.fs} "
            f"(--fs): feed it {mfront.get('fs')} Hz audio (data at that rate, --fs {mfront.get('fs')}, stages 3-11 "
            f"again) or pick a model trained on {recipe.fs} Hz audio")
    if recipe.asr_config is not None:
        if not recipe.asr_config.is_file():
            report.notes.append(f"{recipe.asr_config} not found: frontend settings not compared")
        else:
            rconf = load_yaml(recipe.asr_config, "recipe config")
            rname, rfront = effective_frontend(rconf)
            inherited = [f"{k}: {_fmt(conf.get(k))} (model) vs {_fmt(rconf.get(k))} (recipe)"
                         for k in STUDENT_TRAINING_KEYS if k in rconf and conf.get(k) != rconf.get(k)]
            if inherited:
                report.notes.append(
                    "students take their training settings from the reference's config (make_student_configs), "
                    "and this model's differ from the recipe's: " + "; ".join(inherited)
                    + "; set them in the student config's sections if needed")
            if rname != mname:
                report.problems.append(
                    f"frontend: {mname!r} (model) vs {rname!r} (recipe, {recipe.asr_config})")
            else:
                keys = sorted((set(mfront) | set(rfront)) - {"fs"})
                if recipe.fs is None:  # no --fs: the recipe config's fs is the recipe's
                    keys.append("fs")
                diffs = [f"{k}: {_fmt(mfront.get(k))} (model) vs {_fmt(rfront.get(k))} (recipe)"
                         for k in keys if mfront.get(k) != rfront.get(k)]
                if diffs:
                    report.problems.append(
                        f"frontend settings differ from the recipe's {recipe.asr_config} (its features made stage "
                        f"10's statistics, which the students use): " + "; ".join(diffs) + ".\n"
                        f"     fix: set these frontend_conf values in {recipe.asr_config} (or a copy given with "
                        "--asr_config), then redo stages 10-11 (--stage 10 --overwrite true)")

    # normalisation
    norm = conf.get("normalize")
    n_mels = mfront.get("n_mels") if mname == "default" else None
    if norm == "utterance_mvn":
        report.notes.append("the model normalises each utterance (utterance_mvn); it keeps doing so as the "
                            f"reference, while the students use the recipe's {recipe.normalize or 'normalisation'}")
    elif norm in (None, "none"):
        report.notes.append("the model has no feature normalisation; it keeps none as the reference, while the "
                            f"students use the recipe's {recipe.normalize or 'normalisation'}")
    elif norm != "global_mvn":
        report.notes.append(f"the model's normalisation is {norm!r}; the students use the recipe's "
                            f"{recipe.normalize or 'normalisation'}")
    if recipe.stats_file is not None and recipe.stats_file.is_file() and n_mels:
        d = stats_dim(recipe.stats_file)
        if d != n_mels:
            report.problems.append(
                f"statistics: the recipe's {recipe.stats_file} has {d} dimensions, the model's features {n_mels} "
                "(n_mels): redo stage 10 with the model's frontend settings (--stage 10 --overwrite true)")


def _stats_match_state(path: Path, state: dict) -> bool:
    """Whether a stats file gives the checkpoint's normalize.mean / normalize.std (as GlobalMVN computes them)."""
    try:
        stats = np.load(path)
        if isinstance(stats, np.ndarray):
            count = stats[0].flatten()[-1]
            mean, sq = stats[0, :-1] / count, stats[1, :-1] / count
        else:
            count = stats["count"]
            mean, sq = stats["sum"] / count, stats["sum_square"] / count
        std = np.sqrt(np.maximum(sq - mean * mean, 1.0e-20))
        want_mean = state["normalize.mean"].double().numpy()
        want_std = state["normalize.std"].double().numpy()
        return mean.shape == want_mean.shape and np.allclose(mean, want_mean, rtol=1e-4, atol=1e-6) \
            and np.allclose(std, want_std, rtol=1e-4, atol=1e-6)
    except Exception:  # noqa: BLE001 - an unreadable file does not match
        return False


def _stats_from_state(state: dict, path: Path) -> None:
    """Write a feats_stats.npz that GlobalMVN turns back into the checkpoint's mean / std."""
    mean = state["normalize.mean"].double().numpy()
    std = state["normalize.std"].double().numpy()
    np.savez(path, count=np.array(1.0), sum=mean, sum_square=std ** 2 + mean ** 2)


# ------------------------------------------------------------------------------ import
def _read_source_txt(out_dir: Path) -> dict:
    f = out_dir / "source.txt"
    if not f.is_file():
        return {}
    try:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _quick_source_fingerprint(ref_model: PathLike, ref_model_file: Optional[PathLike]) -> Optional[dict]:
    """The source's fingerprint without unpacking (None when the source cannot be read yet)."""
    try:
        given = Path(ref_model)
        if is_archive(given):
            return Source(given, "archive", given, given, str(given)).fingerprint()
        return open_source(ref_model, ref_model_file, Path("/nonexistent")).fingerprint()  # unpacks nothing
    except (UserError, OSError):
        return None


def _move_aside(path: Path) -> Path:
    dst = path.with_name(f"{path.name}.old.{datetime.datetime.now():%Y%m%d%H%M%S}")
    path.rename(dst)
    logger.info("kept the previous %s as %s", path, dst)
    return dst


def _staging_dir(dest: Path) -> Path:
    """An empty hidden sibling of ``dest`` to build it in (see :func:`_put_in_place`)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp.{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def _put_in_place(tmp: Path, dest: Path) -> None:
    """Rename the finished ``tmp`` to ``dest``; a non-empty ``dest`` is kept as ``dest.old.<time>``."""
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    elif dest.exists():
        _move_aside(dest)
    tmp.rename(dest)


def _model_tokens(conf: dict, source: Source, report: Report) -> Optional[List[str]]:
    tl = conf.get("token_list")
    if isinstance(tl, (list, tuple)):
        return [str(t) for t in tl]
    p = locate(tl, source)
    if p is None:
        report.problems.append(f"token list: the model's token_list {tl!r} was not found")
        return None
    return read_token_list(p)


def import_reference(
    ref_model: PathLike,
    out_dir: PathLike,
    recipe: Optional[Recipe] = None,
    ref_model_file: Optional[PathLike] = None,
    model_name: str = "valid.loss.ave.pth",
    overwrite: bool = False,
) -> Tuple[str, Path]:
    """Check a pretrained ESPnet ASR model against ``recipe`` and write it to ``out_dir``.

    Returns ``(status, out_dir)``: status ``imported``, ``skipped`` (same source already imported and
    checked against the same recipe inputs) or ``rechecked`` (same source, recipe inputs changed, checked
    again). Raises :class:`UserError` listing every problem; ``out_dir`` is then left as it was.
    """
    recipe = recipe or Recipe()
    out_dir = Path(out_dir)
    recipe_fp = recipe.fingerprint()
    previous = _read_source_txt(out_dir) if (out_dir / ".done.stage11").exists() else {}
    same_source = False
    if previous and not overwrite:
        fp = _quick_source_fingerprint(ref_model, ref_model_file)
        same_source = fp is not None and previous.get("source") == fp and previous.get("model_name") == model_name
        if same_source and previous.get("recipe") == recipe_fp:
            return "skipped", out_dir
        if not same_source:
            old = previous.get("source") or {}
            old_path = old.get("path") or (old.get("model") or {}).get("path")
            raise UserError(
                f"holds another imported reference ({old_path}, model file {previous.get('model_name')}), "
                f"not {ref_model}",
                str(out_dir), "pass --overwrite true to replace it (the old one is kept as *.old.<time>), "
                "or choose another output directory")
    elif out_dir.exists() and any(out_dir.iterdir()) and not overwrite and not previous:
        raise UserError("exists and is not a finished import (no .done.stage11 / source.txt)", str(out_dir),
                        "remove it, or pass --overwrite true (it is kept as *.old.<time>)")

    tmp = _staging_dir(out_dir)
    try:
        info = _check_and_stage(ref_model, ref_model_file, tmp, out_dir, recipe, model_name)
        info["recipe"] = recipe_fp
        if same_source:  # same model, recipe inputs changed: checked again, files unchanged
            write_yaml(tmp / "source.txt", {**previous, "recipe": recipe_fp, "checked": info["checked"],
                                             "notes": info["notes"]})
            os.replace(tmp / "source.txt", out_dir / "source.txt")
            return "rechecked", out_dir
        write_yaml(tmp / "source.txt", info)
        (tmp / ".done.stage11").touch()
        _put_in_place(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return "imported", out_dir


def _check_and_stage(ref_model, ref_model_file, tmp: Path, out_dir: Path, recipe: Recipe, model_name: str) -> dict:
    """Unpack / find the model, check everything, write the import's files into ``tmp``."""
    report = Report()
    source = open_source(ref_model, ref_model_file, tmp / "_unpacked")
    conf = load_yaml(source.config, "model config")
    if "encoder" not in conf or "token_list" not in conf:
        raise UserError("not an ESPnet ASR training config (no encoder / token_list)", source.label)
    model_tokens = _model_tokens(conf, source, report)
    check_against_recipe(conf, source, recipe, model_tokens, report)

    # the files the config names, located and staged under their final names
    final = dict(conf)
    state = load_state(source.model)
    if conf.get("normalize") == "global_mvn":
        nconf = dict(conf.get("normalize_conf") or {})
        stats = locate(nconf.get("stats_file"), source)
        has_buffers = "normalize.mean" in state and "normalize.std" in state
        if stats is not None and has_buffers and not _stats_match_state(stats, state):
            _stats_from_state(state, tmp / "feats_stats.npz")
            report.notes.append(f"the statistics file {stats} does not hold the checkpoint's normalize.mean / "
                                "normalize.std (which the model uses): rebuilt from the checkpoint")
        elif stats is not None:
            shutil.copyfile(stats, tmp / "feats_stats.npz")
        elif has_buffers:
            _stats_from_state(state, tmp / "feats_stats.npz")
            report.notes.append(f"the statistics file {nconf.get('stats_file')} is not in the package: rebuilt "
                                "from the checkpoint's normalize.mean / normalize.std (exactly what the model uses)")
        else:
            report.problems.append(f"normalisation: global_mvn statistics {nconf.get('stats_file')} not found, "
                                   "and the checkpoint has no normalize.mean / normalize.std")
        if (tmp / "feats_stats.npz").is_file():
            d = stats_dim(tmp / "feats_stats.npz")
            _, mfront = effective_frontend(conf)
            if mfront.get("n_mels") not in (None, d):
                report.problems.append(f"normalisation: the model's statistics have {d} dimensions, its features "
                                       f"{mfront.get('n_mels')} (n_mels)")
        nconf["stats_file"] = str(out_dir / "feats_stats.npz")
        final["normalize_conf"] = nconf
    bpe = None
    if conf.get("token_type") == "bpe":
        bpe = locate(conf.get("bpemodel"), source)
        if bpe is not None:
            shutil.copyfile(bpe, tmp / "bpe.model")
        elif recipe.bpemodel is not None and recipe.bpemodel.is_file():
            shutil.copyfile(recipe.bpemodel, tmp / "bpe.model")
            report.notes.append(f"the model's sentencepiece model {conf.get('bpemodel')} is not in the package: "
                                f"the recipe's {recipe.bpemodel} is used to read its output")
        else:
            report.notes.append(f"the model's sentencepiece model {conf.get('bpemodel')} was not found: decoding "
                                "this model on its own (stage 12) needs it")
        if (tmp / "bpe.model").is_file():
            final["bpemodel"] = str(out_dir / "bpe.model")
    if model_tokens is not None:
        (tmp / "tokens.txt").write_text("".join(t + "\n" for t in model_tokens), encoding="utf-8")
        if not isinstance(conf.get("token_list"), (list, tuple)):
            final["token_list"] = str(out_dir / "tokens.txt")

    # the model builds from the config and the checkpoint fits it exactly
    verify = dict(final)
    if conf.get("normalize") == "global_mvn":
        verify["normalize_conf"] = {**final["normalize_conf"], "stats_file": str(tmp / "feats_stats.npz")}
    verify_cfg = tmp / "_verify_config.yaml"
    write_yaml(verify_cfg, verify)
    model = None
    try:
        model, _ = load_reference(verify_cfg, source.model)
    except UserError as e:
        model_label = (f"{source.given}:{source.model.relative_to(source.unpack_root)}" if source.unpack_root
                       else str(source.model))
        report.problems.append(f"model ({model_label}): {e.what.replace(str(verify_cfg), source.label)}")

    if report.problems:
        n = len(report.problems)
        lines = [f"this pretrained model does not fit the recipe ({n} problem{'s' if n > 1 else ''}):"]
        lines += [f"  {i}. {p}" for i, p in enumerate(report.problems, 1)]
        if report.notes:
            lines += ["  notes:"] + [f"   - {x}" for x in report.notes]
        raise UserError("\n".join(lines), source.label, "nothing was imported; fix the above (or pick another "
                                                         "model) before any training starts")
    verify_cfg.unlink()

    # write: config, weights, params.txt
    write_yaml(tmp / "config.yaml", final)
    if source.kind == "archive":
        shutil.move(str(source.model), tmp / model_name)
    else:
        shutil.copyfile(source.model, tmp / model_name)
    lines = parameter_report(model)
    total = int(lines[0])
    (tmp / "params.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if source.meta:
        write_yaml(tmp / "meta.yaml", source.meta)
    if source.unpack_root is not None:
        shutil.rmtree(source.unpack_root)
    for note in report.notes:
        logger.warning("%s: %s", source.label, note)

    return {
        "source": source.fingerprint(),
        "kind": {"archive": "packed model (espnet2.bin.pack)", "exp_dir": "ESPnet experiment directory",
                 "config": "config.yaml + model file"}[source.kind],
        "config": str(source.config.relative_to(source.unpack_root)) if source.unpack_root else str(source.config),
        "model_file": str(source.model.relative_to(source.unpack_root)) if source.unpack_root else str(source.model),
        "model_sha256": sha256_of(tmp / model_name),
        "model_name": model_name,
        "archive_members": source.members or None,
        "packed_with": {k: source.meta.get(k) for k in ("espnet", "torch", "python")} if source.meta else None,
        "num_params": total,
        "imported": datetime.datetime.now().isoformat(timespec="seconds"),
        "checked": ["builds with ESPnet, checkpoint loads strictly", "encoder is a Conformer", "CTC head",
                    "token list", "sampling rate", "frontend settings", "normalisation"],
        "notes": report.notes,
    }


# ------------------------------------------------------------------------------ token export
def export_tokens(ref_model: PathLike, dest: PathLike, ref_model_file: Optional[PathLike] = None) -> Path:
    """Write the pretrained model's token list (and sentencepiece model) as a recipe's stage-5 output.

    ``dest`` (e.g. ``data/token_list/bpe_unigram256``) gets ``tokens.txt``, ``bpe.model`` (token_type
    bpe) and ``.done.stage5``; an existing ``dest`` is kept as ``dest.old.<time>``.
    """
    dest = Path(dest)
    tmp = _staging_dir(dest)
    try:
        source = open_source(ref_model, ref_model_file, tmp / "_unpacked")
        conf = load_yaml(source.config, "model config")
        report = Report()
        tokens = _model_tokens(conf, source, report)
        if tokens is None:
            raise UserError(report.problems[0], source.label)
        (tmp / "tokens.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
        if conf.get("token_type") == "bpe":
            bpe = locate(conf.get("bpemodel"), source)
            if bpe is None:
                raise UserError(f"the model's sentencepiece model {conf.get('bpemodel')} is not in the package",
                                source.label, "pack the model with --option <bpe.model>")
            shutil.copyfile(bpe, tmp / "bpe.model")
        if source.unpack_root is not None:
            shutil.rmtree(source.unpack_root)
        write_yaml(tmp / "source.txt", {"exported_from": source.fingerprint(), "token_type": conf.get("token_type"),
                                         "num_tokens": len(tokens)})
        (tmp / ".done.stage5").touch()
        _put_in_place(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


__all__ = [
    "Recipe", "Source", "Report", "import_reference", "export_tokens", "open_source", "locate",
    "check_against_recipe", "effective_frontend", "token_list_differences", "parse_fs", "read_token_list",
]

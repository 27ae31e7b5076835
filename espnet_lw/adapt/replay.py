"""The training and validation data of an adaptation, with replay of the original training data.

Replay is done with the data, not with a sampler: ESPnet's ``unsorted`` batch sampler cuts the key
list of the first shape file into consecutive batches (``UnsortedBatchSampler``: ``N = len // B``
batches of ``len * i // N .. len * (i + 1) // N``) and the trainer only shuffles the order of the
batches. :func:`build_adapt_data` writes a training dir whose shape file
(``shape/train/speech_shape``) lists the keys batch by batch, each batch holding ``round(replay *
len(batch))`` utterances of the original training set and the rest field utterances. So every batch
of every epoch has the share, with ESPnet's own trainer and sampler and nothing patched; the price
is that the replayed utterances are one fixed sample (drawn once, seeded), not a fresh one per
epoch, and that batches are not sorted by length (more padding; nothing at the few minutes of audio
an adaptation uses).

Replayed utterances get the prefix ``replay-`` (utterance and speaker ids) so that they never
collide with field ids. The validation dir holds ``valid_share`` of the field utterances, held out
of training (or, with ``valid_share: 0``, all of them). ``minutes`` keeps a seeded random subset of
the adapt set of about that duration before anything else.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from espnet_lw.data.kaldi_dir import read_kv, utt2spk_to_spk2utt, write_kv
from espnet_lw.utils.cli import UserError

PathLike = Union[str, Path]
REPLAY_PREFIX = "replay-"
#: tables copied into the adaptation's data dirs (the others are not needed for training)
TABLES = ("wav.scp", "text", "utt2spk", "utt2num_samples")


@dataclass
class AdaptDataSummary:
    """What :func:`build_adapt_data` wrote (adapt.json keeps it)."""

    field_utts: int  # field utterances in training
    field_seconds: float  # their audio
    valid_utts: int
    replay_utts: int  # replayed utterances (one fixed sample of the original training set)
    batches: int
    batch_size: int
    replay_share: float  # replayed / all training utterances
    min_batch_replay_share: float  # the smallest share of replayed utterances in any batch

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


def _read_dir(d: Path, what: str) -> Dict[str, Dict[str, str]]:
    if not d.is_dir():
        raise UserError(f"{what} not found", str(d), "run the formatting stages (3-4, or 16) first")
    tables = {}
    for name in TABLES:
        if not (d / name).is_file():
            raise UserError(f"{what}: {name} is missing (a formatted dump dir has it)", str(d / name),
                            "format the set with stage 3 (python -m espnet_lw.bin.format_wav_scp)")
        tables[name] = read_kv(d / name)
    keys = list(tables["wav.scp"])
    for name in TABLES[1:]:
        missing = [k for k in keys if k not in tables[name]]
        if missing:
            raise UserError(f"{what}: {len(missing)} utterance(s) of wav.scp are not in {name} "
                            f"(e.g. {missing[0]})", str(d / name),
                            f"run: python -m espnet_lw.bin.validate_data_dir --fix {d}")
    if not keys:
        raise UserError(f"{what} has no utterances", str(d / "wav.scp"))
    return tables


def batch_layout(n_field: int, batch_size: int, share: float) -> List[Tuple[int, int]]:
    """``[(field, replayed), ...]`` per batch, as ESPnet's unsorted sampler will cut the keys.

    The batches hold ``n_field`` field utterances in all and ``round(share * size)`` replayed ones
    each (at least one, never the whole batch; a batch with a surplus field slot gets one more
    replayed utterance instead).
    """
    if n_field < 1:
        raise ValueError("no field utterances")
    if share <= 0:
        return [(n, 0) for n in _chunks(n_field, batch_size)]
    if batch_size < 2:
        raise ValueError(f"batch_size {batch_size} cannot hold a replay share: it needs at least one field "
                         "and one replayed utterance per batch")

    def n_replay(n: int) -> int:  # replayed utterances in a batch of n: the share, at least 1, never all
        return min(n - 1, max(1, int(share * n + 0.5))) if n >= 2 else 0

    total = n_field + 1
    while True:
        layout = [(n - n_replay(n), n_replay(n)) for n in _chunks(total, batch_size)]
        surplus = sum(f for f, _ in layout) - n_field
        if surplus >= 0:
            break
        total += 1
    # give surplus field slots to replay, one per batch at a time, from the last batch backwards
    while surplus > 0:
        moved = 0
        for i in reversed(range(len(layout))):
            f, r = layout[i]
            if surplus > 0 and f > 1:
                layout[i] = (f - 1, r + 1)
                surplus -= 1
                moved += 1
        if not moved:  # every batch down to one field utterance: cannot happen for share < 1
            raise ValueError(f"no batch layout for {n_field} field utterances at share {share}")
    return layout


def _chunks(total: int, batch_size: int) -> List[int]:
    """Batch sizes of ESPnet's ``UnsortedBatchSampler`` (drop_last false) for ``total`` keys."""
    n = max(total // batch_size, 1)
    return [(i + 1) * total // n - i * total // n for i in range(n)]


def _seconds(tables: Mapping[str, Mapping[str, str]], keys: Sequence[str], fs: int) -> float:
    return sum(int(tables["utt2num_samples"][k]) for k in keys) / fs


def _subset_minutes(keys: List[str], tables, fs: int, minutes: float, rng: random.Random) -> List[str]:
    order = list(keys)
    rng.shuffle(order)
    out, total = [], 0.0
    for k in order:
        if total >= minutes * 60.0:
            break
        out.append(k)
        total += int(tables["utt2num_samples"][k]) / fs
    return sorted(out)


def _write(dst: Path, shape_dir: Path, rows: List[Tuple[str, str, Mapping[str, Mapping[str, str]]]],
           count_tokens: Callable[[str], int], token_suffix: str) -> None:
    """Write a data dir of ``rows`` = (new key, source key, source tables), and its shape files (in the row
    order, in ``shape_dir``: a Kaldi dir's tables are sorted, so they are not part of it)."""
    dst.mkdir(parents=True, exist_ok=True)
    wav, text, utt2spk, shape, text_shape = {}, {}, {}, {}, {}
    for new, src, tables in rows:
        wav[new] = tables["wav.scp"][src]
        text[new] = tables["text"][src]
        spk = tables["utt2spk"][src]
        utt2spk[new] = REPLAY_PREFIX + spk if new.startswith(REPLAY_PREFIX) and new != src else spk
        shape[new] = tables["utt2num_samples"][src]
        text_shape[new] = str(max(count_tokens(text[new]), 1))
    write_kv(dst / "wav.scp", wav)
    write_kv(dst / "text", text)
    write_kv(dst / "utt2spk", utt2spk)
    write_kv(dst / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(dst / "utt2num_samples", shape)
    # the batch sampler reads the keys of the first shape file in file order: not sorted
    write_kv(shape_dir / "speech_shape", shape, sort=False)
    write_kv(shape_dir / f"text_shape.{token_suffix}", text_shape, sort=False)


def build_adapt_data(
    adapt_dir: PathLike,
    out_dir: PathLike,
    *,
    fs: int,
    batch_size: int,
    replay: float = 0.0,
    replay_dir: Optional[PathLike] = None,
    valid_share: float = 0.1,
    minutes: Optional[float] = None,
    seed: int = 0,
    count_tokens: Callable[[str], int] = lambda t: len(t.split()),
    token_suffix: str = "char",
) -> AdaptDataSummary:
    """Write the data dirs ``out_dir/train`` and ``out_dir/valid`` (wav.scp, text, utt2spk, spk2utt) and
    their shape files ``out_dir/shape/{train,valid}/{speech_shape,text_shape.<suffix>}`` from the
    formatted adapt set (and, with ``replay`` > 0, the formatted original training set ``replay_dir``);
    see the module docstring."""
    out = Path(out_dir)
    rng = random.Random(seed)
    field = _read_dir(Path(adapt_dir), "the adapt set")
    keys = list(field["wav.scp"])
    if minutes is not None:
        keys = _subset_minutes(keys, field, fs, minutes, rng)
    n_valid = 0
    if valid_share > 0 and len(keys) >= 2:
        n_valid = min(max(1, round(valid_share * len(keys))), len(keys) - 1)
    shuffled = list(keys)
    rng.shuffle(shuffled)
    valid_keys = sorted(shuffled[:n_valid])
    train_keys = sorted(shuffled[n_valid:])
    if not valid_keys:
        valid_keys = list(train_keys)  # validate on the adapt set itself

    layout = batch_layout(len(train_keys), batch_size, replay)
    n_replay = sum(r for _, r in layout)
    replay_rows: List[Tuple[str, str, Mapping]] = []
    if n_replay:
        if replay_dir is None:
            raise UserError("replay > 0 needs the original training data (replay_dir)")
        orig = _read_dir(Path(replay_dir), "the original training set (replay)")
        pool = list(orig["wav.scp"])
        picked: List[Tuple[str, str]] = []
        n_pass = 0
        while len(picked) < n_replay:
            order = list(pool)
            rng.shuffle(order)
            n_pass += 1
            prefix = REPLAY_PREFIX if n_pass == 1 else f"{REPLAY_PREFIX}{n_pass}-"
            picked += [(prefix + k, k) for k in order[: n_replay - len(picked)]]
        replay_rows = [(new, src, orig) for new, src in picked]
        clash = {new for new, _ in picked} & set(keys)
        if clash:
            raise UserError(f"adapt utterance ids start with '{REPLAY_PREFIX}' ({sorted(clash)[0]}), "
                            "which replay uses", str(adapt_dir), "rename those utterances")
    field_rows = [(k, k, field) for k in train_keys]
    rows: List[Tuple[str, str, Mapping]] = []
    fi = ri = 0
    min_share = 1.0
    for f, r in layout:
        batch = field_rows[fi:fi + f]
        extra = replay_rows[ri:ri + r]
        fi, ri = fi + f, ri + r
        # interleave inside the batch (the order within a batch does not matter to the trainer)
        rows += _interleave(batch, extra)
        min_share = min(min_share, r / (f + r))
    _write(out / "train", out / "shape" / "train", rows, count_tokens, token_suffix)
    _write(out / "valid", out / "shape" / "valid", [(k, k, field) for k in valid_keys], count_tokens, token_suffix)
    return AdaptDataSummary(
        field_utts=len(train_keys), field_seconds=round(_seconds(field, train_keys, fs), 2),
        valid_utts=len(valid_keys) if n_valid else 0, replay_utts=n_replay, batches=len(layout),
        batch_size=batch_size, replay_share=round(n_replay / len(rows), 4),
        min_batch_replay_share=round(min_share, 4),
    )


def _interleave(a: list, b: list) -> list:
    out, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if j >= len(b) or (i < len(a) and i * len(b) <= j * len(a)):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out

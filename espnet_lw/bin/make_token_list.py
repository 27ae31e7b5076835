"""Stage 5: train a sentencepiece model and write ESPnet's token list.

The token list is written by ESPnet's own ``espnet2.bin.tokenize_text`` (vocabulary mode),
so it has exactly the layout ESPnet models expect: ``<blank>`` first, ``<unk>`` second, the
pieces by frequency, ``<sos/eos>`` last.

    python -m espnet_lw.bin.make_token_list --token_type bpe --nbpe 256 \\
        --text dump/raw/train/text --out_dir data/token_list/bpe_unigram256
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

from espnet_lw.utils.cli import UserError, run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True, help="Kaldi-style text file (uttid words...)")
    p.add_argument("--out_dir", required=True, help="where bpe.model and tokens.txt are written")
    p.add_argument("--token_type", choices=["bpe", "char"], default="bpe")
    p.add_argument("--nbpe", type=int, default=256, help="sentencepiece vocabulary size")
    p.add_argument("--bpemode", choices=["unigram", "bpe"], default="unigram")
    p.add_argument("--character_coverage", type=float, default=1.0)
    p.add_argument("--oov", default="<unk>")
    p.add_argument("--blank", default="<blank>")
    p.add_argument("--sos_eos", default="<sos/eos>")
    return p


def read_sentences(text: Path) -> list[str]:
    """Transcripts of a Kaldi text file, without the utterance ids."""
    if not text.is_file() or text.stat().st_size == 0:
        raise UserError("missing or empty transcript file", str(text), "run stages 1-4 first")
    out = []
    for line in text.read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and parts[1].strip():
            out.append(parts[1].strip())
    if not out:
        raise UserError("no non-empty transcripts", str(text))
    return out


def train_sentencepiece(sentences: list[str], out_dir: Path, args) -> Path:
    import sentencepiece as spm

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(sentences) + "\n")
        train_txt = f.name
    try:
        spm.SentencePieceTrainer.train(
            input=train_txt,
            model_prefix=str(out_dir / "bpe"),
            vocab_size=args.nbpe,
            model_type=args.bpemode,
            character_coverage=args.character_coverage,
            input_sentence_size=100_000_000,
            unk_surface=args.oov,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise UserError(
            f"sentencepiece could not train a {args.nbpe}-piece model: {e}",
            str(args.text),
            "use a smaller --nbpe or more training text",
        ) from e
    finally:
        os.unlink(train_txt)
    return out_dir / "bpe.model"


def write_token_list(args, bpemodel: Path | None, out_dir: Path) -> Path:
    """Call ESPnet's tokenize_text in vocabulary mode."""
    from espnet2.bin.tokenize_text import tokenize

    tokens = out_dir / "tokens.txt"
    tokenize(
        input=str(args.text),
        output=str(tokens),
        field="2-",
        delimiter=None,
        token_type=args.token_type,
        space_symbol="<space>",
        non_linguistic_symbols=None,
        bpemodel=str(bpemodel) if bpemodel else None,
        log_level="WARNING",
        write_vocabulary=True,
        vocabulary_size=0,
        remove_non_linguistic_symbols=False,
        cutoff=0,
        add_symbol=[f"{args.blank}:0", f"{args.oov}:1", f"{args.sos_eos}:-1"],
        cleaner=None,
        g2p=None,
        add_nonsplit_symbol=[],
    )
    return tokens


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    text = Path(args.text)
    sentences = read_sentences(text)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bpemodel = None
    if args.token_type == "bpe":
        bpemodel = train_sentencepiece(sentences, out_dir, args)
        logging.info("sentencepiece model: %s", bpemodel)
    tokens = write_token_list(args, bpemodel, out_dir)
    n = len(tokens.read_text(encoding="utf-8").splitlines())
    logging.info("token list: %s (%d tokens)", tokens, n)


if __name__ == "__main__":
    run_main(main)

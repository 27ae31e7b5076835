"""English sentences from WordNet's example sentences: mini_synth's open-vocabulary text.

WordNet 3.0 (Debian package ``wordnet-base``, files ``/usr/share/wordnet/data.{noun,verb,adj,adv}``)
illustrates its word senses with about 48,000 example sentences written by its lexicographers, in
double quotes after each gloss::

    02121620 05 n 03 cat 0 true_cat 0 ... | feline mammal usually having thick soft fur ...; "the cat sat"

:func:`load_sentences` keeps the ones that read as plain spoken English (letters, apostrophes,
hyphens and sentence punctuation only; no acronyms, single letters other than "a" and "I", or
digits; 4 to 20 words), normalises them like LibriSpeech transcripts (upper case, hyphens become
spaces, outer apostrophes dropped, single spaces) and removes duplicates: about 33,700 sentences
over about 27,000 word types. The order is the files' order; :func:`shuffled` gives a seeded
permutation, so that splits drawn from it in sequence never share a sentence.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from espnet_lw.utils.cli import UserError

#: where Debian's wordnet-base installs the database (override: WNSEARCHDIR, as WordNet's own tools)
DEFAULT_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/local/WordNet-3.0/dict")
DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
MIN_WORDS = 4
MAX_WORDS = 20
INSTALL_FIX = ("install WordNet 3.0 (Debian/Ubuntu: apt-get install wordnet-base), or point WNSEARCHDIR "
               "at a directory holding data.noun, data.verb, data.adj and data.adv")

_QUOTED = re.compile(r'"([^"]+)"')
_ALLOWED = re.compile(r"[A-Za-z' ,.;:!?-]+")
_PUNCT = re.compile(r"[,.;:!?]")
_SPLIT = re.compile(r"[\s-]+")


@dataclass(frozen=True)
class Sentence:
    """One example sentence: ``transcript`` (the reference text) and ``spoken`` (fed to the synthesiser)."""

    transcript: str
    spoken: str


def wordnet_dir() -> Path:
    """The WordNet database directory: ``$WNSEARCHDIR`` or the first of :data:`DEFAULT_DIRS` that has it."""
    env = os.environ.get("WNSEARCHDIR")
    candidates = [Path(env)] if env else [Path(d) for d in DEFAULT_DIRS]
    for d in candidates:
        if all((d / f).is_file() for f in DATA_FILES):
            return d
    where = env or ", ".join(DEFAULT_DIRS)
    raise UserError("WordNet 3.0 database not found (mini_synth takes its sentences from it)", where, INSTALL_FIX)


def normalise(example: str) -> str | None:
    """The LibriSpeech-style transcript of one example sentence, or ``None`` when it is left out."""
    s = example.strip()
    if not s or not _ALLOWED.fullmatch(s):
        return None  # digits, quotes, brackets, non-ASCII...: not read out unambiguously
    tokens = [t.strip("'") for t in _SPLIT.split(_PUNCT.sub(" ", s))]
    tokens = [t for t in tokens if t]
    if any(len(t) > 1 and t.isupper() for t in tokens):
        return None  # acronyms are spelt out by some voices and read as words by others
    if any(len(t) == 1 and t.lower() not in ("a", "i") for t in tokens):
        return None  # "Robert C. Weaver": a lone letter
    if not MIN_WORDS <= len(tokens) <= MAX_WORDS:
        return None
    return " ".join(t.upper() for t in tokens)


def spoken_form(transcript: str) -> str:
    """What the synthesiser reads: the transcript in lower case with a full stop (no SSML, no markup)."""
    return transcript.lower() + "."


@lru_cache(maxsize=4)
def _load(directory: str) -> tuple[Sentence, ...]:
    seen: dict[str, None] = {}
    for name in DATA_FILES:
        path = Path(directory) / name
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                _, bar, gloss = line.partition(" | ")
                if not bar:
                    continue
                for example in _QUOTED.findall(gloss):
                    t = normalise(example)
                    if t is not None:
                        seen.setdefault(t, None)
    return tuple(Sentence(t, spoken_form(t)) for t in seen)


def load_sentences(directory: str | os.PathLike | None = None) -> list[Sentence]:
    """Every usable example sentence of the WordNet database (see the module doc), in file order."""
    d = Path(directory) if directory is not None else wordnet_dir()
    sentences = list(_load(str(d.resolve())))
    if not sentences:
        raise UserError("no usable example sentences in the WordNet database", str(d), INSTALL_FIX)
    return sentences


def shuffled(sentences: list[Sentence], seed: int) -> list[Sentence]:
    """A seeded permutation of ``sentences`` (the same for the same seed and input)."""
    out = list(sentences)
    random.Random(f"mini_synth-wordnet-{seed}").shuffle(out)
    return out

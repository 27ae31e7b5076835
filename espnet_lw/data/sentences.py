"""Deterministic generator of varied English sentences for the mini_synth corpus.

The generator expands a small hand-written phrase grammar (statements,
narrative, questions, instructions, news-like and dialogue-like sentences)
whose word slots are filled from the word lists shipped in
``espnet_lw/data/words/*.txt``.  Words inside each list are ordered roughly by
commonness and drawn with Zipf-like weights (``1 / (rank + offset) ** s``), so
frequent words recur often while the long tail still gives a vocabulary of a
few thousand distinct word forms.

Everything is driven by a :class:`random.Random` seeded by the caller, so the
same seed always yields the same sentence stream (independent of
``PYTHONHASHSEED``, the platform and the Python version >= 3.2).

Two renderings of every sentence are produced:

* ``transcript``: normalised like LibriSpeech transcripts -- upper case
  letters, apostrophes and single spaces only;
* ``spoken``: lower case with final ``.`` or ``?`` -- what is fed to the TTS
  engine (punctuation only shapes intonation; the words are identical).

Example::

    >>> gen = SentenceGenerator(seed=0)
    >>> s = gen.sample()
    >>> s.transcript == s.transcript.upper()
    True
"""

from __future__ import annotations

import random
import re
from bisect import bisect
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Iterator

WORDS_DIR = Path(__file__).resolve().parent / "words"

MIN_WORDS = 5
MAX_WORDS = 20

_VALID_TRANSCRIPT = re.compile(r"^[A-Z']+( [A-Z']+)*$")


# --------------------------------------------------------------------------
# Morphology
# --------------------------------------------------------------------------
_VOWELS = "aeiou"


def plural(noun: str) -> str:
    """Regular English plural of ``noun`` (irregulars are given in the lists)."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in _VOWELS:
        return noun[:-1] + "ies"
    return noun + "s"


def _double(base: str) -> str:
    return base + base[-1]


def verb_forms(entry: str) -> dict[str, str]:
    """Expand one verb-list entry into its five forms.

    ``entry`` is ``base[:past[:participle[:ing[:third]]]]``; a trailing ``+``
    on the base doubles the final consonant in the regular ``-ed``/``-ing``
    forms.  Returns a dict with keys ``base past part ing third``.
    """
    parts = entry.split(":")
    base = parts[0]
    double = base.endswith("+")
    if double:
        base = base[:-1]
    stem = _double(base) if double else base
    # -ed
    if base.endswith("e"):
        past = base + "d"
    elif base.endswith("y") and base[-2] not in _VOWELS:
        past = base[:-1] + "ied"
    else:
        past = stem + "ed"
    # -ing
    if base.endswith("ie"):
        ing = base[:-2] + "ying"
    elif base.endswith("e") and not base.endswith(("ee", "ye", "oe")) and len(base) > 2:
        ing = base[:-1] + "ing"
    else:
        ing = stem + "ing"
    # -s
    if base.endswith(("s", "x", "z", "ch", "sh", "o")):
        third = base + "es"
    elif base.endswith("y") and base[-2] not in _VOWELS:
        third = base[:-1] + "ies"
    else:
        third = base + "s"
    forms = {"base": base, "past": past, "part": past, "ing": ing, "third": third}
    for key, value in zip(("past", "part", "ing", "third"), parts[1:]):
        if value:
            forms[key] = value
    if len(parts) == 2:  # only the past given: participle = past
        forms["part"] = parts[1]
    return forms


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = (
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh "
    "twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
    "nineteenth twentieth"
).split()


def number_words(n: int) -> str:
    """Spell a number 0..999999 in British English words ("three hundred and two")."""
    if n < 0 or n > 999_999:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = _ONES[hundreds] + " hundred"
        return head + (" and " + number_words(rest) if rest else "")
    thousands, rest = divmod(n, 1000)
    head = number_words(thousands) + " thousand"
    if not rest:
        return head
    return head + (" and " if rest < 100 else " ") + number_words(rest)


def year_words(year: int) -> str:
    """Spell a year the way it is read aloud ("nineteen eighty four")."""
    if 2000 <= year < 2010:
        return number_words(year)
    hi, lo = divmod(year, 100)
    if lo == 0:
        return number_words(hi) + " hundred"
    if lo < 10:
        return number_words(hi) + " oh " + number_words(lo)
    return number_words(hi) + " " + number_words(lo)


# --------------------------------------------------------------------------
# Word lists
# --------------------------------------------------------------------------
def _read_tokens(name: str) -> list[str]:
    path = WORDS_DIR / name
    tokens: list[str] = []
    seen = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip().lower()
            for tok in line.split():
                if tok not in seen:
                    seen.add(tok)
                    tokens.append(tok)
    return tokens


def _noun_pairs(name: str) -> list[tuple[str, str]]:
    """(singular, plural) pairs; '_' inside a token joins a multi-word noun."""
    pairs = []
    for tok in _read_tokens(name):
        if ":" in tok:
            sing, plu = tok.split(":", 1)
        else:
            sing, plu = tok, None
        sing = sing.replace("_", " ")
        if plu is None:
            words = sing.split(" ")
            plu = " ".join(words[:-1] + [plural(words[-1])])
        pairs.append((sing, plu.replace("_", " ")))
    return pairs


class WeightedList:
    """A list of items drawn with Zipf-like weights by rank (first = commonest)."""

    def __init__(self, items, exponent: float = 1.0, offset: float = 2.0):
        self.items = list(items)
        if not self.items:
            raise ValueError("empty word list")
        weights = [1.0 / (r + offset) ** exponent for r in range(len(self.items))]
        self.cum = list(accumulate(weights))

    def draw(self, rng: random.Random):
        """One item, drawn with the Zipf-like weights."""
        x = rng.random() * self.cum[-1]
        return self.items[min(bisect(self.cum, x), len(self.items) - 1)]


@dataclass(frozen=True)
class Lexicon:
    """All word classes used by the grammar."""

    classes: dict

    def all_words(self) -> set[str]:
        """Every word form the lexicon can emit (lower case)."""
        words: set[str] = set()
        for wl in self.classes.values():
            for item in wl.items:
                values = item.values() if isinstance(item, dict) else (
                    item if isinstance(item, tuple) else (item,))
                for v in values:
                    words.update(v.split())
        return words


DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
MONTHS = ("january february march april may june july august september october "
          "november december").split()
MEALS = "breakfast lunch dinner supper tea".split()
KIN = ("mother father brother sister uncle aunt cousin grandmother grandfather "
       "son daughter wife husband friend neighbour").split()
TRANSPORT = "train bus ferry plane boat coach tram".split()
WEATHER = "storm snow rain fog wind flood ice heat".split()
TIMES_OF_DAY = "morning afternoon evening night".split()
SPORTS = "football tennis cricket chess golf hockey rugby".split()
PREPS = ("in near behind beside outside inside under opposite above").split()
POSS = "my your his her our their".split()
TITLES = "mister missus miss doctor professor captain".split()


@lru_cache(maxsize=None)
def load_lexicon(exponent: float = 1.2, offset: float = 2.0) -> Lexicon:
    """Read the shipped word lists and build the weighted word classes."""
    people = _noun_pairs("people.txt")
    animals = _noun_pairs("animals.txt")
    locations = _noun_pairs("locations.txt")
    foods = _noun_pairs("foods.txt")
    special = {s for s, _ in people + animals + locations + foods}
    things = [p for p in _noun_pairs("nouns.txt") if p[0] not in special]
    vt = [verb_forms(e) for e in _read_tokens("verbs_transitive.txt")]
    vi = [verb_forms(e) for e in _read_tokens("verbs_intransitive.txt")]

    def wl(items, e=exponent):
        return WeightedList(items, exponent=e, offset=offset)

    classes = {
        "THING": wl(things),
        "PERSON": wl(people),
        "ANIMAL": wl(animals),
        "LOC": wl(locations),
        "FOOD": wl(foods),
        "MASS": wl(_read_tokens("mass_nouns.txt")),
        "VT": wl(vt),
        "VI": wl(vi),
        "ADJ": wl(_read_tokens("adjectives.txt")),
        "ADV": wl(_read_tokens("adverbs.txt")),
        "NAME": wl(_read_tokens("first_names.txt")),
        "SURNAME": wl([s.replace("_", " ") for s in _read_tokens("surnames.txt")]),
        "PLACE": wl([s.replace("_", " ") for s in _read_tokens("places.txt")]),
        "DAY": wl(DAYS, 0.0),
        "MONTH": wl(MONTHS, 0.0),
        "MEAL": wl(MEALS, 0.5),
        "KIN": wl(KIN, 0.5),
        "TRANSPORT": wl(TRANSPORT, 0.5),
        "WEATHER": wl(WEATHER, 0.5),
        "TOD": wl(TIMES_OF_DAY, 0.0),
        "SPORT": wl(SPORTS, 0.5),
        "PREP": wl(PREPS, 0.7),
        "POSS": wl(POSS, 0.5),
        "TITLE": wl(TITLES, 0.7),
        "SMALLNUM": wl([number_words(n) for n in range(2, 13)], 0.8),
        "NUM": wl([number_words(n) for n in
                   list(range(2, 21)) + list(range(25, 100, 5)) + [100, 200, 500]], 0.6),
        "ORD": wl(_ORDINALS, 0.8),
        "HOUR": wl([number_words(n) for n in range(1, 13)], 0.0),
        "YEAR": wl([year_words(y) for y in range(1990, 1850, -1)] + [year_words(y) for y in range(2000, 2025)], 0.0),
    }
    return Lexicon(classes)


# --------------------------------------------------------------------------
# Grammar
# --------------------------------------------------------------------------
# Nonterminals are written <name>; word slots are {CLASS} or {CLASS.form}
# (noun forms: s / p; verb forms: base past part ing third).  Every sentence
# template ends with "." or "?" (the TTS intonation); a leading "N*" gives
# an integer weight.
GRAMMAR: dict[str, list[str]] = {
    # ---- noun phrases ------------------------------------------------------
    "subj_s": [
        "3*{NAME}", "{NAME} {SURNAME}", "{TITLE} {SURNAME}", "3*the {PERSON.s}",
        "2*the {ADJ} {PERSON.s}", "{POSS} {KIN}", "2*he", "2*she",
        "the {ANIMAL.s}", "a {ADJ} {PERSON.s}", "a {PERSON.s}",
        "the {PERSON.s} from {PLACE}", "{NAME}'s {KIN}", "my old {KIN}",
    ],
    "subj_p": [
        "2*the {PERSON.p}", "{NAME} and {NAME}", "2*they", "2*we",
        "the {ADJ} {PERSON.p}", "{POSS} {PERSON.p}", "the {ANIMAL.p}",
        "{SMALLNUM} {PERSON.p}", "the {SURNAME} family", "most of the {PERSON.p}",
        "{NAME} and {POSS} {KIN}",
    ],
    "subj": ["3*<subj_s>", "2*<subj_p>", "2*i", "you"],
    "obj": [
        "4*the {THING.s}", "2*a {THING.s}", "2*the {ADJ} {THING.s}",
        "a {ADJ} {THING.s}", "2*{POSS} {THING.s}", "{POSS} {ADJ} {THING.s}",
        "the {THING.p}", "some {THING.p}", "{SMALLNUM} {THING.p}",
        "the {ADJ} {THING.p}", "{NAME}", "him", "her", "them", "it",
        "the {PERSON.s}", "the {ANIMAL.s}", "some {MASS}", "the {MASS}",
        "{NAME}'s {THING.s}", "the {THING.s} of the {PERSON.s}",
        "the {THING.s} {PREP} the {LOC.s}",
    ],
    "loc": [
        "3*{PREP} the {LOC.s}", "2*in {PLACE}", "at the {LOC.s}",
        "near the {ADJ} {LOC.s}", "on the way to the {LOC.s}",
        "at {POSS} {KIN}'s {LOC.s}", "by the {LOC.s}", "all over {PLACE}",
    ],
    "time": [
        "yesterday", "last {DAY}", "on {DAY}", "in {MONTH}", "this {TOD}",
        "that {TOD}", "every {DAY}", "at {HOUR} o'clock", "in the {TOD}",
        "a few minutes later", "after {MEAL}", "before {MEAL}",
        "early on {DAY} {TOD}", "the {ORD} time", "in {YEAR}", "long ago",
        "the next day", "at last", "once again", "last year",
    ],
    "future": [
        "tomorrow", "next {DAY}", "next week", "on {DAY}", "after {MEAL}",
        "in {MONTH}", "later today", "this {TOD}", "soon", "at {HOUR} o'clock",
    ],
    # ---- sentences -----------------------------------------------------------
    "S": [
        # statements / narrative (past)
        "8*<subj> {VT.past} <obj> <loc> .",
        "6*<time> <subj> {VT.past} <obj> .",
        "5*<subj> {VI.past} {ADV} <loc> .",
        "3*<subj> had never {VT.part} <obj> before .",
        "4*<subj_s> was {VT.ing} <obj> when <subj> {VI.past} .",
        "3*<subj_p> were {VI.ing} <loc> when the {THING.s} {VI.past} .",
        "4*when <subj> {VI.past} <subj> {VT.past} <obj> .",
        "3*<subj> said that <subj> would {VT} <obj> <future> .",
        "3*after a while <subj> {VI.past} and {VT.past} <obj> .",
        "2*<subj> looked at the {THING.s} and {VI.past} {ADV} .",
        "2*<subj> could not remember where <subj> had put the {THING.s} .",
        "3*<subj> went to {PLACE} <time> .",
        "3*<subj> went to the {LOC.s} to {VT} <obj> .",
        "2*<subj> ate {SMALLNUM} {FOOD.p} for {MEAL} .",
        "2*<subj> had a {FOOD.s} and some {MASS} for {MEAL} .",
        "3*the {ANIMAL.s} {VI.past} {ADV} <loc> .",
        "2*the {ANIMAL.p} {VI.past} <loc> all {TOD} .",
        "2*<subj> gave {NAME} <obj> for {POSS} birthday .",
        "2*<subj> told {NAME} about the {ADJ} {THING.s} .",
        "2*<subj> had lived in {PLACE} for {NUM} years .",
        "2*<subj_s> was born in {PLACE} in {YEAR} .",
        "2*the {THING.s} cost {NUM} pounds but it was very {ADJ} .",
        "2*it was a {ADJ} {TOD} and the {THING.p} were {ADJ} .",
        "2*the {THING.s} was {ADJ} and {ADJ} .",
        "2*there were {NUM} {THING.p} <loc> .",
        "2*there is a {ADJ} {THING.s} <loc> .",
        "for a moment nobody said anything .",
        "2*<subj> {VT.past} the {THING.s} and then {VI.past} {ADV} .",
        "2*<subj> was too {ADJ} to {VT} <obj> .",
        "2*<subj_s> {VT.third} <obj> every {DAY} .",
        "2*<subj_p> {VT} <obj> <loc> every {TOD} .",
        "2*<subj_s> usually {VI.third} <loc> after {MEAL} .",
        "<subj_s> has a {ADJ} {THING.s} and a {ADJ} {ANIMAL.s} .",
        "the {THING.s} that <subj> {VT.past} was {ADJ} .",
        "<subj> {VT.past} <obj> because it was {ADJ} .",
        "<subj> {VI.past} so {ADV} that <subj> {VT.past} <obj> .",
        "2*the {PERSON.s} {VT.past} the {ADJ} {THING.s} {ADV} .",
        "<subj_s> is a {ADJ} {PERSON.s} who {VT.third} {THING.p} .",
        "<subj> played {SPORT} with {NAME} on {DAY} .",
        "the old {LOC.s} <loc> was {ADJ} and {ADJ} .",
        "<subj> waited for the {TRANSPORT} for {NUM} minutes .",
        "<subj> heard a {ADJ} noise from the {LOC.s} .",
        # longer narrative
        "3*<time> <subj> {VT.past} <obj> <loc> and then {VI.past} {ADV} .",
        "2*<subj> {VT.past} <obj> but <subj> {VT.past} <obj> instead .",
        "2*when <subj> {VI.past} <loc> <subj> {VT.past} <obj> and {VI.past} .",
        "2*<subj> said that the {THING.s} was {ADJ} and that <subj> had {VT.part} it <loc> .",
        "2*<subj> was {ADJ} because <subj> had {VT.part} <obj> <time> .",
        "2*although it was {ADJ} <subj> {VT.past} <obj> and {VT.past} <obj> .",
        "<subj> and {NAME} {VT.past} <obj> <loc> while the {PERSON.p} {VI.past} .",
        "if <subj> {VT.past} <obj> <subj> would {VI} {ADV} <loc> .",
        # questions
        "4*did <subj> {VT} <obj> <loc> ?",
        "3*where did <subj> {VT} the {THING.s} ?",
        "2*why is the {THING.s} so {ADJ} ?",
        "3*have you ever {VT.part} <obj> ?",
        "2*what time does the {TRANSPORT} leave for {PLACE} ?",
        "3*can you {VT} <obj> for me ?",
        "2*who {VT.past} <obj> <time> ?",
        "2*how many {THING.p} are there <loc> ?",
        "2*would you like to {VT} <obj> ?",
        "is it true that <subj> {VT.past} <obj> ?",
        "2*do you know where the {LOC.s} is ?",
        "why did <subj> {VI} <loc> ?",
        "what were <subj_p> {VT.ing} <loc> ?",
        "how long will it take to {VT} the {THING.s} ?",
        "does {NAME} still live in {PLACE} ?",
        "are you coming to the {LOC.s} <future> ?",
        # instructions
        "3*please {VT} <obj> before you {VT} <obj> .",
        "2*{VT} the {THING.s} <loc> and wait for me .",
        "2*don't forget to {VT} <obj> <future> .",
        "turn left at the {LOC.s} and walk to the {LOC.s} .",
        "2*first {VT} the {THING.s} then {VT} the {THING.s} .",
        "always {VT} <obj> {ADV} .",
        "never {VT} <obj> <loc> .",
        "take {SMALLNUM} {THING.p} and put them <loc> .",
        "2*make sure you {VT} the {ADJ} {THING.s} .",
        "go to the {LOC.s} and ask for {TITLE} {SURNAME} .",
        # news-like
        "the mayor of {PLACE} announced a new plan for the {THING.p} on {DAY} .",
        "2*officials in {PLACE} said the {LOC.s} would reopen in {MONTH} .",
        "more than {NUM} thousand people visited {PLACE} last year .",
        "2*a {ADJ} {THING.s} was found <loc> early on {DAY} {TOD} .",
        "police are looking for a {ADJ} {THING.s} that went missing in {PLACE} .",
        "the price of {MASS} rose by {NUM} percent in {MONTH} .",
        "2*the {LOC.s} will be closed until {DAY} because of the {WEATHER} .",
        "heavy {WEATHER} is expected across {PLACE} on {DAY} .",
        "the team from {PLACE} won the {SPORT} match by {SMALLNUM} points .",
        "{NUM} {PERSON.p} from {PLACE} have {VT.part} the {ADJ} {THING.s} .",
        "the new {LOC.s} in {PLACE} will open in {MONTH} {YEAR} .",
        # dialogue-like
        "2*i think we should {VT} <obj> <future> .",
        "i don't know what you mean by that .",
        "2*i'm sorry but i can't {VT} <obj> today .",
        "you can't {VT} the {THING.s} without a {THING.s} .",
        "well i suppose we could {VT} <obj> .",
        "yes of course i remember {NAME} {SURNAME} .",
        "2*no i haven't seen the {THING.s} since {DAY} .",
        "oh that's a {ADJ} {THING.s} .",
        "2*let's {VT} <obj> <loc> .",
        "2*thank you for the {ADJ} {THING.s} .",
        "what a {ADJ} {THING.s} that was !",
        "2*i'll meet you at the {LOC.s} at {HOUR} o'clock .",
        "we're going to {PLACE} next {DAY} .",
        "he's been {VI.ing} all {TOD} .",
        "she's {ADJ} because {POSS} {KIN} {VT.past} <obj> .",
        "it's too {ADJ} to {VI} <loc> today .",
        "they're {VI.ing} <loc> with {NAME} .",
        "i wonder if {NAME} has {VT.part} the {THING.s} yet ?",
    ],
}

_TOKEN_RE = re.compile(r"<[a-z_]+>|\{[A-Z]+(?:\.[a-z]+)?\}[a-z']*|[^\s]+")
_NOUN_FORM = {"s": 0, "p": 1}
# words starting with a vowel letter that take "a" / consonant letter that take "an"
_A_EXCEPTIONS = ("uni", "use", "usu", "euro", "one", "once", "uti")
_AN_EXCEPTIONS = ("hour", "honest", "honour", "heir")


def _parse_alternatives(alts: list[str]) -> WeightedList:
    items, weights = [], []
    for alt in alts:
        m = re.match(r"^(\d+)\*(.*)$", alt)
        w, body = (int(m.group(1)), m.group(2)) if m else (1, alt)
        items.append(_TOKEN_RE.findall(body))
        weights.append(w)
    wl = WeightedList(items, exponent=0.0)
    wl.cum = list(accumulate(weights))
    return wl


@dataclass(frozen=True)
class Sentence:
    """One generated sentence in its two renderings."""

    transcript: str  # LibriSpeech style: UPPER CASE, apostrophes, single spaces
    spoken: str  # lower case with final punctuation, for the TTS engine

    @property
    def words(self) -> list[str]:
        return self.transcript.split(" ")


class SentenceGenerator:
    """Seeded stream of random sentences of ``MIN_WORDS``..``MAX_WORDS`` words.

    Args:
        seed: any integer; equal seeds give identical streams.
        exponent, offset: Zipf parameters of the within-class word weights.
    """

    def __init__(self, seed: int = 0, exponent: float = 1.2, offset: float = 2.0):
        self.rng = random.Random(f"mini_synth-sentences-{seed}")
        self.lexicon = load_lexicon(exponent, offset)
        self.rules = {k: _parse_alternatives(v) for k, v in GRAMMAR.items()}

    # -- expansion ---------------------------------------------------------
    def _fill(self, slot: str) -> str:
        """Fill ``{CLASS.form}suffix`` (e.g. ``{NAME}'s``) with a drawn word."""
        body, _, suffix = slot[1:].partition("}")
        name, _, form = body.partition(".")
        item = self.lexicon.classes[name].draw(self.rng)
        if isinstance(item, dict):  # verb
            word = item[form or "base"]
        elif isinstance(item, tuple):  # noun (singular, plural)
            word = item[_NOUN_FORM[form or "s"]]
        else:
            word = item
        return word + suffix

    def _expand(self, symbol: str, out: list[str], depth: int = 0) -> None:
        if depth > 8:
            raise RecursionError("grammar recursion too deep")
        for tok in self.rules[symbol].draw(self.rng):
            if tok.startswith("<"):
                self._expand(tok[1:-1], out, depth + 1)
            elif tok.startswith("{"):
                out.extend(self._fill(tok).split())
            else:
                out.append(tok)

    @staticmethod
    def _fix_articles(words: list[str]) -> list[str]:
        fixed = []
        for i, w in enumerate(words):
            if w == "a" and i + 1 < len(words):
                nxt = words[i + 1]
                vowel = nxt[0] in _VOWELS
                if nxt.startswith(_A_EXCEPTIONS):
                    vowel = False
                if nxt.startswith(_AN_EXCEPTIONS):
                    vowel = True
                if vowel:
                    w = "an"
            fixed.append(w)
        return fixed

    def _one(self) -> Sentence | None:
        tokens: list[str] = []
        self._expand("S", tokens)
        end = tokens.pop() if tokens and tokens[-1] in ".?!" else "."
        words = self._fix_articles([w.lower() for t in tokens for w in t.split()])
        if not MIN_WORDS <= len(words) <= MAX_WORDS:
            return None
        transcript = " ".join(words).upper()
        if not _VALID_TRANSCRIPT.match(transcript):
            raise AssertionError(f"bad generated transcript: {transcript!r}")
        spoken = " ".join(words)
        spoken = spoken[0].upper() + spoken[1:] + end
        return Sentence(transcript, spoken)

    def sample(self) -> Sentence:
        """Next sentence of the stream (length-filtered, not de-duplicated)."""
        while True:
            s = self._one()
            if s is not None:
                return s

    def unique(self, exclude: set[str] | None = None) -> Iterator[Sentence]:
        """Endless stream of sentences whose transcripts were never produced before.

        ``exclude`` (transcripts) is updated in place, so several calls can
        share one set to keep e.g. train and test sentences disjoint.
        """
        seen = exclude if exclude is not None else set()
        while True:
            s = self.sample()
            if s.transcript not in seen:
                seen.add(s.transcript)
                yield s


def generate(n: int, seed: int = 0) -> list[Sentence]:
    """``n`` distinct sentences for ``seed`` (deterministic)."""
    gen = SentenceGenerator(seed)
    it = gen.unique()
    return [next(it) for _ in range(n)]


def vocabulary_size() -> int:
    """Number of distinct word forms the generator can produce from the lists."""
    return len(load_lexicon().all_words())


if __name__ == "__main__":  # pragma: no cover - quick manual inspection
    import sys

    for sent in generate(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
        print(sent.transcript)

"""Check that the system tools and Python packages espnet-lw needs are installed.

    python -m espnet_lw.bin.check_tools [--need sox,flac,sclite,espeak-ng,flite,wordnet]

Prints one line per missing tool with the Debian package that provides it and exits 1 if any
is missing; prints nothing else (exit 0) when everything is there. The stage driver runs it
before stage 1, so a missing tool is reported before any work starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys

#: tool -> (Debian package, what it is used for)
TOOLS = {
    "sox": ("sox", "speed perturbation and audio pipes (stages 2-3)"),
    "flac": ("flac", "FLAC audio in LibriSpeech-style corpora"),
    "sclite": ("sctk", "WER/CER scoring (stage 13)"),
    "espeak-ng": ("espeak-ng", "synthesising the embedded mini_synth corpus (stage 1)"),
    "flite": ("flite", "the recorded-speaker voices of the embedded mini_synth corpus (stage 1)"),
    "wordnet": ("wordnet-base", "the sentences of the embedded mini_synth corpus (stage 1)"),
}
PACKAGES = {
    "espnet2": "espnet==202511",
    "torch": "torch",
    "torchaudio": "torchaudio==2.11.0",
    "sentencepiece": "sentencepiece",
    "kaldiio": "kaldiio",
    "yaml": "pyyaml",
    "soundfile": "soundfile",
}


def tool_present(name: str) -> bool:
    if name == "sclite":
        from espnet_lw.scoring import find_sclite
        from espnet_lw.utils.cli import UserError

        try:
            find_sclite()
        except UserError:
            return False
        return True
    if name == "wordnet":  # a database, not a program
        from espnet_lw.data.wordnet import wordnet_dir
        from espnet_lw.utils.cli import UserError

        try:
            wordnet_dir()
        except UserError:
            return False
        return True
    return shutil.which(name) is not None


def missing(need: list[str]) -> list[str]:
    problems = []
    for tool in need:
        if tool not in TOOLS:
            raise SystemExit(f"ERROR: unknown tool {tool!r}; known: {', '.join(TOOLS)}")
        if not tool_present(tool):
            pkg, why = TOOLS[tool]
            problems.append(f"missing system tool '{tool}' ({why}): install the Debian package {pkg} "
                            f"(apt-get install {pkg}) or run egs2/TEMPLATE/lw1/install.sh")
    for mod, pip_name in PACKAGES.items():
        if importlib.util.find_spec(mod) is None:
            problems.append(f"missing Python package '{pip_name}': pip install -e <espnet-lw checkout>")
    return problems


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--need", default="sox,flac,sclite", help="comma-separated tools to check")
    args = p.parse_args(argv)
    problems = missing([t for t in args.need.split(",") if t])
    for line in problems:
        print("ERROR: " + line, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

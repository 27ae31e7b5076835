"""espnet-lw: an ESPnet recipe plugin that turns one large ASR model into small, fast students.

Versions are the ones measured to work together on CPU (see README.md, "Install"):
espnet 202511 pins setuptools<74, which rules out the torch 2.13 CPU wheel; pip then resolves
torch 2.12.1, which works with torchaudio 2.11.0.
"""

from setuptools import find_packages, setup

setup(
    name="espnet_lw",
    version="0.1.0",
    description="Light-weight ASR students from one ESPnet reference model (EncRL + linear-CTC)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["espnet_lw", "espnet_lw.*"]),
    install_requires=[
        "espnet==202511",
        "torchaudio==2.11.0",
        "sentencepiece",
        "kaldiio",
        "pyyaml",
        "soundfile",
        "tqdm",
        "matplotlib",
        "tensorboard",
        "onnx",
        "onnxruntime",
    ],
    entry_points={"console_scripts": ["transcribe=espnet_lw.bin.transcribe:main"]},
    extras_require={"test": ["pytest", "pytest-xdist", "ruff"]},
    license="Apache-2.0",
)

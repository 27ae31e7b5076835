"""The plugin's ASR task: ESPnet's ``ASRTask`` with espnet-lw's model classes registered.

ESPnet picks a model class by name (``model: lw_ctc`` in the YAML) from
``espnet2.tasks.asr.model_choices``. That registry lives in the process, so every espnet-lw
entry point imports this module (which registers the classes) before calling ESPnet.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

from espnet_lw.utils.quiet import import_quietly

_asr = import_quietly("espnet2.tasks.asr")

from espnet_lw.models.encrl import EncRLModel  # noqa: E402
from espnet_lw.models.linear_ctc import LinearCTCModel  # noqa: E402
from espnet_lw.tasks.trainer import LWTrainer  # noqa: E402

#: model name in YAML -> class
LW_MODELS = {"lw_ctc": LinearCTCModel, "lw_encrl": EncRLModel}


def register_models() -> None:
    """Add espnet-lw's model classes to ESPnet's ``model_choices`` (idempotent)."""
    for name, cls in LW_MODELS.items():
        _asr.model_choices.classes[name] = cls


register_models()


class LWASRTask(_asr.ASRTask):
    """ESPnet's ASR task, knowing the ``lw_*`` model classes; trained by :class:`LWTrainer`
    (atomic checkpoint saves, DDP only, unused parameters handled for EncRL)."""

    trainer = LWTrainer

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False):
        """ESPnet's optional inputs + cached reference targets for ``lw_encrl`` (``ref_enc``, ``ref_logp``)."""
        return tuple(super().optional_data_names(train, inference)) + ("ref_enc", "ref_logp")


def model_size_lines(config: Union[str, Path], model_file: Optional[Union[str, Path]] = None) -> List[str]:
    """The lines of ``params.txt`` (:func:`espnet_lw.models.loading.parameter_report`) for the model that a
    training ``config.yaml`` describes (``model_file``: also load its weights; the sizes do not depend on them)."""
    from espnet_lw.models.loading import parameter_report

    model, _ = LWASRTask.build_model_from_file(config, model_file, "cpu")
    return parameter_report(model)

"""ESPnet's ``Trainer`` with the three things espnet-lw's stage 11 needs on top.

* **Atomic saves.** ESPnet writes ``checkpoint.pth`` (the only resume point), ``<N>epoch.pth`` and
  the averaged model with ``torch.save`` straight onto the final name: a kill or a full disk during
  the write leaves a torn file and loses the resume point. Within :meth:`LWTrainer.run` every
  ``torch.save`` of ESPnet's trainer and of its model averaging goes to a temporary file that is
  renamed onto the final name once complete (:func:`~espnet_lw.utils.checkpoints.atomic_torch_saves`),
  so the previous checkpoint stays loadable until the new one is whole.
* **No DataParallel.** ``--ngpu N`` (N > 1) without distributed mode would be ESPnet's
  ``DataParallel``, whose replicas share the EncRL model's one frozen reference across threads:
  refused (``espnet_lw.bin.asr_train`` turns ``--ngpu N`` into DDP, one process per device).
* **Unused parameters under DDP.** The EncRL step leaves parameters without a gradient (the CTC
  head when no loss term uses it, projection heads of an unused alignment term): DDP needs
  ``find_unused_parameters`` for ``lw_encrl``, set here whatever the command line says.
"""

from __future__ import annotations

import logging

from espnet_lw.utils.checkpoints import atomic_torch_saves
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.quiet import import_quietly

_trainer = import_quietly("espnet2.train.trainer")
_averaging = import_quietly("espnet2.main_funcs.average_nbest_models")

logger = logging.getLogger(__name__)

#: the modules whose ``torch.save`` calls are made atomic during training
SAVING_MODULES = (_trainer, _averaging)


def needs_unused_parameters(model) -> bool:
    """Whether DDP must look for parameters without a gradient in ``model`` (EncRL models)."""
    from espnet_lw.models.encrl import EncRLModel  # noqa: PLC0415 - ESPnet's model classes, imported late

    return isinstance(model, EncRLModel)


class LWTrainer(_trainer.Trainer):
    """ESPnet's trainer: atomic checkpoint saves, DDP only, unused parameters handled for EncRL."""

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        if not distributed_option.distributed and distributed_option.ngpu > 1:
            raise UserError(
                f"--ngpu {distributed_option.ngpu} without distributed mode would use DataParallel, "
                "which espnet-lw does not support",
                fix="run with --multiprocessing_distributed true (DDP, one process per GPU; "
                    "python -m espnet_lw.bin.asr_train sets it for --ngpu > 1)",
            )
        if distributed_option.distributed and needs_unused_parameters(model) and not trainer_options.unused_parameters:
            logger.info("DDP: lw_encrl leaves some parameters without a gradient: unused_parameters=true")
            trainer_options.unused_parameters = True
        with atomic_torch_saves(SAVING_MODULES):
            super().run(model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
                        plot_attention_iter_factory, trainer_options, distributed_option)

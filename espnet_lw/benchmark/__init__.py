"""The students benchmark: reference, scratch / pruned / EncRL students, loss ablations, WER vs time.

The command line is ``python -m espnet_lw.bin.benchmark {run,epochs,report}``; the work is here:

* :mod:`~espnet_lw.benchmark.timing` - epoch wall times from ``train.log``, time to reach a WER,
  the speed-ups;
* :mod:`~espnet_lw.benchmark.systems` - the systems of the exp tree (:class:`SystemDir`) and of
  benchmark.json (:class:`System`): discovery, parameter counts, final WERs, reference-cache time;
* :mod:`~espnet_lw.benchmark.ablation` - loss names and the one-term ablation configs;
* :mod:`~espnet_lw.benchmark.epochs` - keeping every epoch checkpoint, decoding each (cached);
* :mod:`~espnet_lw.benchmark.report` - benchmark.json, the RESULTS.md section, the plot;
* :mod:`~espnet_lw.benchmark.runner` - the ``./run.sh`` plan of a whole benchmark and running it.

The names below are re-exported for convenience, loaded on first use: the device probe imports
``espnet_lw.benchmark.device_probe`` alone, without the rest of the package (its peak memory is measured).
"""

from __future__ import annotations

import importlib

_HOMES = {
    **dict.fromkeys(["TERM_ORDER", "derive_ablation", "loss_name", "write_ablation_configs"], "ablation"),
    **dict.fromkeys(
        [
            "CheckpointKeeper",
            "decode_epochs",
            "epoch_cache_path",
            "epoch_checkpoints",
            "keep_checkpoints",
            "load_epoch_cache",
        ],
        "epochs",
    ),
    **dict.fromkeys(
        [
            "BEGIN_MARK",
            "END_MARK",
            "build_benchmark",
            "plot_wer_vs_time",
            "render_markdown",
            "replace_section",
            "write_report",
        ],
        "report",
    ),
    **dict.fromkeys(["RESERVED", "check_run_args", "enter_recipe", "plan", "run_all"], "runner"),
    **dict.fromkeys(
        ["DEFAULT_DECODE", "KINDS", "System", "SystemDir", "discover_systems", "select_systems"], "systems"
    ),
    **dict.fromkeys(
        [
            "EpochTime",
            "compute_speedups",
            "parse_epoch_times",
            "parse_timespan",
            "ratio_key",
            "seconds_list",
            "speedup",
            "time_to_reach",
        ],
        "timing",
    ),
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"espnet_lw.benchmark.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'espnet_lw.benchmark' has no attribute {name!r}")

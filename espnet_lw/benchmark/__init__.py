"""The students benchmark: reference, scratch / pruned / control / KD / EncRL students over seeds, loss
ablations, time to a dev target, statistics, provenance.

The command line is ``python -m espnet_lw.bin.benchmark {run,epochs,report,from_logs}``; the work is here:

* :mod:`~espnet_lw.benchmark.timing` - epoch wall times, updates and the validation CER from
  ``train.log``, time to reach a WER;
* :mod:`~espnet_lw.benchmark.compare` - per ratio: seeds grouped, the dev target, cost to it,
  speed-ups, mean / spread, paired bootstrap against EncRL;
* :mod:`~espnet_lw.benchmark.bootstrap` - per-utterance word errors, the paired bootstrap;
* :mod:`~espnet_lw.benchmark.provenance` - one clean commit: the checks and the record;
* :mod:`~espnet_lw.benchmark.systems` - the systems of the exp tree (:class:`SystemDir`) and of
  benchmark.json (:class:`System`): discovery, parameter counts, final WERs, reference-cache time;
* :mod:`~espnet_lw.benchmark.ablation` - loss names, the one-term ablation configs and the EncRL-epoch
  budget configs;
* :mod:`~espnet_lw.benchmark.epochs` - keeping every epoch checkpoint, decoding each (cached);
* :mod:`~espnet_lw.benchmark.report` - benchmark.json, the RESULTS.md section, the plot;
* :mod:`~espnet_lw.benchmark.valid_cer` - time to target on the trainer's per-epoch validation CER (dev),
  also from a committed report's json and logs alone;
* :mod:`~espnet_lw.benchmark.cells` - table cells the markdown shares (speed-ups, bars);
* :mod:`~espnet_lw.benchmark.runner` - the ``./run.sh`` plan of a whole benchmark and running it.

The names below are re-exported for convenience, loaded on first use: the device probe imports
``espnet_lw.benchmark.device_probe`` alone, without the rest of the package (its peak memory is measured).
"""

from __future__ import annotations

import importlib

_HOMES = {
    **dict.fromkeys(["TERM_ORDER", "derive_ablation", "derive_encrl_epochs", "derive_without_finetune_kd",
                     "loss_name", "write_ablation_configs", "write_budget_configs"], "ablation"),
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
            "copy_logs",
            "plot_wer_vs_time",
            "render_markdown",
            "replace_section",
            "write_report",
        ],
        "report",
    ),
    **dict.fromkeys(["MODES", "RESERVED", "check_run_args", "enter_recipe", "parse_seeds", "plan", "run_all",
                     "seeds_for"], "runner"),
    **dict.fromkeys(
        ["BASELINES", "CACHE_USERS", "DEFAULT_DECODE", "KINDS", "System", "SystemDir", "VALID_CER",
         "discover_systems", "read_student_json", "select_systems"], "systems"
    ),
    **dict.fromkeys(
        [
            "EpochTime",
            "cumulative",
            "first_crossing",
            "mean_curve",
            "parse_epoch_times",
            "parse_timespan",
            "ratio_key",
            "seconds_list",
            "speedup",
            "time_to_reach",
            "time_to_target",
            "updates_list",
            "valid_cer_list",
        ],
        "timing",
    ),
    **dict.fromkeys(["from_logs", "plot_valid_cer", "valid_cer_comparison", "valid_cer_lines"], "valid_cer"),
    **dict.fromkeys(["compare", "compare_ratio", "group_runs", "run_costs", "wer_stats"], "compare"),
    **dict.fromkeys(["BootstrapResult", "mean_errors", "paired_bootstrap", "utterance_errors", "word_errors"],
                    "bootstrap"),
    **dict.fromkeys(["RECIPE_OUTPUTS", "check_report", "check_run", "git_state"], "provenance"),
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"espnet_lw.benchmark.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'espnet_lw.benchmark' has no attribute {name!r}")

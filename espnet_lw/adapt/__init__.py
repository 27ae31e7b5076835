"""Field adaptation: fine-tune a trained model (reference or student) on a little field data.

* :mod:`espnet_lw.adapt.config` - the typed ``conf/adapt*.yaml`` schema;
* :mod:`espnet_lw.adapt.replay` - the adaptation's training / validation data dirs: field
  utterances with a share of the original training data replayed in every batch;
* :mod:`espnet_lw.adapt.prepare` - the ESPnet training config of an adaptation, its data, and the
  check that a finished adaptation is never redone with other options;
* :mod:`espnet_lw.adapt.report` - the before/after WER table;
* :mod:`espnet_lw.adapt.field_data` - bring your own field data (manifest, LibriSpeech layout, Kaldi
  dir) into a checked data dir, optionally split into adapt / test by speaker.

The stage driver's stage 16 (egs2/TEMPLATE/lw1/lw.sh) runs them.
"""

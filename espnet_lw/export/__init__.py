"""From a trained ESPnet model to files a device runs (issue 11).

* :mod:`espnet_lw.export.pack` - stage 14: the model packed with ESPnet's own packer (a zip that a
  plain ESPnet install loads), with a model card;
* :mod:`espnet_lw.export.wrapper` - the network as one export-friendly torch module;
* :mod:`espnet_lw.export.onnx_export` - stage 15: ONNX fp32 + int8, ``tokens.txt``, ``meta.json``;
* :mod:`espnet_lw.export.parity` - the exported files checked against the torch model.

Nothing is imported here: each module pulls in torch / ESPnet / onnx only when used.
"""

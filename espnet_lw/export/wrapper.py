"""The exported network as one torch module: global MVN + Conformer encoder + CTC head + log-softmax.

:class:`CTCExportModule` takes a trained ESPnet ASR model (``model: espnet`` or ``model: lw_ctc``,
``ConformerEncoder`` with ``conv2d`` subsampling, ``rel_pos`` / ``rel_selfattn``, ``rel_pos_type:
latest``) and computes the same log-posteriors with a graph that exports small and quantizes well:

* **No positional table.** ESPnet's ``RelPositionalEncoding`` keeps a ``(2 * 5000 - 1, d)`` table
  (5.8 MB at d = 144) that an ONNX trace stores as a constant. Here the encoding is computed from
  the number of frames, with ESPnet's formula (:func:`rel_positional_encoding`).
* **Matrix products as MatMul.** onnxruntime's dynamic quantization only rewrites ``MatMul``
  (quantized convolutions may not run on its CPU provider). The conformer convolution module's two
  pointwise ``Conv1d`` (kernel 1) are linear layers, and (``conv_as_matmul``, for the int8 file) the
  second 3x3 stride-2 ``Conv2d`` of the subsampling is nine strided slices of its input, each
  multiplied by one (C_in, C_out) slice of the kernel (:class:`StridedConvAsMatMul`, the im2col
  product split per kernel tap so that no 9x copy of the feature map is held). That conv is the
  largest single cost of a small model (9 C^2 multiply-adds per output frame and frequency bin:
  ~1.8 GFLOP per 10 s at C = 144, as much as seven Conformer blocks): int8 makes it cheaper, while
  in fp32 onnxruntime's own ``Conv`` is faster than the nine MatMuls, so the fp32 file keeps it.
  The first subsampling conv (1 input channel, 9 weights per output channel) stays a ``Conv``.
* **Batch-independent outputs.** ESPnet's ``Conv2dSubsampling`` shortens the padding mask of a
  batch by slicing it (a shorter utterance of a padded batch gets one or two more frames than when
  decoded alone) and its convolution module mixes padded frames into the last valid ones. Here the
  output lengths follow the formula for an utterance alone (``((T - 1) // 2 - 1) // 2``, what
  ``Speech2Text`` gives for batch size 1) and the depthwise convolution's input is zeroed beyond
  each utterance's length (what ESPnet's zero padding does for batch size 1). The valid frames of
  an utterance therefore come out the same, to float rounding, whatever it is batched with.
* BatchNorm of the convolution module folded into the depthwise convolution (eval statistics).

Attention, feed-forward and layer-norm modules are ESPnet's own, called as they are.
:func:`check_exportable` refuses (with the option to change) any other model layout.
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import nn

from espnet_lw.utils.cli import UserError
from espnet_lw.utils.quiet import import_quietly

SUBSAMPLING = 4
#: feature frames an utterance needs for one output frame (``((7 - 1) // 2 - 1) // 2 == 1``); the
#: graph cannot run a batch whose longest utterance is shorter (ESPnet refuses those too)
MIN_FRAMES = 7


def rel_positional_encoding(n_frames, d_model: int) -> torch.Tensor:
    """ESPnet's ``RelPositionalEncoding`` (``rel_pos_type: latest``) for ``n_frames`` frames: (1, 2T-1, d).

    Row k holds relative position ``T - 1 - k`` (from T-1 down to -(T-1)); even channels are
    ``sin(pos * div)``, odd channels ``cos(pos * div)`` with ``div = exp(-2i ln(10000) / d)``,
    computed in float32 as ESPnet does. ``n_frames``: ``x.size(1)`` (an int; a traced size when
    exporting, so that T stays dynamic in the graph).
    """
    pos = ((n_frames - 1) - torch.arange(0, 2 * n_frames - 1, dtype=torch.int64)).to(torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
    angle = pos * div_term  # (2T-1, d/2)
    pe = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(1, -1, d_model)
    return pe


class StridedConvAsMatMul(nn.Module):
    """A ``Conv2d`` (no padding, no dilation, groups 1) on a channel-last input, as one MatMul per tap.

    Input ``(B, T, F, C_in)``; output ``(B, T', F', C_out)`` with ``T' = (T - k) // s + 1``. Tap
    ``(i, j)`` is the input sliced ``[i : i + s(T'-1) + 1 : s, j : j + s(F'-1) + 1 : s]`` times
    ``weight[:, :, i, j].T``; the sum over taps plus the bias is the convolution.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or tuple(conv.padding) != (0, 0):
            raise ValueError("only a plain Conv2d (groups 1, no dilation, no padding) is rewritten")
        self.kernel = tuple(conv.kernel_size)
        self.stride = tuple(conv.stride)
        w = conv.weight.detach()  # (C_out, C_in, kh, kw)
        self.taps = nn.ParameterList(
            [nn.Parameter(w[:, :, i, j].t().contiguous(), requires_grad=False)
             for i in range(self.kernel[0]) for j in range(self.kernel[1])]
        )
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False) if conv.bias is not None else None

    def out_size(self, t_in, f_in):
        """``(T', F')`` for an input of ``T`` x ``F``."""
        (kh, kw), (sh, sw) = self.kernel, self.stride
        return (t_in - kh) // sh + 1, (f_in - kw) // sw + 1

    def forward(self, x: torch.Tensor, in_size=None) -> torch.Tensor:
        """``in_size``: ``(x.size(1), x.size(2))`` computed elsewhere. Given, the traced graph takes no
        ``Shape`` of ``x``, which makes onnxruntime lay the whole feature map out once more (NCHWc to
        NCHW) only to read its shape: ~7 % of a one-block student's int8 network time."""
        (kh, kw), (sh, sw) = self.kernel, self.stride
        t_out, f_out = self.out_size(*(in_size if in_size is not None else (x.size(1), x.size(2))))
        out = None
        k = 0
        for i in range(kh):
            for j in range(kw):
                tap = x[:, i : i + sh * (t_out - 1) + 1 : sh, j : j + sw * (f_out - 1) + 1 : sw, :]
                y = torch.matmul(tap, self.taps[k])
                out = y if out is None else out + y
                k += 1
        if self.bias is not None:
            out = out + self.bias
        return out


def _pointwise_as_linear(conv: nn.Conv1d) -> nn.Linear:
    """A kernel-1 ``Conv1d`` as the ``Linear`` it is (applied channel-last)."""
    lin = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
    lin.weight.data.copy_(conv.weight.detach()[:, :, 0])
    if conv.bias is not None:
        lin.bias.data.copy_(conv.bias.detach())
    return lin.requires_grad_(False)


class ConvModule(nn.Module):
    """ESPnet's conformer ``ConvolutionModule`` (eval) with pointwise convs as Linear, BatchNorm folded
    into the depthwise conv, and the depthwise conv's input zeroed beyond each utterance's length."""

    def __init__(self, conv_module: nn.Module):
        super().__init__()
        self.pointwise1 = _pointwise_as_linear(conv_module.pointwise_conv1)
        self.pointwise2 = _pointwise_as_linear(conv_module.pointwise_conv2)
        dw, bn = conv_module.depthwise_conv, conv_module.norm
        if not isinstance(bn, nn.BatchNorm1d):
            raise UserError(f"conformer convolution module with {type(bn).__name__} normalisation is not exported "
                            "(only BatchNorm1d)")
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        self.depthwise = nn.Conv1d(dw.in_channels, dw.out_channels, dw.kernel_size, stride=dw.stride,
                                   padding=dw.padding, dilation=dw.dilation, groups=dw.groups, bias=True)
        self.depthwise.weight.data.copy_(dw.weight.detach() * scale[:, None, None])
        dw_bias = dw.bias.detach() if dw.bias is not None else torch.zeros_like(scale)
        self.depthwise.bias.data.copy_((dw_bias - bn.running_mean) * scale + bn.bias.detach())
        self.depthwise.requires_grad_(False)
        self.activation = conv_module.activation

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x`` (B, T, C), ``valid`` (B, T, 1) float 1/0 -> (B, T, C)."""
        x = nn.functional.glu(self.pointwise1(x), dim=-1) * valid
        x = self.activation(self.depthwise(x.transpose(1, 2))).transpose(1, 2)
        return self.pointwise2(x)


class ConformerBlock(nn.Module):
    """ESPnet's conformer ``EncoderLayer`` forward (eval, no cache) around the rewritten conv module."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.self_attn = layer.self_attn
        self.feed_forward = layer.feed_forward
        self.feed_forward_macaron = layer.feed_forward_macaron
        self.ff_scale = float(layer.ff_scale)
        self.norm_ff, self.norm_mha = layer.norm_ff, layer.norm_mha
        self.norm_ff_macaron = layer.norm_ff_macaron if layer.feed_forward_macaron is not None else None
        self.conv_module = ConvModule(layer.conv_module) if layer.conv_module is not None else None
        if self.conv_module is not None:
            self.norm_conv, self.norm_final = layer.norm_conv, layer.norm_final
        self.normalize_before = bool(layer.normalize_before)
        self.concat_linear = layer.concat_linear if layer.concat_after else None

    def forward(self, x, pos_emb, mask, valid):
        nb = self.normalize_before
        if self.feed_forward_macaron is not None:
            residual = x
            h = self.norm_ff_macaron(x) if nb else x
            x = residual + self.ff_scale * self.feed_forward_macaron(h)
            if not nb:
                x = self.norm_ff_macaron(x)
        residual = x
        h = self.norm_mha(x) if nb else x
        att = self.self_attn(h, h, h, pos_emb, mask)
        if self.concat_linear is not None:
            x = residual + self.concat_linear(torch.cat((h, att), dim=-1))
        else:
            x = residual + att
        if not nb:
            x = self.norm_mha(x)
        if self.conv_module is not None:
            residual = x
            h = self.norm_conv(x) if nb else x
            x = residual + self.conv_module(h, valid)
            if not nb:
                x = self.norm_conv(x)
        residual = x
        h = self.norm_ff(x) if nb else x
        x = residual + self.ff_scale * self.feed_forward(h)
        if not nb:
            x = self.norm_ff(x)
        if self.conv_module is not None:
            x = self.norm_final(x)
        return x


def check_exportable(model: nn.Module) -> List[str]:
    """Problems that keep ``model`` from being exported (empty: it can be). Each names the option."""
    enc_mod = import_quietly("espnet2.asr.encoder.conformer_encoder")
    sub = import_quietly("espnet.nets.pytorch_backend.transformer.subsampling")
    emb = import_quietly("espnet.nets.pytorch_backend.transformer.embedding")
    att = import_quietly("espnet.nets.pytorch_backend.transformer.attention")
    mvn = import_quietly("espnet2.layers.global_mvn")
    problems = []
    enc = getattr(model, "encoder", None)
    if getattr(model, "ctc", None) is None:
        problems.append("the model has no CTC head")
    if not isinstance(enc, enc_mod.ConformerEncoder):
        problems.append(f"encoder {type(enc).__name__}: only 'encoder: conformer' is exported")
        return problems
    if getattr(model, "preencoder", None) is not None or getattr(model, "postencoder", None) is not None:
        problems.append("a preencoder / postencoder is not exported (set them to none)")
    norm = getattr(model, "normalize", None)
    if norm is not None and not isinstance(norm, mvn.GlobalMVN):
        problems.append(f"normalize {type(norm).__name__}: only 'normalize: global_mvn' (or none) is exported")
    if type(enc.embed) is not sub.Conv2dSubsampling:
        problems.append(f"subsampling {type(enc.embed).__name__}: only 'input_layer: conv2d' is exported")
    elif type(enc.embed.out[1]) is not emb.RelPositionalEncoding:
        problems.append(f"positional encoding {type(enc.embed.out[1]).__name__}: only 'pos_enc_layer_type: rel_pos' "
                        "with 'rel_pos_type: latest' is exported")
    if getattr(enc, "interctc_use_conditioning", False) or getattr(enc, "ctc_trim", False):
        problems.append("interctc_use_conditioning / ctc_trim change the encoder's output: not exported")
    for i, layer in enumerate(enc.encoders):
        if type(layer.self_attn) is not att.RelPositionMultiHeadedAttention:
            problems.append(f"block {i}: attention {type(layer.self_attn).__name__}: only "
                            "'selfattention_layer_type: rel_selfattn' is exported")
            break
        if getattr(layer.self_attn, "zero_triu", False):
            problems.append("zero_triu attention is not exported")
            break
    return problems


class CTCExportModule(nn.Module):
    """``(feats (B, T, n_mels) float32, feats_lens (B,) int64) -> (log_probs (B, T', V), out_lens (B,))``.

    ``feats`` are log-mel features before normalisation (the global MVN is inside). Only the
    first ``out_lens[b]`` frames of ``log_probs[b]`` are meaningful.
    """

    def __init__(self, model: nn.Module, conv_as_matmul: bool = True):
        super().__init__()
        problems = check_exportable(model)
        if problems:
            raise UserError("cannot export this model: " + "; ".join(problems))
        enc = model.encoder
        norm = getattr(model, "normalize", None)
        if norm is not None:
            mean = norm.mean.detach().float() if norm.norm_means else None
            std = norm.std.detach().float() if norm.norm_vars else None
        else:
            mean = std = None
        self.register_buffer("mvn_mean", mean if mean is not None else torch.zeros(0), persistent=True)
        self.register_buffer("mvn_istd", 1.0 / std if std is not None else torch.zeros(0), persistent=True)
        self.use_mean, self.use_std = mean is not None, std is not None
        self.conv1 = enc.embed.conv[0]
        self.conv_as_matmul = conv_as_matmul
        self.conv2 = StridedConvAsMatMul(enc.embed.conv[2]) if conv_as_matmul else enc.embed.conv[2]
        lin = enc.embed.out[0]
        c_out = enc.embed.conv[2].out_channels
        f_out = lin.in_features // c_out
        # ESPnet flattens (C, F') channel-major; this graph has (F', C): permute the weight's columns
        w = lin.weight.detach().reshape(lin.out_features, c_out, f_out).transpose(1, 2)
        self.embed_out = nn.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None)
        self.embed_out.weight.data.copy_(w.reshape(lin.out_features, -1))
        if lin.bias is not None:
            self.embed_out.bias.data.copy_(lin.bias.detach())
        self.embed_out.requires_grad_(False)
        self.d_model = int(lin.out_features)
        self.xscale = math.sqrt(self.d_model)
        self.blocks = nn.ModuleList([ConformerBlock(layer) for layer in enc.encoders])
        self.after_norm = enc.after_norm if enc.normalize_before else None
        self.ctc_lo = model.ctc.ctc_lo
        self.eval()

    @staticmethod
    def output_lengths(feats_lens: torch.Tensor) -> torch.Tensor:
        """Frames after conv2d subsampling for an utterance of ``feats_lens`` frames (alone)."""
        return torch.clamp(torch.div(torch.div(feats_lens - 1, 2, rounding_mode="floor") - 1, 2,
                                     rounding_mode="floor"), min=0)

    def forward(self, feats: torch.Tensor, feats_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        t_in = feats.size(1)
        valid_in = (torch.arange(t_in, dtype=torch.int64).unsqueeze(0) < feats_lens.unsqueeze(1)).unsqueeze(-1)
        x = feats
        if self.use_mean:
            x = x - self.mvn_mean
        x = x * valid_in.to(x.dtype)  # ESPnet's GlobalMVN zeroes padded frames
        if self.use_std:
            x = x * self.mvn_istd
        x = torch.relu(self.conv1(x.unsqueeze(1)))  # (B, C, T1, F1)
        if self.conv_as_matmul:
            # the first conv's output size from the input's: no Shape of the feature map in the graph
            (kh, kw), (sh, sw) = self.conv1.kernel_size, self.conv1.stride
            size1 = ((t_in - kh) // sh + 1, (feats.size(2) - kw) // sw + 1)
            x = torch.relu(self.conv2(x.permute(0, 2, 3, 1), size1))  # (B, T2, F2, C)
        else:
            x = torch.relu(self.conv2(x)).permute(0, 2, 3, 1)
        x = self.embed_out(x.reshape(x.size(0), x.size(1), -1)) * self.xscale  # (B, T2, d)
        out_lens = self.output_lengths(feats_lens)
        t_out = x.size(1)
        pos_emb = rel_positional_encoding(t_out, self.d_model)
        keep = torch.arange(t_out, dtype=torch.int64).unsqueeze(0) < out_lens.unsqueeze(1)  # (B, T2)
        mask = keep.unsqueeze(1)  # (B, 1, T2): ESPnet's attention mask
        valid = keep.unsqueeze(-1).to(x.dtype)  # (B, T2, 1)
        for block in self.blocks:
            x = block(x, pos_emb, mask, valid)
        if self.after_norm is not None:
            x = self.after_norm(x)
        return torch.log_softmax(self.ctc_lo(x), dim=-1), out_lens

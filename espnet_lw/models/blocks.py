"""Student weights made of reference blocks: which blocks, and the state dict that copies them.

A student is the reference's Conformer with fewer blocks. It can start from reference tensors
(``model_conf.init_from_reference`` of ``lw_encrl``, and the "pruned reference" baseline of
``python -m espnet_lw.bin.init_student``): the shared parts (:data:`SHARED_PREFIXES`) plus the
reference blocks :func:`select_blocks` picks, renumbered ``0..k-1``.

``first`` keeps blocks 0..k-1, ``last`` keeps the last k (the paper's "delete the first blocks"),
``every_other`` keeps k evenly spaced blocks ending with the last one, or an explicit list.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List, Sequence, Tuple, Union

from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import load_yaml

if TYPE_CHECKING:
    import torch

#: reference keys copied into a student by ``init_from_reference`` / ``init_student``
#: (besides the chosen ``encoder.encoders.<i>`` blocks, renumbered)
SHARED_PREFIXES = ("encoder.embed.", "encoder.after_norm.", "ctc.ctc_lo.", "normalize.")

#: the named block selections (else: a list of reference block indices)
BLOCK_SELECTIONS = ("first", "last", "every_other")

BlocksSpec = Union[None, str, Sequence[int]]


def parse_blocks(spec: Union[str, Sequence[int]]) -> Union[str, List[int]]:
    """``first`` / ``last`` / ``every_other`` as is; ``"0,4,8"`` or ``[0, 4, 8]`` as a list of ints."""
    if isinstance(spec, str) and spec in BLOCK_SELECTIONS:
        return spec
    if isinstance(spec, str):
        try:
            return [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"blocks must be first, last, every_other or a list of indices, got {spec!r}") from None
    try:
        if isinstance(spec, (list, tuple)) and not any(isinstance(i, bool) for i in spec):
            return [int(i) for i in spec]
    except (TypeError, ValueError):
        pass
    raise UserError(f"blocks must be first, last, every_other or a list of indices, got {spec!r}")


def select_blocks(spec: Union[str, Sequence[int]], num_reference: int, num_student: int) -> List[int]:
    """Reference block indices that become student blocks ``0..num_student-1``.

    ``first``: the first k blocks; ``last``: the last k (the paper's "delete the first blocks"
    baseline); ``every_other``: k evenly spaced blocks ending with the last one (12 -> 6:
    1,3,5,7,9,11; 12 -> 4: 2,5,8,11); or an explicit list / comma-separated string.
    Raises ``UserError`` (callers say which option it came from).
    """
    if num_student > num_reference:
        raise UserError(f"the student has {num_student} blocks, more than the reference's {num_reference}")
    spec = parse_blocks(spec)
    if spec == "first":
        return list(range(num_student))
    if spec == "last":
        return list(range(num_reference - num_student, num_reference))
    if spec == "every_other":
        return [round((i + 1) * num_reference / num_student) - 1 for i in range(num_student)]
    if len(spec) != num_student:
        raise UserError(f"{len(spec)} block indices given ({spec}) for a student with {num_student} blocks")
    bad = [i for i in spec if not 0 <= i < num_reference]
    if bad:
        raise UserError(f"block indices {bad} out of range 0..{num_reference - 1}")
    return spec


@contextmanager
def block_outputs(encoder, indices: Sequence[int]) -> Iterator[Dict[int, "torch.Tensor"]]:
    """While the block is open, the hidden sequence ``(B, T, D)`` each of ``encoder.encoders[i]``
    (``i`` in ``indices``) outputs in a forward pass, by index (ESPnet's Conformer blocks return
    ``((x, pos_emb), mask)`` or ``(x, mask)``: ``x`` is kept). The hooks are gone afterwards."""
    out: Dict[int, "torch.Tensor"] = {}
    handles = []

    def keep(i):
        def hook(_module, _inputs, output):
            x = output[0] if isinstance(output, tuple) else output
            out[i] = x[0] if isinstance(x, tuple) else x
        return hook

    try:
        for i in indices:
            handles.append(encoder.encoders[i].register_forward_hook(keep(i)))
        yield out
    finally:
        for h in handles:
            h.remove()


def num_blocks_in(state: dict, prefix: str = "encoder.encoders.") -> int:
    """Number of encoder blocks in a state dict (highest block index + 1)."""
    ids = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(ids) + 1 if ids else 0


def reference_init_state(reference_state: dict, blocks: Sequence[int]) -> Dict[str, "torch.Tensor"]:
    """Student state dict made of reference tensors: shared parts + blocks ``blocks`` renumbered."""
    out: Dict[str, "torch.Tensor"] = {}
    for k, v in reference_state.items():
        if k.startswith(SHARED_PREFIXES):
            out[k] = v.detach().clone()
    for j, i in enumerate(blocks):
        src = f"encoder.encoders.{i}."
        found = False
        for k, v in reference_state.items():
            if k.startswith(src):
                out[f"encoder.encoders.{j}." + k[len(src):]] = v.detach().clone()
                found = True
        if not found:
            raise UserError(f"the reference has no block {i} ({src}*)")
    return out


def check_init_state(init: dict, student_state: dict, where: str) -> None:
    """Every tensor of ``init`` must exist in the student with the same shape."""
    missing = [k for k in init if k not in student_state]
    shape = [k for k in init if k in student_state and tuple(init[k].shape) != tuple(student_state[k].shape)]
    if missing or shape:
        k = (shape or missing)[0]
        detail = (f"{k}: {tuple(init[k].shape)} in the reference, {tuple(student_state[k].shape)} in the student"
                  if shape else f"{k} has no place in the student")
        raise UserError(
            f"reference blocks cannot be copied into this student ({len(missing)} missing, {len(shape)} "
            f"differently shaped tensors, e.g. {detail})",
            where,
            "give the student the reference's encoder_conf (output_size, heads, units, input_layer, kernel) "
            "and token list, changing only num_blocks",
        )


def build_init(reference_config, reference_model, student_config, blocks="first",
               include_normalize=True) -> Tuple[Dict[str, "torch.Tensor"], List[int]]:
    """Return ``(state_dict, block_indices)`` for a student described by ``student_config``.

    The output is a partial ESPnet state dict: ``encoder.embed.*``, the chosen reference blocks as
    ``encoder.encoders.0..k-1.*`` (renumbered), ``encoder.after_norm.*``, ``ctc.ctc_lo.*`` and the
    global-MVN statistics ``normalize.{mean,std}`` (unless ``include_normalize`` is false). The
    student's ``encoder_conf`` must equal the reference's apart from ``num_blocks`` (and dropout
    rates): this is checked by building the student encoder and comparing every tensor shape.
    """
    import torch  # noqa: PLC0415 - keeps the block selection importable without torch

    from espnet_lw.models.loading import load_reference  # noqa: PLC0415 - imports torch
    from espnet_lw.utils.quiet import import_quietly  # noqa: PLC0415

    torch.set_num_threads(1)
    student_config = Path(student_config)
    if not student_config.is_file():
        raise UserError("student config not found", str(student_config))
    sconf = load_yaml(student_config, "student config", allow_empty=True)
    ref, rargs = load_reference(reference_config, reference_model)
    s_enc_name = sconf.get("encoder", rargs.encoder)
    if s_enc_name != rargs.encoder:
        raise UserError(f"the student's encoder is {s_enc_name!r}, the reference's {rargs.encoder!r}",
                        str(student_config), "use the reference's encoder type with fewer num_blocks")
    s_enc_conf = dict(sconf.get("encoder_conf") or {})
    if "num_blocks" not in s_enc_conf:
        raise UserError("encoder_conf.num_blocks is not set", str(student_config))
    if "token_list" in sconf and isinstance(sconf["token_list"], list) and sconf["token_list"] != list(ref.token_list):
        raise UserError("the student's token list differs from the reference's", str(student_config),
                        "use the reference's token list (the CTC head is copied)")
    # the feature dimension the reference encoder was built for (its frontend's output)
    if ref.frontend is not None:
        input_size = ref.frontend.output_size()
    else:
        input_size = int(getattr(rargs, "input_size", 0) or 0)
    encoder_choices = import_quietly("espnet2.tasks.asr").encoder_choices
    student_encoder = encoder_choices.get_class(s_enc_name)(input_size=input_size, **s_enc_conf)
    n_ref = len(ref.encoder.encoders)
    n_stu = len(student_encoder.encoders)
    try:
        idx = select_blocks(blocks, n_ref, n_stu)
    except UserError as e:
        raise UserError(f"--blocks: {e.what}") from e
    init = reference_init_state(ref.state_dict(), idx)
    if not include_normalize:
        init = {k: v for k, v in init.items() if not k.startswith("normalize.")}
    student_shapes = {"encoder." + k: v for k, v in student_encoder.state_dict().items()}
    student_shapes.update({k: v for k, v in init.items() if not k.startswith("encoder.")})
    check_init_state(init, student_shapes, str(student_config))
    return init, idx

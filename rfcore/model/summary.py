"""What is inside a RetinaFace: feature shapes per pyramid level, parameters per stage.

The network has four stages [paper §4.2, Fig. 2]: the *backbone* computes
feature maps ``C_k`` at strides 8, 16, 32 (more for the paper preset); the
*FPN* turns them into pyramid levels ``P_k`` of one common width; a
*context* module (SSH) on every level widens what each cell sees; 1x1
*heads* then predict, per anchor, 2 logits, 4 box and 10 landmark deltas.

:func:`level_shapes` records what each stage outputs on every level for one
input size, by running the real forward pass with hooks, and
:func:`parameter_counts` splits the parameters between the stages by their
checkpoint names (``body.``, ``fpn.``, ``sshK.``, ``...Head.``). Both work
on :class:`~rfcore.model.RetinaFace` as built by ``from_config``, not on its
fused inference form.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from rfcore.model.retinaface import RetinaFace

STAGES = ("backbone", "FPN", "context", "heads")
"""The stages of the network, in the order data flows through them."""

_STAGE_PATTERNS = (
    ("backbone", r"body\."),
    ("FPN", r"fpn\."),
    ("context", r"ssh\d+\."),
    ("heads", r"(Class|Bbox|Landmark|Mesh)Head\."),
)


def stage_of(parameter_name: str) -> str:
    """The stage a parameter belongs to, from its name (``"fpn.merge1.0.weight"`` -> ``"FPN"``).

    Raises:
        ValueError: If the name belongs to no stage of :data:`STAGES`.
    """
    for stage, pattern in _STAGE_PATTERNS:
        if re.match(pattern, parameter_name):
            return stage
    raise ValueError(f"parameter {parameter_name!r} belongs to no stage of {STAGES}")


def parameter_counts(model: RetinaFace) -> dict[str, int]:
    """Number of parameters per stage and in total.

    Args:
        model: A RetinaFace (``RetinaFace.from_config``).

    Returns:
        ``{"backbone": n, "FPN": n, "context": n, "heads": n, "total": n}``;
        the four stages add up to the total (426,608 for ``"mobilenet0.25"``).

    Raises:
        ValueError: If a parameter belongs to no stage.
    """
    counts = dict.fromkeys(STAGES, 0)
    for name, parameter in model.named_parameters():
        counts[stage_of(name)] += parameter.numel()
    return {**counts, "total": sum(counts.values())}


@torch.no_grad()
def level_shapes(model: RetinaFace, image_size: tuple[int, int]) -> list[dict]:
    """Output shape of every stage on every pyramid level, for one input size.

    A blank ``(1, 3, H, W)`` image runs through the model in eval mode (so
    batch-norm statistics stay untouched; every module's mode is restored
    afterwards); hooks record what the backbone, the FPN, each context module and each
    classification head return.

    Args:
        model: A RetinaFace (``RetinaFace.from_config``).
        image_size: Input ``(height, width)``.

    Returns:
        One dict per level, finest first, with keys ``level`` (``"P3"``),
        ``stride``, ``backbone``, ``FPN`` and ``context`` (each a
        ``(C, H_l, W_l)`` tuple; ``backbone`` is ``None`` for a level the FPN
        adds above the backbone, such as the paper's P6) and ``anchors``
        (rows the heads predict for the level: ``H_l * W_l * A``).
    """
    outputs: dict[str, list] = {"backbone": [], "FPN": [], "context": [], "heads": []}
    modules = [(model.body, "backbone"), (model.fpn, "FPN")]
    modules += [(getattr(model, f"ssh{k}"), "context") for k in range(1, len(model.strides) + 1)]
    # a head shared by all levels runs, and so records, once per level too
    modules += [(head, "heads") for head in model.ClassHead]
    handles = [module.register_forward_hook(_recorder(outputs[stage])) for module, stage in modules]
    modes = {module: module.training for module in model.modules()}
    parameter = next(model.parameters())
    try:
        model.eval()
        model(torch.zeros(1, 3, *image_size, dtype=parameter.dtype, device=parameter.device))
    finally:
        for module, training in modes.items():
            module.training = training
        for handle in handles:
            handle.remove()
    backbone = outputs["backbone"][0][model.first_level :]  # the maps the FPN reads, finest first
    backbone += [None] * (len(model.strides) - len(backbone))
    levels = zip(model.strides, backbone, outputs["FPN"][0], outputs["context"], outputs["heads"])
    return [
        {
            "level": f"P{int(math.log2(stride))}",
            "stride": stride,
            "backbone": None if c is None else tuple(c.shape[1:]),
            "FPN": tuple(p.shape[1:]),
            "context": tuple(x.shape[1:]),
            "anchors": head.shape[1],  # (1, H_l * W_l * A, 2)
        }
        for stride, c, p, x, head in levels
    ]


def _recorder(store: list):
    """A forward hook that appends the module's output to ``store``."""

    def hook(_module: nn.Module, _inputs, output) -> None:
        store.append(output)

    return hook

"""The RetinaFace network: backbones, feature pyramid, context modules, heads.

Start at :class:`RetinaFace` (``rfcore/model/retinaface.py``); each part
lives in its own module: :mod:`~rfcore.model.mobilenet`,
:mod:`~rfcore.model.resnet`, :mod:`~rfcore.model.fpn`,
:mod:`~rfcore.model.context`, :mod:`~rfcore.model.heads`, and the shared
conv + BN block in :mod:`~rfcore.model.blocks`. :mod:`~rfcore.model.summary`
lists feature shapes per level and parameters per stage;
:mod:`~rfcore.model.receptive` computes the receptive field of every level,
by the recurrence and traced from the modules.
"""

from rfcore.model.retinaface import RetinaFace, RetinaFaceOutput

__all__ = ["RetinaFace", "RetinaFaceOutput"]

"""Options that widen the synthetic faces' distribution, each switched on by name.

The faces, poses and places stay those drawn without them; option ``k`` of :data:`~rfcore.config.VARIETY_OPTIONS`
draws from ``default_rng([seed, index, VARIETY_STREAM, k, stage])``, leaving the others' draws alone:

==============  =====================================================  ==================================
option          what it adds                                           module
==============  =====================================================  ==================================
closeups        some images show one or two large faces (portraits)     :meth:`Variety.face_layout`
backgrounds     real non-face pictures and procedural clutter           :mod:`rfcore.data.backgrounds`
distractors     face-like negatives: eyes without a face, skin blobs    :mod:`rfcore.data.backgrounds`
attire          neck, shoulders and clothes, long hair, hats            :mod:`rfcore.data.attire`
details         skin texture, eyebrows, eyes, nostrils, lips, beards    :mod:`rfcore.data.details`
occluders       glasses, sunglasses, masks, hands, objects              :mod:`rfcore.data.occluders`
degrade         hard shadows, colour casts, blur, noise, JPEG, grey     :mod:`rfcore.data.degrade`
==============  =====================================================  ==================================

Only ``closeups`` changes the ground truth (faces, sizes); an occluder over a landmark clears its flag in
:attr:`~rfcore.data.synthetic.SyntheticImage.visible`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rfcore.config import VARIETY_OPTIONS, variety_names
from rfcore.data.attire import add_bodies, add_hats
from rfcore.data.backgrounds import add_distractors, real_background
from rfcore.data.degrade import degrade
from rfcore.data.details import add_details
from rfcore.data.occluders import add_occluders

VARIETY_STREAM = 1
"""Third word of the options' seeds (the image's own draws use ``default_rng([seed, index])``)."""

CLOSEUP_PROBABILITY, CLOSEUP_FACES, CLOSEUP_SIZES = 0.3, 2, (0.45, 0.9)
"""With ``closeups``: the share of images that are close-ups, their largest number of faces, and the range of
face sizes as fractions of the short image side (a photograph's large faces, whose eyes are not faces)."""


@dataclass(frozen=True)
class Variety:
    """Which options of the module docstring are on (all off: the plain synthetic faces)."""

    closeups: bool = False
    backgrounds: bool = False
    distractors: bool = False
    attire: bool = False
    details: bool = False
    occluders: bool = False
    degrade: bool = False

    @classmethod
    def from_names(cls, names) -> Variety:
        """The options named in ``names`` (``"all"`` for every one).

        Raises:
            ValueError: For an unknown name, listing the known ones.
        """
        return cls(**{name: True for name in variety_names(names)})

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the options that are on, in :data:`~rfcore.config.VARIETY_OPTIONS` order."""
        return tuple(name for name in VARIETY_OPTIONS if getattr(self, name))

    def __bool__(self) -> bool:
        return bool(self.names)

    def face_layout(self, key: tuple[int, int], count: int, face_range: tuple[float, float],
                    image_size: tuple[int, int]) -> tuple[int, tuple[float, float]]:
        """The number of faces and their size range for image ``key = (seed, index)``: a close-up's, or as given."""
        if not self.closeups or count == 0 or option_rng(key, "closeups").random() >= CLOSEUP_PROBABILITY:
            return count, face_range
        short = min(image_size)
        return min(count, CLOSEUP_FACES), (CLOSEUP_SIZES[0] * short, CLOSEUP_SIZES[1] * short)

    def vary_background(self, background: np.ndarray, key: tuple[int, int], boxes: np.ndarray,
                        landmarks: np.ndarray, skin: np.ndarray) -> np.ndarray:
        """What lies behind the faces: pictures, distractors, bodies and hair, ``(H, W, 3)`` uint8.

        Args:
            background: ``(H, W, 3)`` uint8 procedural background (before hair).
            key: ``(seed, index)`` of the image.
            boxes: ``(F, 4)`` face boxes.
            landmarks: ``(F, 5, 2)`` their landmarks.
            skin: ``(F, 3)`` mean albedo of each face in ``[0, 1]``.
        """
        if self.backgrounds:
            background = real_background(background, option_rng(key, "backgrounds"))
        if self.distractors:
            background = add_distractors(background, option_rng(key, "distractors"), boxes)
        if self.attire:
            background = add_bodies(background, option_rng(key, "attire"), boxes, landmarks, skin)
        return background

    def vary_faces(self, image: np.ndarray, alpha: np.ndarray, key: tuple[int, int], boxes: np.ndarray,
                   landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What lies on and over the faces, then the whole image's degradations.

        Args:
            image: ``(H, W, 3)`` uint8 composited image.
            alpha: ``(H, W)`` float32 opacity of the faces.
            key: ``(seed, index)`` of the image.
            boxes: ``(F, 4)`` face boxes.
            landmarks: ``(F, 5, 2)`` their landmarks.

        Returns:
            ``(H, W, 3)`` uint8 image and ``(F, 5)`` bool visibility of each landmark.
        """
        visible = np.ones(landmarks.shape[:2], bool)
        if self.details:
            image = add_details(image, alpha, option_rng(key, "details"), landmarks)
        if self.attire:
            image = add_hats(image, option_rng(key, "attire", stage=1), boxes, landmarks)
        if self.occluders:
            image, visible = add_occluders(image, alpha, option_rng(key, "occluders"), boxes, landmarks)
        if self.degrade:
            image = degrade(image, option_rng(key, "degrade"))
        return image, visible


def option_rng(key: tuple[int, int], name: str, stage: int = 0) -> np.random.Generator:
    """The generator of option ``name`` (its ``stage``-th use) on image ``key = (seed, index)``."""
    return np.random.default_rng([*key, VARIETY_STREAM, VARIETY_OPTIONS.index(name), stage])

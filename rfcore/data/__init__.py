"""Training data: WIDER FACE annotations, synthetic faces, augmentation and batching.

:mod:`rfcore.data.widerface` reads a ``label.txt`` + ``images/`` folder into
:class:`~rfcore.data.sample.FaceSample` s, :mod:`rfcore.data.synthetic` draws
rendered faces with exact ground truth in the same format (no download; its
scenes from :mod:`rfcore.data.procedural` and :mod:`rfcore.data.placement`),
:mod:`rfcore.data.augment` applies the paper's augmentation, and
:mod:`rfcore.data.collate` batches samples with different numbers of faces
into network input::

    dataset = WiderFace("widerface/train", TrainTransform.from_config(cfg), seed=0)
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for batch in face_loader(dataset, cfg, batch_size=8, num_workers=4, seed=epoch):
            output = model(batch.images)
            targets = assign(batch.faces)  # rfcore.matching.TargetAssigner
"""

from rfcore.data.augment import (
    CropWindow,
    TrainTransform,
    crop,
    hflip,
    photometric_distort,
    random_square_crop,
    resize,
    square_crop_window,
)
from rfcore.data.collate import TrainBatch, collate_faces, face_loader
from rfcore.data.sample import MISSING, FaceSample
from rfcore.data.synthetic import SyntheticFaces, SyntheticImage
from rfcore.data.widerface import LabelEntry, LabelFile, WiderFace, read_label_file

__all__ = [
    "MISSING",
    "CropWindow",
    "FaceSample",
    "LabelEntry",
    "LabelFile",
    "SyntheticFaces",
    "SyntheticImage",
    "TrainBatch",
    "TrainTransform",
    "WiderFace",
    "collate_faces",
    "crop",
    "face_loader",
    "hflip",
    "photometric_distort",
    "random_square_crop",
    "read_label_file",
    "resize",
    "square_crop_window",
]

"""Evaluation: the WIDER FACE protocol in numpy, and five-landmark NME.

* :mod:`~rfcore.evaluation.truth`: ground truth from the official ``.mat``
  files (easy / medium / hard), a ``label.txt`` set, or in-memory samples;
* :mod:`~rfcore.evaluation.predictions`: detections in memory or as the
  official one text file per image;
* :mod:`~rfcore.evaluation.protocol`: the toolbox's AP at IoU 0.5 over 1,000
  score thresholds, one pass per image;
* :mod:`~rfcore.evaluation.landmarks`: NME, the cumulative error distribution
  and the failure rate [paper §4.5];
* :mod:`~rfcore.evaluation.run`: run a detector over a set and score it;
* :mod:`~rfcore.evaluation.mesh`: detected meshes against the synthetic faces'
  exact vertices and poses;
* :mod:`~rfcore.bench.evaluation`: ``rfcore bench eval``, against a loop over
  thresholds.

``rfcore eval`` (:mod:`rfcore.cli.evaluation`) puts them together on the command
line; :mod:`rfcore.viz.evaluation` draws the curves.
"""

from rfcore.evaluation.landmarks import (
    FAILURE_NME,
    LandmarkResult,
    ced_curve,
    evaluate_landmarks,
    failure_rate,
    landmark_nme,
)
from rfcore.evaluation.predictions import ImagePredictions, read_prediction_file, read_predictions, write_predictions
from rfcore.evaluation.protocol import IOU_THRESHOLD, THRESHOLDS, PRCurve, evaluate, voc_ap, wider_iou
from rfcore.evaluation.run import Evaluation, detect_images, evaluate_all, evaluate_samples, image_paths
from rfcore.evaluation.truth import (
    ALL_FACES,
    MAT_FILES,
    WIDER_SUBSETS,
    GroundTruth,
    load_label_file,
    load_wider_mat,
    truth_from_samples,
)

__all__ = [
    "ALL_FACES",
    "FAILURE_NME",
    "IOU_THRESHOLD",
    "MAT_FILES",
    "THRESHOLDS",
    "WIDER_SUBSETS",
    "Evaluation",
    "GroundTruth",
    "ImagePredictions",
    "LandmarkResult",
    "PRCurve",
    "ced_curve",
    "detect_images",
    "evaluate",
    "evaluate_all",
    "evaluate_landmarks",
    "evaluate_samples",
    "failure_rate",
    "image_paths",
    "landmark_nme",
    "load_label_file",
    "load_wider_mat",
    "read_prediction_file",
    "read_predictions",
    "truth_from_samples",
    "voc_ap",
    "wider_iou",
    "write_predictions",
]

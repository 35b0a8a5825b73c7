"""rfcore.viz.loss.render_loss and the loss explorer on a hand-sized layout with known terms."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from rfcore.config import get_config
from rfcore.model import RetinaFaceOutput
from rfcore.viz import draw
from rfcore.viz.loss import render_loss
from rfcore.viz.widgets import loss_explorer

# P3 (stride 8, one 16 px anchor per cell) and P4 (stride 16, 32 px): 256 + 64 anchors on a 128x128 image.
CFG = replace(get_config("paper"), strides=(8, 16), anchor_sizes=((16.0,), (32.0,)), variances=(0.1, 0.2),
              shared_heads=False)
IMAGE = np.full((128, 128, 3), 90, dtype=np.uint8)
FACE = torch.tensor([[76.0, 76.0, 92.0, 92.0]])  # exactly the P3 anchor of cell (row 10, col 10)
POSITIVE_ANCHOR = 10 * 16 + 10
HARD = {13 * 16 + 2: 1.0, 14 * 16 + 5: 2.0, 15 * 16 + 9: 3.0}  # negatives with a face logit: the hardest
EASIER = {12 * 16 + 2: 0.5}  # harder than the rest, easier than HARD


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def make_output() -> RetinaFaceOutput:
    face_logit = torch.zeros(320)
    for anchor, z in {**HARD, **EASIER}.items():
        face_logit[anchor] = z
    logits = torch.stack([torch.zeros(320), face_logit], dim=-1)[None]  # (1, A, 2)
    box = torch.zeros(1, 320, 4)
    box[0, POSITIVE_ANCHOR, 0] = 1.0  # the exact anchor's target is 0: smooth-L1 0.5
    return RetinaFaceOutput(logits, box, torch.zeros(1, 320, 10))


OUTPUT = make_output()


def test_terms_by_hand_and_the_caption():
    rendering = render_loss(IMAGE, OUTPUT, FACE, None, CFG, lambda_box=2.0, lambda_pixel=0.1,
                            pixel=torch.tensor(0.3))
    info = rendering.info
    assert rendering.ok
    # one positive, its four edge neighbours (IoU 1/3) ignored, the rest negative
    assert (info["positive"], info["ignored"], info["negative"]) == (1, 4, 315)
    assert info["selected"] == 3 and info["selected_mask"].nonzero().flatten().tolist() == sorted(HARD)
    cls = math.log(2) + sum(softplus(z) for z in HARD.values())  # positives + 3 hardest negatives, / 1 positive
    assert info["terms"]["cls"] == pytest.approx(cls, rel=1e-6)
    assert info["terms"]["box"] == pytest.approx(0.5)
    assert info["terms"]["pts"] == 0.0  # no landmarks
    assert info["weighted"] == pytest.approx({"cls": cls, "box": 1.0, "pts": 0.0, "pixel": 0.03})
    assert info["terms"]["total"] == pytest.approx(cls + 1.0 + 0.03, rel=1e-6)
    assert "OHEM 3:1 keeps the 3 hardest negatives" in rendering.caption
    assert "λ1 L_box     = 2 x 0.5000 = 1.0000" in rendering.caption
    assert "λ3 L_pixel   = 0.1 x 0.3000 = 0.0300" in rendering.caption


def test_the_ohem_ratio_decides_which_negatives_train_l_cls():
    none = render_loss(IMAGE, OUTPUT, FACE, None, CFG, ohem_ratio=0).info
    assert none["selected"] == 0 and none["terms"]["cls"] == pytest.approx(math.log(2))
    four = render_loss(IMAGE, OUTPUT, FACE, None, CFG, ohem_ratio=4).info
    assert four["selected_mask"].nonzero().flatten().tolist() == sorted({**HARD, **EASIER})


def test_the_picture_shows_each_kind_of_anchor():
    rendering = render_loss(IMAGE, OUTPUT, FACE, None, CFG)
    picture = rendering.image

    def pixel(x, y):
        return tuple(int(c) for c in picture[y, x])

    assert pixel(76, 84) == draw.FACE_COLOR  # the face (over its positive anchor)
    assert pixel(68, 84) == draw.IGNORED_COLOR  # left edge of the ignored anchor centred at (76, 84)
    for anchor in HARD:  # a dot at the centre of every mined negative
        row, col = divmod(anchor, 16)
        assert pixel(8 * col + 4, 8 * row + 4) == draw.NEGATIVE_COLOR
    row, col = divmod(next(iter(EASIER)), 16)
    assert pixel(8 * col + 4, 8 * row + 4) == (90, 90, 90)  # not mined: not drawn
    assert "(no mesh branch)" in rendering.caption


@pytest.mark.parametrize("weights, message", [
    ({"lambda_box": -1.0}, "lambda_box must be a finite number >= 0"),
    ({"lambda_pixel": float("nan")}, "lambda_pixel must be a finite number >= 0"),
    ({"ohem_ratio": 2.5}, "ohem_ratio must be a whole number >= 0"),
])
def test_bad_weights_give_a_message_not_an_error(weights, message):
    rendering = render_loss(IMAGE, OUTPUT, FACE, None, CFG, **weights)
    assert not rendering.ok and message in rendering.message
    assert rendering.image.shape == IMAGE.shape


def test_a_face_outside_the_image_gives_a_message():
    rendering = render_loss(IMAGE, OUTPUT, [[100.0, 100.0, 140.0, 140.0]], None, CFG)
    assert "does not lie inside the image" in rendering.message


def test_loss_explorer_starts_at_the_preset_and_rerenders():
    explorer = loss_explorer(IMAGE, OUTPUT, FACE, None, CFG)
    values = {name: control.value for name, control in explorer.controls.items()}
    assert values == pytest.approx({"lambda_box": CFG.lambda_box, "lambda_pts": CFG.lambda_pts,
                                    "lambda_pixel": CFG.lambda_pixel, "ohem_ratio": CFG.ohem_ratio})
    explorer.controls["ohem_ratio"].value = 4
    expected = render_loss(IMAGE, OUTPUT, FACE, None, CFG, CFG.lambda_box, CFG.lambda_pts, CFG.lambda_pixel, 4)
    assert explorer.image.value == draw.to_png(expected.image)
    assert "OHEM 4:1 keeps the 4 hardest negatives" in explorer.caption.value

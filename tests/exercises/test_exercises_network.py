"""The checkers of notebook 05 pass the solutions, catch the typical mistakes and report a stub."""

import pytest
import torch
import torch.nn.functional as F

from rfcore.exercises import solutions
from rfcore.exercises.check import NOT_IMPLEMENTED, PASSED, RAISED, WRONG
from rfcore.exercises.network import check_receptive_field, check_top_down, reference_top_down

CHECKERS = {"receptive_field": check_receptive_field, "top_down": check_top_down}


def _stub(*args):
    raise NotImplementedError  # your code here


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_the_solution_passes_and_a_stub_is_not_implemented_yet(name, capsys):
    solved, stubbed = CHECKERS[name](getattr(solutions, name)), CHECKERS[name](_stub)
    assert solved.status == PASSED, solved.message
    assert stubbed.status == NOT_IMPLEMENTED and stubbed.message.startswith(f"{name}: not implemented yet")
    assert capsys.readouterr().out == f"{solved.message}\n{stubbed.message}\n"


def _jump_first(layers):
    """Multiplies by the layer's own stride: the jump is updated before the size."""
    size, jump = 1, 1
    for kernel, stride, dilation in layers:
        jump *= stride
        size += (kernel - 1) * dilation * jump
    return size, jump


def _no_dilation(layers):
    size, jump = 1, 1
    for kernel, stride, _ in layers:
        size += (kernel - 1) * jump
        jump *= stride
    return size, jump


def _sum_of_kernels(layers):
    """Ignores the strides altogether."""
    return 1 + sum(k - 1 for k, _, _ in layers), 1


@pytest.mark.parametrize(("mistake", "case"), [
    (_jump_first, "a 3x3 with stride 2, then a 3x3"),
    (_no_dilation, "a dilated 3x3"),
    (_sum_of_kernels, "a 1x1 convolution with stride 2"),
])
def test_receptive_field_mistakes_are_caught(mistake, case):
    verdict = check_receptive_field(mistake)
    assert verdict.status == WRONG and f"'{case}'" in verdict.message


def test_receptive_field_names_the_first_failing_case_with_its_hint():
    verdict = check_receptive_field(lambda layers: (0, 1))
    assert "'no layer at all'" in verdict.message and "start from size 1" in verdict.message


def test_reference_top_down_is_lateral_plus_nearest_upsampling():
    coarse, lateral = torch.randn(2, 3, 3, 4), torch.randn(2, 3, 5, 8)
    expected = lateral + F.interpolate(coarse, size=(5, 8), mode="nearest")
    torch.testing.assert_close(reference_top_down(coarse, lateral), expected)
    # by hand: a 1x1 coarse map adds its value everywhere
    torch.testing.assert_close(reference_top_down(torch.full((1, 1, 1, 1), 2.0), torch.zeros(1, 1, 2, 2)),
                               torch.full((1, 1, 2, 2), 2.0))


@pytest.mark.parametrize(("mistake", "status", "case"), [
    (lambda c, lat: lat + F.interpolate(c, size=lat.shape[-2:], mode="bilinear"), WRONG, "2x2 onto 4x4"),
    (lambda c, lat: lat + F.interpolate(c, scale_factor=2, mode="nearest"), RAISED, "3x3 onto 5x5"),
    (lambda c, lat: F.interpolate(c, size=lat.shape[-2:], mode="nearest"), WRONG, "a 1x1 map onto 2x2"),
])
def test_top_down_mistakes_are_caught(mistake, status, case):
    verdict = check_top_down(mistake)
    assert verdict.status == status and f"'{case}" in verdict.message

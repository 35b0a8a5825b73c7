"""rfcore.mesh.inference: the folded decoder gives the decoder's meshes, and detection with the mesh its full-head meshes."""

import pytest
import torch

from rfcore.assets import IMAGES, load_image
from rfcore.config import MESH_CROP_SIZE, get_config
from rfcore.detector import Detector
from rfcore.image import letterbox, preprocess
from rfcore.mesh import MeshDecoder, build_hierarchy, grow_boxes, project_mesh_params, uncrop_points
from rfcore.mesh.chebconv import scaled_laplacian
from rfcore.mesh.inference import InferenceDecoder, chebyshev_matrices
from rfcore.postprocess import cached_anchors, candidates, suppress
from rfcore.weights import load_mesh_model


def trained_looking(decoder: MeshDecoder) -> MeshDecoder:
    """``decoder`` with a non-zero last layer (a fresh one outputs the template whatever the code)."""
    torch.manual_seed(1)
    torch.nn.init.normal_(decoder.head.weight, std=0.1)
    torch.nn.init.normal_(decoder.head.bias, std=0.1)
    return decoder.eval()


@pytest.mark.parametrize("channels, K", [((64, 32, 32, 16), 6), ((8, 8, 4, 4), 3), ((8, 8, 4, 4), 1)])
def test_the_folded_decoder_gives_the_decoder_s_meshes(channels, K):
    torch.manual_seed(0)
    decoder = trained_looking(MeshDecoder(build_hierarchy(), channels=channels, K=K))
    code = torch.randn(5, 128)
    assert InferenceDecoder(decoder)(code[:0]).vertices.shape == (0, 289, 3)  # no face, no mesh
    with torch.no_grad():
        expected, got = decoder(code), InferenceDecoder(decoder)(code)
    assert (expected.vertices - decoder.template_vertices).abs().max() > 0.1  # the last layer moves the vertices
    torch.testing.assert_close(got.vertices, expected.vertices, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.colours, expected.colours, rtol=0, atol=1e-5)


def test_chebyshev_matrices_follow_the_recursion_on_a_vector():
    adjacency = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.float32).to_sparse()
    laplacian = scaled_laplacian(adjacency)
    x = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    dense = laplacian.to_dense().double()
    terms = [x, dense @ x]
    for _ in range(2, 5):
        terms.append(2 * dense @ terms[-1] - terms[-2])
    matrices = chebyshev_matrices(laplacian, 5)  # (5, 3, 3)
    assert matrices.shape == (5, 3, 3)
    torch.testing.assert_close(matrices @ x, torch.stack(terms))


def test_the_folded_decoder_refuses_a_bad_code():
    with pytest.raises(ValueError, match=r"expected \(B, 128\) codes, got \(2, 7\)"):
        InferenceDecoder(MeshDecoder(build_hierarchy()))(torch.zeros(2, 7))


@pytest.mark.slow
def test_detection_with_the_mesh_gives_the_full_head_s_meshes():
    """The head at the candidates' anchors and the folded decoder against the head on every anchor and the decoder."""
    cfg = get_config("mobilenet0.25")
    image = letterbox(load_image(IMAGES / "group.jpg"), (480, 640))
    detector = Detector(mesh=True)
    faces = detector.detect(image, color="RGB")
    model, decoder, margin = load_mesh_model(None, cfg)
    with torch.no_grad():
        output = model(preprocess([image], cfg.pixel_mean_bgr))  # the mesh head on every anchor
        assert output.mesh_params.shape[1] == len(cached_anchors(cfg, (480, 640)))
        settings = detector.config
        found = candidates(output, cached_anchors(cfg, (480, 640)), cfg.variances, settings.threshold, settings.top_k)
        kept = suppress(found, 1, settings.nms_iou, settings.max_faces)[0]
        crop = (MESH_CROP_SIZE, MESH_CROP_SIZE)
        meshes = uncrop_points(project_mesh_params(decoder, kept.mesh_params, crop), grow_boxes(kept.boxes, margin), crop)
    assert len(faces) == len(kept.scores) >= 5
    torch.testing.assert_close(torch.tensor([face.box for face in faces]), kept.boxes, rtol=0, atol=1e-3)
    torch.testing.assert_close(torch.tensor([face.mesh for face in faces]), meshes, rtol=0, atol=1e-3)

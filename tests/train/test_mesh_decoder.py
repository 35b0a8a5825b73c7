"""Tests of rfcore.train.mesh_decoder, the shipped mesh decoder and ``rfcore mesh pretrain``."""


import pytest
import torch

from rfcore.assets import ASSETS
from rfcore.cli import main
from rfcore.mesh import MeshDecoder, build_hierarchy
from rfcore.train.mesh_decoder import (
    FaceEncoder,
    PretrainConfig,
    code_distribution,
    evaluate,
    face_sizes,
    load_encoder,
    model_faces,
    pretrain_decoder,
    vertex_errors,
)
from rfcore.weights import DECODER_LAYOUT_KEY, MESH_DECODER_FILE, MESH_ENCODER_FILE, load_mesh_decoder
from rfcore.weights_io import load_weights, read_metadata, save_weights

SHIPPED = ASSETS / "weights"


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="'steps': 0"):
        PretrainConfig(steps=0)
    with pytest.raises(ValueError, match="'lr': -1"):
        PretrainConfig(lr=-1)


def test_encoder_gives_the_template_code_zero(template):
    encoder = FaceEncoder(template.num_vertices)
    code = encoder(template.vertices[None], template.colours[None])
    assert code.shape == (1, 128) and torch.equal(code, torch.zeros(1, 128))


def test_face_size_and_vertex_errors_are_relative_to_sqrt_w_h(template):
    vertices = template.vertices[None]  # 1.7 wide, 2 tall
    assert face_sizes(vertices).item() == pytest.approx((1.7 * 2.0) ** 0.5, rel=1e-4)
    moved = vertices + torch.tensor([0.03, 0.04, 0.0])  # every vertex 0.05 away
    assert torch.allclose(vertex_errors(moved, vertices), torch.full((1, 289), 0.05 / 3.4**0.5), atol=1e-6)


def test_held_out_faces_differ_from_training_faces():
    train, held_out = model_faces(4, seed=0, stream=0), model_faces(4, seed=0, stream=1)
    assert train.vertices.shape == held_out.vertices.shape == (4, 289, 3)
    assert not torch.allclose(train.vertices, held_out.vertices)
    assert torch.equal(model_faces(4, seed=0, stream=0).colours, train.colours)


@pytest.mark.slow
def test_a_short_pre_training_beats_the_template():
    config = PretrainConfig(steps=150, batch_size=16, train_faces=64, held_out_faces=32)
    untrained = MeshDecoder(build_hierarchy())  # outputs the template whatever the code
    held_out = model_faces(32, seed=0, stream=1)
    before = evaluate(untrained, FaceEncoder(289), held_out)
    decoder, encoder, errors = pretrain_decoder(config)
    assert errors == evaluate(decoder, encoder, held_out)
    assert errors.vertex < 0.7 * before.vertex and errors.colour < 0.7 * before.colour


def test_the_shipped_decoder_rebuilds_held_out_faces_within_one_percent():
    decoder = load_mesh_decoder(SHIPPED / MESH_DECODER_FILE)
    encoder = load_encoder(SHIPPED / MESH_ENCODER_FILE)
    assert not encoder.training
    errors = evaluate(decoder, encoder, model_faces(200, seed=0, stream=1))
    assert errors.vertex < 0.01
    assert errors.colour < 0.01  # 2.5 grey levels of 255


def test_a_decoder_of_another_layout_is_refused_naming_both(tmp_path):
    other = MeshDecoder(build_hierarchy(), channels=(32, 16, 16, 8))
    path = tmp_path / MESH_DECODER_FILE
    save_weights(other.state_dict(), path, {DECODER_LAYOUT_KEY: other.layout})
    with pytest.raises(ValueError, match=r"saved for .*'vertices 9-25-81-289, channels 32-16-16-8, K 6, code 128', "
                       r"but rfcore builds 'vertices 9-25-81-289, channels 64-32-32-16, K 6, code 128'"):
        load_mesh_decoder(path)


@pytest.mark.slow
def test_pretrain_command_writes_a_decoder_that_loads(tmp_path, capsys):
    status = main(["mesh", "pretrain", "--out", str(tmp_path), "--steps", "3", "--batch-size", "4",
                   "--train-faces", "8", "--held-out-faces", "4", "--quiet"])
    assert status == 0
    assert "mean vertex error" in capsys.readouterr().out
    metadata = read_metadata(tmp_path / MESH_DECODER_FILE)
    assert metadata[DECODER_LAYOUT_KEY] == MeshDecoder(build_hierarchy()).layout
    assert "--steps 3" in metadata["source"] and metadata["license"].startswith("MIT")
    load_mesh_decoder(tmp_path / MESH_DECODER_FILE)
    load_weights(FaceEncoder(289), tmp_path / MESH_ENCODER_FILE)


def test_pretrain_command_refuses_bad_values(tmp_path, capsys):
    assert main(["mesh", "pretrain", "--out", str(tmp_path), "--steps", "0"]) == 2
    assert "rfcore mesh pretrain: need positive integer counts" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_code_distribution_matches_the_codes_mean_and_covariance():
    encoder = FaceEncoder(289)
    faces = model_faces(300, seed=0, stream=1)
    with torch.no_grad():
        codes = encoder(*faces).double()  # (300, 128)
    distribution = code_distribution(encoder, faces)
    assert torch.allclose(distribution.mean.double(), codes.mean(dim=0), atol=1e-5)
    root = distribution.root.double()
    assert torch.allclose(root @ root.T, torch.cov(codes.T), atol=1e-4 * float(codes.var(dim=0).max()))
    assert torch.allclose(distribution.std.double(), codes.std(dim=0), rtol=1e-3)
    drawn = distribution.sample(4000, torch.Generator().manual_seed(0)).double()
    assert torch.allclose(drawn.std(dim=0), codes.std(dim=0), rtol=0.1)
    first = distribution.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(first, distribution.sample(5, torch.Generator().manual_seed(0)))  # seeded: repeatable
    # the same normals as the first rows of the larger draw; the product may take another kernel for 4000 rows
    assert torch.allclose(drawn[:5], first.double(), atol=1e-5)


"""DiT architecture: official checkpoint layout, fx traceability, the reference model."""

from __future__ import annotations

import pytest
import torch
from torch import fx

from gocopt.models import DIT_CONFIGS, dit
from gocopt.models.reference import randomize_adaln


def test_dit_xl2_state_dict_matches_official_checkpoint_layout():
    with torch.device("meta"):
        model = dit("DiT-XL/2")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "pos_embed": (1, 256, 1152),
        "x_embedder.proj.weight": (1152, 4, 2, 2),
        "x_embedder.proj.bias": (1152,),
        "t_embedder.mlp.0.weight": (1152, 256),
        "t_embedder.mlp.2.weight": (1152, 1152),
        "y_embedder.embedding_table.weight": (1001, 1152),
        "final_layer.adaLN_modulation.1.weight": (2304, 1152),
        "final_layer.linear.weight": (32, 1152),
    }
    for i in range(28):
        expected.update({
            f"blocks.{i}.attn.qkv.weight": (3456, 1152),
            f"blocks.{i}.attn.proj.weight": (1152, 1152),
            f"blocks.{i}.mlp.fc1.weight": (4608, 1152),
            f"blocks.{i}.mlp.fc2.weight": (1152, 4608),
            f"blocks.{i}.adaLN_modulation.1.weight": (6912, 1152),
        })
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert not any("norm" in k for k in shapes), "DiT's LayerNorms have no affine parameters"
    assert len(shapes) == 12 + 28 * 10  # 10 tensors per block, 12 outside: nothing more, nothing less


def test_strict_load_of_an_official_style_state_dict():
    source = dit("DiT-S/8", input_size=16)
    target = dit("DiT-S/8", input_size=16)
    target.load_state_dict(source.state_dict(), strict=True)
    x, t, y = source.example_inputs()
    assert torch.equal(source.eval()(x, t, y), target.eval()(x, t, y))


@pytest.mark.parametrize("name", [n for n in DIT_CONFIGS])
def test_every_named_config_traces_and_matches_eager(name):
    torch.manual_seed(0)
    model = dit(name, input_size=16 if name.startswith("DiT-") and "Digits" not in name and "Tiny" not in name else 8)
    randomize_adaln(model)
    model.eval()
    gm = fx.symbolic_trace(model)
    x, t, y = model.example_inputs(batch_size=2)
    with torch.no_grad():
        assert torch.equal(gm(x, t, y), model(x, t, y))


def test_fresh_dit_blocks_are_identities_and_randomized_ones_are_not():
    model = dit("DiT-Tiny").eval()
    x = torch.randn(2, 16, 32)
    c = torch.randn(2, 32)
    assert torch.equal(model.blocks[0](x, c), x)  # adaLN-Zero
    randomize_adaln(model)
    assert not torch.equal(model.blocks[0](x, c), x)


def test_label_embedder_has_a_null_class_and_drops_labels_only_in_training():
    model = dit("DiT-Tiny")
    table = model.y_embedder.embedding_table
    assert table.num_embeddings == model.num_classes + 1
    labels = torch.zeros(1000, dtype=torch.long)
    model.y_embedder.train()
    dropped = (model.y_embedder.token_drop(labels) == model.num_classes).float().mean().item()
    assert 0.05 < dropped < 0.15
    model.y_embedder.eval()
    assert torch.equal(model.y_embedder(labels), table(labels))


def test_reference_model_ships_and_loads_offline(reference_model):
    assert not reference_model.training
    cfg = reference_model.config
    assert (cfg.depth, cfg.hidden_size, cfg.grid_size**2) == (12, 128, 16)
    x, t, y = reference_model.example_inputs()
    assert reference_model(x, t, y).shape == x.shape


def test_the_third_model_ships_shaped_unlike_the_first_and_loads_offline():
    """patch1: the reference model's digits at patch size 1, 4× its tokens through a third of its depth."""
    from gocopt.models import model_by_name

    model = model_by_name("patch1")
    cfg = model.config
    assert not model.training and (cfg.depth, cfg.hidden_size, cfg.grid_size**2, cfg.patch_size) == (4, 128, 64, 1)
    x, t, y = model.example_inputs()
    assert model(x, t, y).shape == x.shape


def test_the_latent_autoencoder_maps_upsampled_digits_to_4x8x8_and_back_and_trains():
    """The second reference model's latent space: 32×32 pixels ↔ 4×8×8 latents, scaled to unit
    variance after training, decoded into [-1, 1]; a few training steps lower the reconstruction error."""
    import torch.nn.functional as F

    from examples.train_latent import train_autoencoder
    from gocopt.data import load_digits_images
    from gocopt.models.autoencoder import Autoencoder, upsample_digits

    images, _ = load_digits_images()
    pixels = upsample_digits(images[:64])
    assert pixels.shape == (64, 1, 32, 32) and pixels.min() >= -1 - 1e-6 and pixels.max() <= 1 + 1e-6
    torch.manual_seed(0)
    untrained = Autoencoder().eval()
    with torch.no_grad():
        assert untrained.encode(pixels).shape == (64, 4, 8, 8)
        before = F.mse_loss(untrained(pixels), pixels).item()
    torch.manual_seed(0)
    trained = train_autoencoder(pixels, steps=30, batch_size=32, lr=2e-3)
    with torch.no_grad():
        latents = trained.encode(pixels)
        decoded = trained.decode(latents)
    assert float(latents.std()) == pytest.approx(1.0, rel=1e-4)  # the scale SD's 0.18215 stands for
    assert decoded.abs().max() <= 1 and F.mse_loss(decoded, pixels).item() < before / 2

"""Models, Maxout, and what each init scheme leaves in the weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.build import build_model
from trainlab.config import compose
from trainlab.initializers import unit_max_difference
from trainlab.layers import Maxout
from trainlab.models import CNN, MLP, activation_layers, affine_layers


def test_maxout_takes_the_max_of_each_group_of_pieces():
    x = torch.tensor([[1.0, 5.0, -2.0, -3.0, 0.5, 0.4]], requires_grad=True)
    y = Maxout(pieces=2)(x)
    assert y.tolist() == [[5.0, -2.0, 0.5]]
    y.sum().backward()
    # the gradient flows to the winning piece of each unit only
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 0.0, 1.0, 0.0]]


def test_maxout_on_conv_maps_reduces_channels():
    x = torch.randn(4, 6, 5, 5)
    y = Maxout(pieces=3)(x)
    assert y.shape == (4, 2, 5, 5)
    assert torch.equal(y[:, 0], x[:, 0:3].amax(dim=1))


def test_maxout_doubles_the_layer_in_front():
    plain = MLP((10,), 3, depth=2, width=8, act_layer=nn.ReLU)
    maxout = MLP((10,), 3, depth=2, width=8, act_layer=Maxout)
    assert maxout.blocks[0].fc.out_features == 16
    assert maxout(torch.randn(5, 10)).shape == (5, 3)
    assert sum(p.numel() for p in maxout.blocks.parameters()) > 1.8 * sum(
        p.numel() for p in plain.blocks.parameters()
    )


def test_child_names_are_predictable():
    mlp = MLP((1, 8, 8), 10, depth=3, width=16)
    assert [n for n, _ in activation_layers(mlp)] == [
        "blocks.0.act",
        "blocks.1.act",
        "blocks.2.act",
    ]
    assert [n for n, _ in affine_layers(mlp)][-1] == "head"
    cnn = CNN((3, 32, 32), 10, width=4, stages=2, depth=2, head_width=8)
    names = [n for n, _ in activation_layers(cnn)]
    assert names == ["blocks.0.act", "blocks.1.act", "blocks.3.act", "blocks.4.act", "hidden.act"]
    assert cnn(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_one_activation_instance_per_call_site():
    mlp = MLP((4,), 2, depth=3, width=4)
    acts = [m for _, m in activation_layers(mlp)]
    assert len({id(m) for m in acts}) == len(acts)


WIDTH = 400  # large fan-in/fan-out so sample std is within a few % of the target


def weight_std(init: str, activation: str = "relu") -> float:
    model = build_model(
        compose(
            [f"init={init}", f"activation={activation}", f"model.width={WIDTH}", "model.depth=2"]
        ),
        (WIDTH,),
        10,
    )
    return model.blocks[1].fc.weight.std().item()  # a WIDTH x WIDTH layer


@pytest.mark.parametrize(
    ("init", "activation", "expected"),
    [
        ("small_random", "relu", 0.01),
        ("large_random", "relu", 1.0),
        ("xavier_normal", "tanh", math.sqrt(2 / (2 * WIDTH))),  # gain 1: Glorot's, the lecture's
        ("xavier_uniform", "tanh", math.sqrt(2 / (2 * WIDTH))),
        ("xavier_normal", "relu", math.sqrt(2 / (2 * WIDTH))),  # not Kaiming in disguise
        ("xavier_normal", "sigmoid", math.sqrt(2 / (2 * WIDTH))),
        ("lecun_normal", "selu", math.sqrt(1 / WIDTH)),
        ("lecun_normal", "relu", math.sqrt(1 / WIDTH)),
        ("kaiming_normal", "relu", math.sqrt(2 / WIDTH)),
        ("kaiming_uniform", "relu", math.sqrt(2 / WIDTH)),
        ("kaiming_normal", "leaky_relu", math.sqrt(2 / (1 + 0.01**2) / WIDTH)),
        ("kaiming_normal", "selu", math.sqrt(1 / WIDTH)),  # LeCun normal for self-normalisation
        ("kaiming_normal", "tanh", 5 / 3 / math.sqrt(WIDTH)),
        ("orthogonal", "relu", math.sqrt(2) / math.sqrt(WIDTH)),
        ("default", "relu", 1 / math.sqrt(3 * WIDTH)),  # torch: kaiming_uniform(a=sqrt(5))
    ],
)
def test_init_weight_std(init, activation, expected):
    assert weight_std(init, activation) == pytest.approx(expected, rel=0.05)


def test_zeros_init_leaves_units_identical_and_bias_setting_applies():
    model = build_model(compose(["init=zeros", "init.bias=0.01"]), (1, 8, 8), 10)
    assert unit_max_difference(model) == 0.0
    assert torch.all(model.blocks[0].fc.bias == 0.01)
    assert unit_max_difference(build_model(compose(["init=kaiming_normal"]), (1, 8, 8), 10)) > 0.1


def test_default_init_keeps_torch_biases():
    torch.manual_seed(0)
    model = build_model(compose(["init=default"]), (1, 8, 8), 10)
    assert model.blocks[0].fc.bias.abs().max() > 0


def test_the_classifier_gets_the_linear_gain():
    model = build_model(
        compose(
            ["init=kaiming_normal", "activation=relu", f"model.width={WIDTH}", "model.depth=1"]
        ),
        (WIDTH,),
        WIDTH,
    )
    assert model.head.weight.std().item() == pytest.approx(math.sqrt(1 / WIDTH), rel=0.05)
    assert model.blocks[0].fc.weight.std().item() == pytest.approx(math.sqrt(2 / WIDTH), rel=0.05)


def test_batch_norm_uses_batch_statistics_in_training_and_running_ones_in_eval():
    torch.manual_seed(0)
    model = build_model(compose(["norm=batch", "model.depth=1", "model.width=6"]), (4,), 3)
    bn = model.blocks[0].norm
    for _ in range(50):  # running statistics follow the training batches
        model(torch.randn(32, 4) * 3 + 1)
    x = torch.randn(16, 4) * 3 + 1
    pre = model.blocks[0].fc(x)
    model.train()
    train_out = bn(pre)
    assert train_out.mean(0).abs().max() < 1e-5  # the batch's own statistics: unit gaussian
    model.eval()
    expected = (pre - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    assert torch.allclose(bn(pre), expected, atol=1e-5)
    assert not torch.allclose(bn(pre), train_out, atol=1e-3)
    with torch.no_grad():
        a, b = model(x[:1]), model(x)[:1]
    assert torch.allclose(a, b, atol=1e-6)  # eval output of an example ignores its batch

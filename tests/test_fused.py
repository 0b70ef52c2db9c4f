"""Seeds fused into one model train as their separate runs do (issue 11), on real digits."""

from __future__ import annotations

import json

import pytest
import torch

from trainlab.config import compose
from trainlab.fused import train_fused
from trainlab.fused_models import FusionUnsupported, fuse
from trainlab.fused_plan import fusable_parts, seed_only, why_not_fusable, why_not_worth_it
from trainlab.train import prepare, train

QUIET = ["stats.enabled=false", "trainer.progress=never", "threads=1"]


def configs(seeds, *overrides):
    return [compose([*QUIET, *overrides, f"seed={s}"]) for s in seeds]


def run_both(cfgs, tmp_path):
    fused = train_fused(cfgs, [tmp_path / "fused" / str(c.seed) for c in cfgs])
    separate = [train(c, tmp_path / "separate" / str(c.seed)) for c in cfgs]
    return fused, separate


def history(tmp_path, kind, seed):
    return json.loads((tmp_path / kind / str(seed) / "history.json").read_text())


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["norm=batch", "activation=tanh"],
        ["activation=maxout"],
        ["model=cnn", "model.width=4", "norm=batch", "augmentation=crop_flip"],
    ],
)
def test_each_members_first_step_loss_equals_its_separate_run(extra, tmp_path):
    cfgs = configs([0, 1, 2], "trainer.max_steps=1", *extra)
    fused, separate = run_both(cfgs, tmp_path)
    for f, s in zip(fused, separate, strict=True):
        assert f["status"] == s["status"] == "completed"
        assert f["initial_loss"] == pytest.approx(s["initial_loss"], abs=1e-5)
        assert f["fused"] == {"members": 3, "seeds": [0, 1, 2]}
    for seed in (0, 1, 2):
        (f_step,), (s_step,) = (history(tmp_path, k, seed)["steps"] for k in ("fused", "separate"))
        assert f_step["step"] == s_step["step"] == 1
        assert f_step["train_loss"] == pytest.approx(s_step["train_loss"], abs=1e-5)


def test_a_five_seed_sweep_ends_where_the_separate_runs_end(tmp_path):
    cfgs = configs(range(5), "trainer.epochs=2")
    fused, separate = run_both(cfgs, tmp_path)
    for f, s in zip(fused, separate, strict=True):
        assert f["status"] == "completed"
        assert f["test_acc"] == pytest.approx(s["test_acc"], abs=0.01)
        assert f["best_val_acc"] == pytest.approx(s["best_val_acc"], abs=0.01)
        assert f["steps"] == s["steps"] and f["epochs"] == s["epochs"]
        assert f["steps_to_target"] == s["steps_to_target"]
        assert f["metrics"].keys() == s["metrics"].keys()
    # each member's share of the group's training steps and evaluation, as a run's own time
    own = [f["train_time_s"] + f["eval_time_s"] for f in fused]
    assert all(f["eval_time_s"] > 0 for f in fused) and len(set(own)) == 1
    assert 0 < 5 * own[0] < fused[0]["wall_time_s"]
    for seed in range(5):  # every job its own files, as if run alone
        run_dir = tmp_path / "fused" / str(seed)
        assert list(run_dir.glob("events.out.tfevents.*"))
        assert {"summary.json", "history.json", "checkpoint.pt"} <= {
            p.name for p in run_dir.iterdir()
        }


def test_a_diverged_member_is_recorded_and_masked_while_the_others_go_on(tmp_path):
    # plain SGD at lr 1: seeds 0 and 2 blow up within the first epoch, 1 and 3 train
    cfgs = configs(range(4), "trainer.epochs=2", "optimizer=sgd", "optimizer.lr=1.0")
    fused, separate = run_both(cfgs, tmp_path)
    statuses = [f["status"] for f in fused]
    assert statuses == [s["status"] for s in separate]
    assert "diverged" in statuses and "completed" in statuses
    for f, s in zip(fused, separate, strict=True):
        assert f.get("diverged_at_step") == s.get("diverged_at_step")
        if f["status"] == "completed":
            assert f["test_acc"] == pytest.approx(s["test_acc"], abs=0.02)


def test_fusion_applies_only_to_seed_lr_and_init_differences():
    assert why_not_fusable(configs([0, 1])) is None
    assert "seed" in why_not_fusable(configs([0, 1]) + configs([1]))
    differ = [compose([*QUIET, "seed=0"]), compose([*QUIET, "seed=1", "trainer.batch_size=8"])]
    assert "differ" in why_not_fusable(differ)
    values = [compose([*QUIET, "seed=0"]), compose([*QUIET, "seed=0", "optimizer.lr=0.1"])]
    assert why_not_fusable(values) is None  # one seed, two learning rates
    assert why_not_fusable(values + [compose([*QUIET, "seed=0", "init=xavier_normal"])]) is None
    eta = ["scheduler=cosine", "scheduler.main.eta_min=1e-4"]
    lrs = [compose([*QUIET, *eta, f"optimizer.lr={lr}"]) for lr in (0.01, 0.1)]
    assert "eta_min" in why_not_fusable(lrs)  # lr + eta_min is not a multiple of the lr
    assert why_not_fusable([compose([*QUIET, *eta, f"seed={s}"]) for s in (0, 1)]) is None
    lrs = [compose([*QUIET, "optimizer=adagrad", "+optimizer.lr_decay=0.1", f"optimizer.lr={lr}"])
           for lr in (0.01, 0.1)]  # fmt: skip
    assert "lr_decay" in why_not_fusable(lrs)
    mixed = [*lrs, compose([*QUIET, "optimizer=adagrad", "+optimizer.lr_decay=0.1",
                            "optimizer.lr=0.01", "seed=1"])]  # fmt: skip
    assert seed_only(mixed) == [[0, 2]]  # what still fuses: the seeds of one lr
    assert why_not_fusable([compose(["seed=0"]), compose(["seed=1"])]) is None  # stats on
    assert why_not_fusable(configs([0, 1], "model=cnn")) is None
    assert "ema" in why_not_fusable(configs([0, 1], "trainer.ema_decay=0.9"))
    decays = [compose([*QUIET, *opt, f"regularizer.weight_decay={wd}"])
              for opt in ([], ["optimizer=adamw"]) for wd in (1e-4, 1e-2)]  # fmt: skip
    assert why_not_fusable(decays[:2]) is None  # Adam adds weight_decay * param to the gradient
    assert "decoupled" in why_not_fusable(decays[2:])  # AdamW decays the weights itself
    assert (
        why_not_fusable([compose([*QUIET, "optimizer=adamw", f"seed={s}"]) for s in (0, 1)]) is None
    )
    with pytest.raises(FusionUnsupported):
        train_fused(configs([0, 1], "trainer.ema_decay=0.9"), ["a", "b"])


def test_members_fit_each_preprocessing_once_and_get_their_own_copy():
    cfgs = configs([0, 1], "preprocess=zca") + configs([2], "preprocess=standardize")
    fitted: dict = {}
    got = [prepare(c, fitted) for c in cfgs]
    assert len(fitted) == 2  # zca once for both seeds, standardize once
    assert got[0][2] is not got[1][2]  # each member its own module
    for cfg, (_, _, preprocess, model) in zip(cfgs, got, strict=True):
        _, _, alone, alone_model = prepare(cfg)  # as its own run fits it and draws its init
        for a, b in zip(preprocess.state_dict().values(), alone.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for a, b in zip(model.parameters(), alone_model.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_layers_with_buffers_other_than_batch_norm_have_no_fused_form():
    models = [prepare(c)[3] for c in configs([0, 1])]
    for m in models:
        m.blocks[0].act.register_buffer("state", torch.zeros(1))
    with pytest.raises(FusionUnsupported, match="ReLU has parameters or buffers"):
        fuse(models, [torch.Generator() for _ in models])


def test_member_state_dict_is_the_unfused_models_own(tmp_path):
    models = [prepare(c)[3] for c in configs([5, 6], "norm=batch")]
    fused = fuse(models, [torch.Generator() for _ in models])
    for k, model in enumerate(models):
        state = fused.member_state_dict(k)
        assert state.keys() == model.state_dict().keys()
        for name, tensor in model.state_dict().items():
            torch.testing.assert_close(state[name], tensor)
    x = torch.rand(2, 7, 1, 8, 8)  # (K, B, C, H, W): member k sees x[k]
    fused.eval()
    for k, model in enumerate(models):
        torch.testing.assert_close(fused(x)[k], model.eval()(x[k]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "optimizer", [["optimizer=momentum"], ["optimizer=adam", "scheduler=cosine"]]
)
def test_members_differing_in_lr_init_and_weight_decay_train_as_their_separate_runs(
    optimizer, tmp_path
):
    values = [("0.01", "0.05", 0, "1e-3"), ("0.1", "0.1", 0, "0.05"), ("0.03", "0.02", 1, "0.0")]
    cfgs = [compose([*QUIET, *optimizer, "trainer.max_steps=12", f"optimizer.lr={lr}",
                     "init=small_random", f"init.weight.std={std}", f"seed={seed}",
                     "regularizer=l2", f"regularizer.weight_decay={wd}"])
            for lr, std, seed, wd in values]  # fmt: skip
    fused = train_fused(cfgs, [tmp_path / "fused" / str(i) for i in range(3)])
    separate = [train(c, tmp_path / "separate" / str(i)) for i, c in enumerate(cfgs)]
    assert fused[0]["fused"]["lr"] == [0.01, 0.1, 0.03]
    assert fused[0]["fused"]["weight_decay"] == [1e-3, 0.05, 0.0]
    assert [i["weight"]["std"] for i in fused[0]["fused"]["init"]] == [0.05, 0.1, 0.02]
    for i, (f, s) in enumerate(zip(fused, separate, strict=True)):
        assert f["status"] == s["status"] == "completed"
        assert f["initial_loss"] == pytest.approx(s["initial_loss"], abs=1e-5)
        f_ck, s_ck = (torch.load(tmp_path / k / str(i) / "checkpoint.pt", weights_only=False)
                      for k in ("fused", "separate"))  # fmt: skip
        for name in s_ck["model"]:  # rounding apart: Adam scales up that of small gradients
            # (seeds alone, fused, differ by up to 3e-5 here too)
            torch.testing.assert_close(
                f_ck["model"][name], s_ck["model"][name], atol=1e-4, rtol=1e-4
            )
        # its own lr in its optimiser, its schedule and its history, as its run has them
        for f_group, s_group in zip(f_ck["optimizer"]["param_groups"],
                                    s_ck["optimizer"]["param_groups"], strict=True):  # fmt: skip
            assert f_group["lr"] == pytest.approx(s_group["lr"], rel=1e-9)
            assert f_group["weight_decay"] == s_group["weight_decay"]
            assert f_group["initial_lr"] == pytest.approx(s_group["initial_lr"], rel=1e-9)
        assert f_ck["scheduler"]["base_lrs"] == pytest.approx(s_ck["scheduler"]["base_lrs"])
        assert f_ck["scheduler"]["_last_lr"] == pytest.approx(s_ck["scheduler"]["_last_lr"])
        f_hist, s_hist = (history(tmp_path, k, i) for k in ("fused", "separate"))
        assert [e["lr"] for e in f_hist["steps"]] == pytest.approx(
            [e["lr"] for e in s_hist["steps"]]
        )


def test_members_differing_in_activation_train_as_their_separate_runs(tmp_path):
    pairs = [("relu", 0), ("tanh", 0), ("gelu", 1), ("leaky_relu", 1)]
    cfgs = [compose([*QUIET, "trainer.max_steps=12", f"activation={a}", f"seed={s}"])
            for a, s in pairs]  # fmt: skip
    fused = train_fused(cfgs, [tmp_path / "fused" / str(i) for i in range(4)])
    separate = [train(c, tmp_path / "separate" / str(i)) for i, c in enumerate(cfgs)]
    assert fused[0]["fused"]["activation"] == [a for a, _ in pairs]
    for i, (f, s) in enumerate(zip(fused, separate, strict=True)):
        assert f["initial_loss"] == pytest.approx(s["initial_loss"], abs=1e-5)
        f_ck, s_ck = (torch.load(tmp_path / k / str(i) / "checkpoint.pt", weights_only=True)
                      for k in ("fused", "separate"))  # fmt: skip
        for name in s_ck["model"]:
            torch.testing.assert_close(
                f_ck["model"][name], s_ck["model"][name], atol=1e-5, rtol=1e-4
            )


def test_fusable_parts_split_by_the_layers_shapes():
    names = ["relu", "prelu", "tanh", "maxout", "prelu", "maxout", "selu"]
    cfgs = [compose([*QUIET, f"activation={a}", f"seed={i}"]) for i, a in enumerate(names)]
    assert why_not_fusable(cfgs) is None
    assert sorted(fusable_parts(cfgs)) == [[0, 2, 6], [1, 4], [3, 5]]
    with pytest.raises(FusionUnsupported, match="differ"):  # maxout widens the layer in front
        fuse([prepare(c)[3] for c in (cfgs[0], cfgs[3])], [torch.Generator()] * 2)
    depth = [compose([*QUIET, "seed=0"]), compose([*QUIET, "seed=1", "model.depth=5"])]
    assert "differ" in why_not_fusable(depth) and fusable_parts(depth) == []
    cnn = ["model=cnn", "model.width=4", "device=cpu", "data=fashion_mnist", "data.subset=64"]
    cnn = [compose([*QUIET, *cnn, f"seed={s}"]) for s in (0, 1)]  # 4 x 28 x 28 values: alone
    assert why_not_fusable(cnn) is None and fusable_parts(cnn) == []  # slower fused on the CPU
    assert "4x28x28 values" in why_not_worth_it(cnn[0])
    small = [compose([*QUIET, "model=cnn", "model.width=4", f"seed={s}"]) for s in (0, 1)]
    assert fusable_parts(small) == [[0, 1]]  # 4 x 8 x 8 digits: faster fused


def test_members_differing_in_augmentation_draw_their_separate_runs_augmentations(tmp_path):
    cnn = ["model=cnn", "model.width=4", "trainer.max_steps=4", "optimizer=sgd", "optimizer.lr=0.1"]
    own = [["augmentation=none", "seed=0"], ["augmentation=crop_flip", "seed=0"],
           ["augmentation=cutout", "seed=1"]]  # fmt: skip
    cfgs = [compose([*QUIET, *cnn, *o]) for o in own]
    fused = train_fused(cfgs, [tmp_path / "fused" / str(i) for i in range(3)])
    separate = [train(c, tmp_path / "separate" / str(i)) for i, c in enumerate(cfgs)]
    assert fused[0]["fused"]["members"] == 3
    for i, (f, s) in enumerate(zip(fused, separate, strict=True)):
        assert f["initial_loss"] == pytest.approx(s["initial_loss"], abs=1e-5)
        f_ck, s_ck = (torch.load(tmp_path / k / str(i) / "checkpoint.pt", weights_only=True)
                      for k in ("fused", "separate"))  # fmt: skip
        for name in s_ck["model"]:  # the same images seen: the same weights
            torch.testing.assert_close(
                f_ck["model"][name], s_ck["model"][name], atol=1e-5, rtol=1e-4
            )


def test_members_differing_in_preprocessing_fit_and_apply_their_own(tmp_path):
    own = [["preprocess=none", "seed=0"], ["preprocess=standardize", "seed=0"],
           ["preprocess=pca", "seed=1"]]  # fmt: skip
    cfgs = [compose([*QUIET, "trainer.max_steps=6", *o]) for o in own]
    fused = train_fused(cfgs, [tmp_path / "fused" / str(i) for i in range(3)])
    separate = [train(c, tmp_path / "separate" / str(i)) for i, c in enumerate(cfgs)]
    for i, (f, s) in enumerate(zip(fused, separate, strict=True)):
        assert f["initial_loss"] == pytest.approx(s["initial_loss"], abs=1e-5)
        assert f["test_acc"] == pytest.approx(s["test_acc"], abs=1e-6)  # its own test inputs
        f_ck, s_ck = (torch.load(tmp_path / k / str(i) / "checkpoint.pt", weights_only=False)
                      for k in ("fused", "separate"))  # fmt: skip
        for name in s_ck["model"]:
            torch.testing.assert_close(
                f_ck["model"][name], s_ck["model"][name], atol=1e-5, rtol=1e-4
            )
        for name, t in s_ck["preprocess"].items():  # its own fitted statistics, checkpointed
            torch.testing.assert_close(f_ck["preprocess"][name], t)

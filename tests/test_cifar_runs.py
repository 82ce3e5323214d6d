"""CIFAR-format data end to end: ResNet-20 / VGG through run() and the CLI, on tiny synthetic pickle folders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import grawa_sim.results.sweep  # noqa: F401  (binds sweep's log stream at collection, see test_cli.py)
from grawa_sim import Config, run
from grawa_sim.cli.main import main
from grawa_sim.config import ConfigError, resolve
from grawa_sim.data import cifar
from grawa_sim.data.datasets import load
from grawa_sim.engine.batchnorm import Recalibrator
from grawa_sim.engine.problem import validate
from grawa_sim.models.registry import build
from grawa_sim.results.storage import load_history
from tests.helpers import max_abs_diff, reference_statistics


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data")
    cifar.synthetic(root, "cifar10", train=192, test=48, seed=0)
    cifar.synthetic(root, "cifar100", train=200, test=50, seed=1)
    return str(root)


def _tiny(root: str, **kw) -> Config:
    base = dict(dataset="cifar10", data_dir=root, model="resnet20", width=4, workers=3, steps=10, tau=5,
                batch_size=8, eval_every=5, bn_recalibration=2, dtype="float64", algorithm="lgrawa")
    return Config(**{**base, **kw})


def test_resnet20_cli_run_end_to_end(cifar_root, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--dataset", "cifar10", "--data-dir", cifar_root, "--model", "resnet20", "--algorithm",
                 "mgrawa", "--workers", "2", "--steps", "4", "--tau", "2", "--batch-size", "8",
                 "--bn-recalibration", "1", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    history = load_history(out)
    assert list(history["step"]) == [0, 2, 4]
    assert history["round"].iloc[-1] == 2
    assert history["test_acc"].between(0, 1).all()
    saved = json.loads((out / "config.json").read_text())
    assert saved["augment"] is True and saved["width"] is None
    params = torch.load(out / "params.pt")
    assert sum(p[0].numel() for p in params["workers"].values()) == 269_722  # the standard ResNet-20 (option A, 0.27 M)


@pytest.mark.parametrize("execution", ["vmap", "unrolled"])
def test_cifar_pipeline_vmap_matches_loop(cifar_root, execution):
    """Augmentation, Dirichlet shards, BN buffers and LGRAWA rounds: the stacked engine against the loop."""
    cfg = _tiny(cifar_root, execution=execution, partition="dirichlet", alpha=0.3)
    fast = run(cfg, progress=False)
    ref = run(dataclasses.replace(cfg, backend="loop"), progress=False)
    assert max_abs_diff(fast.workers, ref.workers) <= 1e-8
    assert max_abs_diff(fast.buffers, ref.buffers) <= 1e-8
    assert (fast.history["test_loss"] - ref.history["test_loss"]).abs().max() <= 1e-8
    assert len(fast.weights) == 2 * 3 * len([n for n in fast.workers])  # 2 rounds x 3 workers x layers


def test_vgg_on_cifar100_runs(cifar_root):
    result = run(_tiny(cifar_root, dataset="cifar100", model="vgg11", algorithm="easgd", tau=2, steps=4,
                       dtype="float32"), progress=False)
    assert any(p.ndim == 3 and p.shape[1] == 100 for p in result.workers.values())  # [M, 100 classes, C] head
    assert result.history["test_acc"].between(0, 1).all()


def test_augmentation_reaches_training(cifar_root):
    on = run(_tiny(cifar_root, steps=5, algorithm="localsgd"), progress=False)
    off = run(_tiny(cifar_root, steps=5, algorithm="localsgd", augment=False), progress=False)
    assert max_abs_diff(on.workers, off.workers) > 1e-4


def test_probe_batches_are_plain_and_leave_the_training_stream_alone(cifar_root):
    """GRAWA's probe batch is not augmented, and drawing it changes neither the training indices nor
    their crops and flips (probes and training batches have separate generators)."""
    from grawa_sim.data.datasets import TrainingStream

    cfg = resolve(_tiny(cifar_root))
    data = load(cfg.dataset, torch.float64, cfg.data_dir)
    plain, probed = TrainingStream(cfg, data), TrainingStream(cfg, data)
    for step in range(12):
        xa, ya = plain.batch()
        xb, yb = probed.batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb), f"training batch {step} changed by probes"
        if step % 3 == 2:
            x, y = probed.probe()
            # un-augmented: every probe sample is a training image exactly as stored
            flat = data.x_train.flatten(1)
            match = (x.flatten(2).unsqueeze(2) == flat.unsqueeze(0).unsqueeze(0)).all(-1)
            assert bool(match.any(-1).all())
    # and the augmented training batches really differ from the stored images
    x, _ = plain.batch()
    flat = data.x_train.flatten(1)
    assert not bool((x.flatten(2).unsqueeze(2) == flat.unsqueeze(0).unsqueeze(0)).all(-1).any(-1).all())


def test_mlp_flattens_images_and_env_var_finds_data(cifar_root, monkeypatch):
    monkeypatch.setenv("GRAWA_DATA", cifar_root)
    result = run(Config(dataset="cifar10", model="mlp", workers=2, steps=4, tau=2, batch_size=8, bn_recalibration=0),
                 progress=False)
    assert result.workers["net.0.weight"].shape[-1] == 3 * 32 * 32


def test_download_is_not_attempted_for_invalid_input(tmp_path, capsys):
    code = main(["run", "--dataset", "cifar10", "--model", "cnn", "--data-dir", str(tmp_path), "--download"])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: model: ")
    assert list(tmp_path.iterdir()) == []  # nothing fetched, nothing half-written


def test_download_flag_with_data_present_just_runs(cifar_root, capsys):
    code = main(["run", "--dataset", "cifar10", "--model", "mlp", "--data-dir", cifar_root, "--download",
                 "--workers", "2", "--steps", "2", "--tau", "2", "--batch-size", "8", "--no-progress"])
    assert code == 0, capsys.readouterr().err


def test_data_dir_pointing_inside_the_folder_gets_a_hint(cifar_root):
    with pytest.raises(ConfigError, match="data_dir is the folder that contains cifar-10-batches-py"):
        resolve_data = Config(dataset="cifar10", data_dir=str(Path(cifar_root) / "cifar-10-batches-py"))
        validate(resolve_data)


def test_recalibration_of_a_resnet20_matches_a_module_fed_the_same_batches(cifar_root):
    """The 2-D BN statistics (option-A blocks included) against an nn.Module in train mode."""
    data = load("cifar10", data_dir=cifar_root)
    torch.manual_seed(0)
    model = build("resnet20", data.input_shape, data.outputs, width=4)
    params = {n: p.detach() + 0.05 * torch.randn_like(p) for n, p in model.named_parameters()}
    stats = Recalibrator(model, data.x_train, batches=2, batch_size=32)(params)
    expected = reference_statistics(lambda: build("resnet20", data.input_shape, data.outputs, width=4), params,
                                    data.x_train, 2, 32)
    assert stats.keys() == expected.keys()
    for name in stats:
        torch.testing.assert_close(stats[name], expected[name])
    assert not torch.allclose(stats["bn.running_mean"], dict(model.named_buffers())["bn.running_mean"])


def test_missing_cifar_is_one_line_with_the_path(tmp_path, capsys):
    code = main(["run", "--dataset", "cifar10", "--data-dir", str(tmp_path / "nowhere"), "--model", "resnet20",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: data_dir: ")
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in err and "--download" in err


@pytest.mark.parametrize("kw,field", [
    (dict(dataset="mnist1d", model="resnet20"), "model"),
    (dict(dataset="cifar10", model="cnn"), "model"),
    (dict(dataset="mnist1d", model="mlp", augment=True), "augment"),
    (dict(model="logistic", width=8), "width"),
    (dict(model="mlp", width=0), "width"),
])
def test_model_data_config_errors(kw, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        resolve(Config(**kw))


def test_every_image_model_name_builds():
    from grawa_sim.config import IMAGE_MODELS

    for name in IMAGE_MODELS:
        net = build(name, (3, 32, 32), 7, width=2)
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 7), name
    depths = {name: sum(isinstance(m, torch.nn.Conv2d) for m in build(name, (3, 32, 32), 7).modules())
              for name in IMAGE_MODELS if name.startswith("vgg")}
    assert depths == {"vgg11": 8, "vgg13": 10, "vgg16": 13, "vgg19": 16}  # N - 3: the paper counts 3 linear layers

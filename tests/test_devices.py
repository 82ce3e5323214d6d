"""--device: names, `auto`, not part of a run's identity, plumbed through every command; CPU-only tests."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import grawa_sim
from grawa_sim.cli.main import main
from grawa_sim.config import Config, ConfigError, run_identity
from grawa_sim.core.devices import DEVICE_ENV, parse_devices, resolve_device
from grawa_sim.results.storage import is_complete, load_config, load_params, save_result

TINY = ["--dataset", "digits", "--model", "logistic", "--workers", "2", "--steps", "8", "--tau", "4",
        "--batch-size", "8"]
TINY_CONFIG = Config(dataset="digits", model="logistic", workers=2, steps=8, tau=4, batch_size=8)
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_names(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert parse_devices("cpu, cpu,cpu") == [torch.device("cpu")] * 3
    for bad in ("tpu", "gpu", "", "cuda:x", 3):
        with pytest.raises(ConfigError, match=r"^device: must be auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    with pytest.raises(ConfigError, match="^devices: "):
        parse_devices(" , ")


@no_cuda
def test_cuda_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^device: CUDA is not available .*\(got 'cuda:1'\)$"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="^device: CUDA is not available"):
        grawa_sim.run(dataclasses.replace(TINY_CONFIG, device="cuda"), progress=False)


def test_environment_variable_says_what_auto_means(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "nonsense")
    with pytest.raises(ConfigError, match=r"^device \(from \$GRAWA_DEVICE\): must be"):
        resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit name wins


def test_config_checks_the_name_and_device_is_not_identity(tmp_path):
    with pytest.raises(ConfigError, match="^device: "):
        grawa_sim.run(dataclasses.replace(TINY_CONFIG, device="tpu"), progress=False)
    cpu = dataclasses.replace(TINY_CONFIG, device="cpu")
    assert "device" not in run_identity(cpu) and run_identity(cpu) == run_identity(TINY_CONFIG)
    result = grawa_sim.run(cpu, progress=False)
    again = grawa_sim.run(TINY_CONFIG, progress=False, device="cpu")  # the argument wins over config.device
    assert result.history.drop(columns="wall_time").equals(again.history.drop(columns="wall_time"))
    save_result(result, tmp_path / "r")
    assert load_config(tmp_path / "r").device == "cpu"
    assert is_complete(tmp_path / "r", dataclasses.replace(result.config, device="cuda:3"))
    assert next(iter(load_params(tmp_path / "r")["workers"].values())).device.type == "cpu"


def test_run_and_sweep_flags(tmp_path, capsys):
    assert main(["run", *TINY, "--device", "cpu", "--no-progress"]) == 0
    assert main(["sweep", *TINY, "--device", "cpu", "--seed", "0,1", "--out", str(tmp_path / "s"),
                 "--no-progress"]) == 0
    assert all(load_config(d).device == "cpu" for d in (tmp_path / "s" / "runs").iterdir())
    capsys.readouterr()
    assert main(["sweep", *TINY, "--device", "cpu,cpu", "--out", str(tmp_path / "t")]) == 2
    assert capsys.readouterr().err.startswith("error: device: a sweep computes on one device")


@pytest.mark.parametrize("command", [["run", *TINY], ["reproduce", "--quick"], ["anchor", "--quick"],
                                     ["bench", "--workers", "2"], ["notebooks"],
                                     ["flatness", "--run", "nowhere"]])
def test_every_command_rejects_a_bad_device_in_one_line(command, tmp_path, capsys):
    if command[0] in ("reproduce", "anchor"):
        command = [*command, "--out", str(tmp_path / "o"), "--figures", str(tmp_path / "f")]
    if command[0] == "flatness":
        result = grawa_sim.run(TINY_CONFIG, progress=False)
        save_result(result, tmp_path / "r")
        command = ["flatness", "--run", str(tmp_path / "r")]
    assert main([*command, "--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: device: must be auto, cpu, cuda or cuda:N"), err
    assert not (tmp_path / "o").exists()


def test_flatness_and_bench_on_the_cpu(tmp_path, capsys):
    result = grawa_sim.run(dataclasses.replace(TINY_CONFIG, model="mlp", dataset="mnist1d"), progress=False)
    save_result(result, tmp_path / "r")
    assert main(["flatness", "--run", str(tmp_path / "r"), "--device", "cpu", "--metrics", "loss,lambda_max",
                 "--power-iters", "3"]) == 0
    assert (tmp_path / "r" / "flatness.csv").is_file()
    assert main(["bench", "--models", "mlp", "--workers", "2", "--budget", "0.01", "--repeats", "1",
                 "--device", "cpu"]) == 0
    assert '"device": "cpu"' in capsys.readouterr().out

"""Data-parallel VAE training: mirrored over two CPU devices and two loopback workers give the
weights of one device; bad set-ups are named errors."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from galsim_hub.training.fitting.distribute import DataParallelStep, DistributionError, make_strategy

STEPS = 4
CONFIG = {
    "dataset": {"stamp_size": 16, "n_examples": 64, "noise_sigma": 0.01},
    # A small clip norm, so that the clipping of the summed gradient is exercised.
    "vae": {
        "latent_dim": 4,
        "num_stages": 2,
        "base_depth": 4,
        "max_depth": 8,
        "batch_size": 8,
        "steps": STEPS,
        "checkpoint_every": STEPS,
        "clip_norm": 0.5,
    },
    "export": {"name": "distributed-test", "version": "0.1.0"},
}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    from galsim_hub.training.datasets.data import build_synthetic_dataset

    root = tmp_path_factory.mktemp("distributed")
    dataset = build_synthetic_dataset(root / "dataset", 64, stamp_size=16, noise_sigma=0.01, seed=0, progress=False)
    values = json.loads(json.dumps(CONFIG))
    values["dataset"]["path"] = str(dataset)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _train(config_file: Path, work_dir: Path, *options: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "galsim_hub", "train", "--stage", "vae", "--quiet", "--no-resume"]
    command += ["--config", str(config_file), "--work-dir", str(work_dir), *options]
    return subprocess.Popen(
        command, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-3000:]
    return out


def _trained(work_dir: Path) -> tuple[list, list]:
    """The VAE's weights and its history of losses."""
    from galsim_hub.training.fitting.train import load_vae

    history = json.loads((work_dir / "vae_history.json").read_text())
    return [w.numpy() for w in load_vae(work_dir).weights], [h["loss"] for h in history]


def _assert_same_training(a: tuple, b: tuple) -> None:
    (weights_a, losses_a), (weights_b, losses_b) = a, b
    assert len(weights_a) == len(weights_b) and len(losses_a) == len(losses_b) == STEPS
    for x, y in zip(weights_a, weights_b):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * float(np.max(np.abs(x))))
    np.testing.assert_allclose(losses_a, losses_b, rtol=1e-5)


@pytest.fixture(scope="module")
def one_device(config_file):
    work_dir = config_file.parent / "one_device"
    _finish(_train(config_file, work_dir))
    return _trained(work_dir)


@pytest.mark.slow
def test_mirrored_over_two_cpu_devices_gives_the_weights_of_one_device(config_file, one_device):
    work_dir = config_file.parent / "mirrored"
    out = _finish(_train(config_file, work_dir, "--distribute", "mirrored", "--cpu-replicas", "2"))
    assert "VAE trained" in out
    trained = _trained(work_dir)
    _assert_same_training(one_device, trained)
    # ... and the steps did move them (the comparison is not of two initialisations).
    from galsim_hub.training.fitting.train import VAE, read_json

    untrained = VAE.from_architecture(read_json(work_dir / "vae" / "architecture.json"))
    assert max(float(np.max(np.abs(w - u.numpy()))) for w, u in zip(trained[0], untrained.weights)) > 1e-4


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_loopback_workers_give_the_weights_of_one_device(config_file, one_device):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = [
        _train(
            config_file,
            config_file.parent / f"worker{i}",
            "--distribute",
            "multi-worker",
            env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        )
        for i in range(2)
    ]
    for worker in workers:
        _finish(worker)
    for i in range(2):
        _assert_same_training(one_device, _trained(config_file.parent / f"worker{i}"))


def test_unknown_strategies_and_bad_set_ups_are_named(monkeypatch):
    with pytest.raises(DistributionError, match="unknown distribution strategy 'horovod'"):
        make_strategy("horovod")
    with pytest.raises(DistributionError, match="for the 'mirrored' strategy only"):
        make_strategy("none", cpu_replicas=2)
    with pytest.raises(DistributionError, match="cpu_replicas must be a positive integer"):
        make_strategy("mirrored", cpu_replicas=0)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DistributionError, match="multi-worker training needs TF_CONFIG"):
        make_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(DistributionError, match="TF_CONFIG is not a cluster and a task of it"):
        make_strategy("multi-worker")


def test_a_batch_that_the_replicas_cannot_share_is_refused():
    class ThreeReplicas:
        num_replicas_in_sync = 3

    with pytest.raises(DistributionError, match=r"batch size \(8\) must be a multiple of the 3 replicas"):
        DataParallelStep(ThreeReplicas(), dict, [], None, global_batch=8)


def test_the_flow_stage_is_not_distributed(config_file, capsys):
    from galsim_hub.cli import main

    code = main(
        ["train", "--stage", "flow", "--distribute", "mirrored", "--config", str(config_file), "--work-dir", "x"]
    )
    assert code != 0
    assert "--distribute applies to the VAE stage" in capsys.readouterr().err


@pytest.mark.slow
def test_mixed_bfloat16_trains_in_bfloat16_and_leaves_float32_weights(config_file, tmp_path):
    import keras

    from galsim_hub.training.fitting import train
    from galsim_hub.training.fitting.config import load_config

    histories = {}
    for precision in ("float32", "mixed_bfloat16"):
        config = load_config(config_file)
        config.vae.precision = precision
        config.vae.steps = 2
        histories[precision] = train.train_vae(
            config, config.dataset.path, tmp_path / precision, resume=False, progress=False
        )
    first = {precision: history[0]["loss"] for precision, history in histories.items()}
    # The same weights and data: only the arithmetic differs, by bfloat16's round-off.
    assert first["mixed_bfloat16"] != first["float32"]
    assert all(np.isfinite(h["loss"]) for h in histories["mixed_bfloat16"])
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was
    vae = train.load_vae(tmp_path / "mixed_bfloat16")
    assert {w.dtype for w in vae.weights} == {"float32"}

"""TensorFlow's CPU-only start-up lines are dropped; real errors are not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from galsim_hub.backends.tf_quiet import _capture_fd2, filter_startup_lines

PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
NO_DRIVER = (
    b"I0000 00:00:1795734834.516987   11316 cudart_stub.cc:31] Could not find cuda drivers on your "
    b"machine, GPU will not be used.\n"
)
CUINIT = (
    b"E0000 00:00:1795734840.441434   11316 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    b"CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)
ONEDNN = (
    b"I0000 00:00:1796223301.533127   14170 port.cc:153] oneDNN custom operations are on. You may see "
    b"slightly different numerical results due to floating-point round-off errors.\n"
)
REAL = b"E0000 00:00:1795734840.5   11316 saved_model.cc:12] could not read variables: corrupt file\n"


def test_benign_startup_lines_are_dropped_real_errors_kept():
    assert (
        filter_startup_lines(PREAMBLE + ONEDNN + NO_DRIVER + CUINIT + REAL + ONEDNN + b"Traceback ...\n")
        == REAL + b"Traceback ...\n"
    )


def test_cuinit_failure_is_kept_when_a_driver_is_installed():
    """Without the no-driver notice the cuInit error explains a missing GPU: it stays."""
    assert filter_startup_lines(PREAMBLE + CUINIT) == CUINIT


def test_capture_passes_other_lines_through_descriptor_2(capfd):
    def noisy():
        for line in (PREAMBLE, NO_DRIVER, CUINIT, REAL):
            os.write(2, line)
        return 42

    assert _capture_fd2(noisy) == 42
    assert capfd.readouterr().err.encode() == REAL


@pytest.mark.slow
def test_loading_a_model_prints_no_startup_noise(tmp_path):
    code = (
        "import galsim_hub\n"
        "model = galsim_hub.GenerativeGalaxyModel('hub:synthetic_bdk', device='/CPU:0')\n"
        "model.sample({'mag_auto': [22.0], 'flux_radius': [5.0], 'zphot': [0.5]}, seed=1)\n"
        "print('sampled')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["GALSIM_HUB_CACHE"] = str(tmp_path / "cache")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sampled"
    for noise in ("cuInit", "cudart_stub", "absl::InitializeLog", "oneDNN"):
        assert noise not in result.stderr
    assert result.stderr == ""

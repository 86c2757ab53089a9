"""Upstream galsim_hub's ``examples/demo14.yaml``, in its own spelling, runs with the ``galsim`` command.

The config below keeps every key of upstream's example: the object type ``GenerativeModelGalaxy``
with ``flux_radius`` and ``mag_auto`` given as ``Random`` values, a 10 x 10 ``Tiled`` image with
``stamp_size`` and COSMOS noise, ``output.dir``/``file_name``, and the model given to the
``generative_model`` input as an archive URL. Upstream's URL is dead: a loopback server serves
the bundled ``hub:synthetic_bdk`` archive at the same path. That model also needs ``zphot``:
without it the run stops with an error naming the condition; with it added the run writes the
image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

BUNDLED_ARCHIVE = Path(__file__).resolve().parents[1] / "hub_models" / "synthetic_bdk" / "1.0" / "model.tar.gz"

UPSTREAM_SPELLING = """\
modules:
    - galsim_hub

psf :
    type : Gaussian
    sigma : 0.06  # arcsec

gal :
    type : GenerativeModelGalaxy
    flux_radius : {{ type : Random , min : 5, max : 10 }}
    mag_auto : {{ type : Random , min : 24., max : 25. }}
{extra}
image :
    type : Tiled
    nx_tiles : 10
    ny_tiles : 10
    stamp_size : 64  # pixels
    pixel_scale : 0.03  # arcsec / pixel
    noise :
       type : COSMOS

output :
    dir : output_yaml
    file_name : demo14.fits

input :
    generative_model :
        file_name : '{url}'
"""


def _galsim(config: Path, cache: Path) -> subprocess.CompletedProcess:
    galsim_command = shutil.which("galsim", path=str(Path(sys.executable).parent)) or "galsim"
    env = {**os.environ, "GALSIM_HUB_CACHE": str(cache)}
    env.pop("GALSIM_HUB_OFFLINE", None)
    return subprocess.run(
        [galsim_command, config.name], cwd=config.parent, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_upstream_demo14_runs_on_a_bundled_model_served_by_url(http_server, tmp_path):
    served = http_server.root / "EiffL" / "GalSim-Hub" / "master" / "modules" / "generative_model.tar.gz"
    served.parent.mkdir(parents=True)
    shutil.copyfile(BUNDLED_ARCHIVE, served)
    url = http_server.url("EiffL/GalSim-Hub/master/modules/generative_model.tar.gz")
    cache = tmp_path / "cache"

    verbatim = tmp_path / "demo14.yaml"
    verbatim.write_text(UPSTREAM_SPELLING.format(extra="", url=url))
    result = _galsim(verbatim, cache)
    assert result.returncode != 0
    assert "zphot" in result.stderr and "gives no value for zphot" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "output_yaml" / "demo14.fits").exists()

    completed = tmp_path / "demo14_zphot.yaml"
    completed.write_text(
        UPSTREAM_SPELLING.format(extra="    zphot : { type : Random , min : 0.3, max : 1.0 }\n", url=url)
    )
    result = _galsim(completed, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    image = fits.getdata(tmp_path / "output_yaml" / "demo14.fits")
    assert image.shape == (640, 640) and np.isfinite(image).all()
    tiles = image.reshape(10, 64, 10, 64).transpose(0, 2, 1, 3)
    centres, corners = tiles[:, :, 24:40, 24:40].mean(axis=(2, 3)), tiles[:, :, :8, :8].mean(axis=(2, 3))
    # Every tile holds a galaxy at its centre, above the COSMOS noise of its corners.
    assert np.all(centres > corners)
    # Upstream's galaxies differed from tile to tile: so do these (Random conditions, own noise).
    assert np.unique(centres).size == 100
    assert http_server.count("EiffL/GalSim-Hub/master/modules/generative_model.tar.gz") >= 1

"""Cost of multi-band galaxies per galaxy per band, next to a single-band galaxy, in one run.

No model is run: the stamps are GalSim bulge+disc galaxies with a colour gradient (a red
bulge, a bluer and larger disc) drawn at 0.2"/px on 64x64 stamps in LSST g, r, i, so that the
numbers are those of the GalSim side of sampling (building the objects and drawing them),
which is what a multi-band model adds. Each row builds the objects of one galaxy from its
stamps and draws it through every band (with the Moffat PSF of ``speed.py``, and without):

``single-band``
    One ``InterpolatedImage`` (the r stamp), drawn in each band with that band's flux
    (``withFlux``): a single-band model with catalog fluxes.
``per-band images``
    ``MultiBandGalaxy.images[band]``: one ``InterpolatedImage`` per band, each drawn once.
``chromatic``
    ``MultiBandGalaxy.chromatic`` (``sum_b I_b * S_b``, :mod:`galsim_hub.profiles.bands`) drawn through
    each band's ``galsim.Bandpass``.
``through(bandpass)``
    ``MultiBandGalaxy.through(bandpass)``: the chromatic object integrated over the bandpass
    as one ``InterpolatedImage`` (exact for achromatic PSFs).
``from_images``
    ``galsim.InterpolatedChromaticObject.from_images`` at the effective wavelengths times a
    flat photon SED; it can only be drawn through r (g and i raise ``GalSimRangeError``), so
    its row draws r three times.

Timing: the best of ``--repeat`` rounds, rows interleaved within each round so that a busy
spell slows them alike; ms per galaxy per band = (build + drawing in every band) / bands.

Usage::

    python benchmarks/bands_speed.py [--galaxies 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import time

import galsim
import numpy as np

from galsim_hub.profiles.bands import BandSet, MultiBandGalaxy

STAMP, SCALE = 64, 0.2
PSF = galsim.Moffat(beta=3.0, fwhm=0.7)
BANDS = ("g", "r", "i")


def band_set() -> BandSet:
    bands = []
    for name in BANDS:
        bandpass = galsim.Bandpass(f"LSST_{name}.dat", wave_type="nm")
        bands.append(
            {
                "name": name,
                "effective_wavelength": bandpass.effective_wavelength,
                "zero_point": 30.0,
                "bandpass": f"LSST_{name}.dat",
            }
        )
    return BandSet(bands)


def stamps(n_galaxies: int, seed: int = 1) -> np.ndarray:
    """``[N, S, S, 3]`` g, r, i stamps of bulge+disc galaxies with a red bulge and a bluer disc."""
    rng = np.random.default_rng(seed)
    bulge_fraction = {"g": 0.15, "r": 0.3, "i": 0.4}
    disc_scale = {"g": 1.15, "r": 1.0, "i": 0.95}
    out = np.empty((n_galaxies, STAMP, STAMP, len(BANDS)), np.float32)
    for n in range(n_galaxies):
        hlr, q, beta = rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
        for b, name in enumerate(BANDS):
            disc = galsim.Exponential(half_light_radius=hlr * disc_scale[name], flux=1 - bulge_fraction[name])
            bulge = galsim.DeVaucouleurs(half_light_radius=0.3 * hlr, flux=bulge_fraction[name])
            galaxy = (disc + bulge).shear(q=q, beta=beta * galsim.radians) * (100.0 * (b + 1))
            out[n, ..., b] = galaxy.drawImage(nx=STAMP, ny=STAMP, scale=SCALE, method="no_pixel").array
    return out


def interpolated(array: np.ndarray) -> galsim.InterpolatedImage:
    return galsim.InterpolatedImage(galsim.Image(np.ascontiguousarray(array), scale=SCALE))


def draw(obj, psf: bool, bandpass=None) -> None:
    if psf:
        obj = galsim.Convolve(obj, PSF)
    if bandpass is None:
        obj.drawImage(nx=STAMP, ny=STAMP, scale=SCALE)
    else:
        obj.drawImage(bandpass, nx=STAMP, ny=STAMP, scale=SCALE)


def rows(bands: BandSet, psf: bool) -> dict:
    """``{row: function(stamp [S, S, B])}`` building one galaxy and drawing it in every band."""
    bandpasses = [bands.bandpasses[name] for name in BANDS]
    flat = galsim.SED("1", "nm", "fphotons")

    def single(stamp):
        image = interpolated(stamp[..., 1])
        for b in range(len(BANDS)):
            draw(image.withFlux(float(stamp[..., b].sum())), psf)

    def multiband(stamp):
        return MultiBandGalaxy(bands, [interpolated(stamp[..., b]) for b in range(len(BANDS))], stamp)

    def per_band(stamp):
        galaxy = multiband(stamp)
        for name in BANDS:
            draw(galaxy.images[name], psf)

    def chromatic(stamp):
        galaxy = multiband(stamp)
        for bandpass in bandpasses:
            draw(galaxy.chromatic, psf, bandpass)

    def through(stamp):
        galaxy = multiband(stamp)
        for bandpass in bandpasses:
            draw(galaxy.through(bandpass), psf)

    def from_images(stamp):
        images = [galsim.Image(np.ascontiguousarray(stamp[..., b]), scale=SCALE) for b in range(len(BANDS))]
        obj = galsim.InterpolatedChromaticObject.from_images(images, list(bands.wavelengths)) * flat
        for _ in BANDS:
            draw(obj, psf, bands.bandpasses["r"])

    return {
        "single-band": single,
        "per-band images": per_band,
        "chromatic": chromatic,
        "through(bandpass)": through,
        "from_images (r only)": from_images,
    }


def measure(arrays: np.ndarray, repeat: int, psf: bool) -> dict:
    functions = rows(band_set(), psf)
    best = {name: float("inf") for name in functions}
    for function in functions.values():
        function(arrays[0])  # warm-up (GalSim caches)
    for _ in range(repeat):
        for name, function in functions.items():
            start = time.perf_counter()
            for stamp in arrays:
                function(stamp)
            best[name] = min(best[name], (time.perf_counter() - start) / len(arrays))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    arrays = stamps(args.galaxies)
    print(
        f"GalSim {galsim.__version__}, {platform.processor() or platform.machine()}, "
        f'{args.galaxies} galaxies, {STAMP}x{STAMP} at {SCALE}"/px, bands {", ".join(BANDS)}, best of {args.repeat}\n'
    )
    results = {psf: measure(arrays, args.repeat, psf) for psf in (False, True)}
    print("| galaxy objects | ms per galaxy per band, no PSF | ratio | with Moffat PSF | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name in results[False]:
        cells = []
        for psf in (False, True):
            per_band = 1e3 * results[psf][name] / len(BANDS)
            cells += [f"{per_band:.2f}", f"{results[psf][name] / results[psf]['single-band']:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

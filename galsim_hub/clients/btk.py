"""BlendingToolKit blends drawn with galsim-hub galaxies (``pip install 'galsim-hub[btk]'``).

:class:`GalsimHubCatalog` holds the galaxies (the model's conditions, one magnitude column per
survey band, anything else BTK's sampling functions read) and :class:`GalsimHubGenerator`, a
BTK ``DrawBlendsGenerator``, draws the blends: each galaxy of a batch gets one morphology from
the model (decoded for the whole batch at once, before BTK splits the batch among its jobs), and
in every band and survey that same morphology is given the flux of its catalog magnitude in that
band, convolved with the band's PSF and drawn.

Examples
--------
>>> import btk
>>> from galsim_hub.clients.btk import GalsimHubCatalog, GalsimHubGenerator
>>> catalog = GalsimHubCatalog(table)                  # doctest: +SKIP
>>> sampling = btk.sampling_functions.DefaultSampling(max_number=3, mag_name="LSST_i")
>>> generator = GalsimHubGenerator(catalog, sampling, btk.survey.get_surveys("LSST"),
...                                model="hub:cosmos_real", batch_size=8, seed=1)  # doctest: +SKIP
>>> batch = next(generator)                            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import galsim
import numpy as np
from astropy.table import Column, Table

try:
    from btk.catalog import Catalog
    from btk.draw_blends import DrawBlendsGenerator
    from btk.utils import DEFAULT_SEED
    from surveycodex.utilities import mag2counts
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError("galsim_hub.clients.btk needs BlendingToolKit: pip install 'galsim-hub[btk]'") from error

from galsim_hub.errors import CatalogError
from galsim_hub.model import GenerativeGalaxyModel

__all__ = ["GalsimHubCatalog", "GalsimHubGenerator", "OBJECT_ID_COLUMN"]

#: The column that ties an object of a blend to its morphology in the batch.
OBJECT_ID_COLUMN = "galsim_hub_id"


class GalsimHubCatalog(Catalog):
    """A BTK catalog of galaxies to draw with a galsim-hub model.

    Parameters
    ----------
    raw_catalog : astropy.table.Table
        One row a galaxy: the model's conditions (or the columns that ``conditions`` of
        :class:`GalsimHubGenerator` names) and an AB magnitude per band, named
        ``{survey}_{band}`` (e.g. ``LSST_r``) or as the generator's ``mag_column`` says.
    """

    def __init__(self, raw_catalog: Table):
        super().__init__(raw_catalog)

    def _prepare_table(self, raw_catalog: Table) -> Table:
        table = Table(raw_catalog, copy=True)
        table["btk_index"] = np.arange(len(table))
        return table

    @classmethod
    def from_file(cls, catalog_files: str) -> GalsimHubCatalog:
        """Read the catalog from a file astropy reads (FITS, ECSV, ...)."""
        return cls(Table.read(catalog_files))


class GalsimHubGenerator(DrawBlendsGenerator):
    """A BTK blend generator whose galaxies come from a galsim-hub model.

    Parameters
    ----------
    catalog : GalsimHubCatalog
        The galaxies.
    sampling_function : btk.sampling_functions.SamplingFunction
        BTK's choice of the galaxies of each blend and their positions.
    surveys : btk.survey.Survey or list of them
        The surveys (and their bands) to draw the blends in.
    model : str or GenerativeGalaxyModel
        A model handle (``hub:NAME``, URL, directory or archive) or a loaded model.
    conditions : mapping, optional
        Model condition -> catalog column, for conditions whose column has another name.
    mag_column : str, optional
        The magnitude column of each band, as a template of ``{survey}`` and ``{band}``
        (default ``"{survey}_{band}"``).
    seed : int
        Seed of BTK's noise and of the morphologies (the same seed gives the same blends,
        whatever ``njobs``).
    **kwargs
        The other arguments of ``btk.draw_blends.DrawBlendsGenerator`` (``batch_size``,
        ``njobs``, ``add_noise``, ``apply_shear``, ``augment_data``, ...).
    """

    compatible_catalogs = ("GalsimHubCatalog",)

    def __init__(
        self,
        catalog: GalsimHubCatalog,
        sampling_function: Any,
        surveys: Any,
        model: str | GenerativeGalaxyModel,
        conditions: Mapping[str, str] | None = None,
        mag_column: str = "{survey}_{band}",
        seed: int = DEFAULT_SEED,
        **kwargs: Any,
    ):
        self.model = model if isinstance(model, GenerativeGalaxyModel) else GenerativeGalaxyModel(model)
        if self.model.bands is not None:
            raise CatalogError(
                f"{self.model.file_name} is a multi-band model ({', '.join(self.model.bands)}); BTK blends "
                "take one morphology in every survey band: use a single-band model"
            )
        self.condition_columns = {name: (conditions or {}).get(name, name) for name in self.model.quantities}
        self.mag_column = mag_column
        super().__init__(catalog, sampling_function, surveys, seed=seed, **kwargs)
        self._check_columns(catalog.table)
        self._morphology_seeds = np.random.SeedSequence([seed, 1])
        self._profiles: list[galsim.GSObject] = []
        self.blend_generator = _WithMorphologies(cast(Any, self).blend_generator, self)

    def __getstate__(self) -> dict:
        # BTK's jobs (njobs > 1) draw the decoded profiles: they need no model (nor its backend).
        state = dict(self.__dict__)
        state["model"] = None
        return state

    def _check_compatibility(self, survey: Any) -> None:
        if type(self.catalog).__name__ not in self.compatible_catalogs:
            raise ValueError(f"{type(self).__name__} draws a GalsimHubCatalog, got a {type(self.catalog).__name__}")

    def _check_columns(self, table: Table) -> None:
        missing = [column for column in self.condition_columns.values() if column not in table.colnames]
        for survey in self.surveys.values():
            for band in survey.available_filters:
                column = self.mag_column.format(survey=survey.name, band=band)
                if column not in table.colnames:
                    missing.append(column)
        if missing:
            raise CatalogError(
                f"the catalog has no column {', '.join(repr(m) for m in missing)} "
                f"(columns: {', '.join(table.colnames)}); name the model's conditions with conditions={{...}} "
                "and the band magnitudes with mag_column"
            )

    def sample_morphologies(self, blends: list[Table]) -> None:
        """Decode one morphology for every object of ``blends`` (one batch) in one model call;
        tie each object to it through the :data:`OBJECT_ID_COLUMN` column."""
        rows = Table(
            {
                name: np.concatenate([np.asarray(blend[column], float) for blend in blends])
                for name, column in self.condition_columns.items()
            }
        )
        seed = int(self._morphology_seeds.spawn(1)[0].generate_state(1)[0]) or 1
        self._profiles = list(self.model.sample(rows, seed=seed)) if len(rows) else []
        start = 0
        for blend in blends:
            blend.add_column(Column(np.arange(start, start + len(blend)), name=OBJECT_ID_COLUMN))
            start += len(blend)

    def render_single(self, entry: Table, filt: Any, psf: galsim.GSObject, survey: Any) -> galsim.Image:
        """The galaxy of ``entry`` in band ``filt`` of ``survey``: its morphology with the flux of
        its catalog magnitude in that band, rotated and sheared as BTK asks, PSF-convolved."""
        magnitude = entry[self.mag_column.format(survey=survey.name, band=filt.name)]
        flux = mag2counts(magnitude, survey, filt).to_value("electron")
        galaxy = self._profiles[int(entry[OBJECT_ID_COLUMN])].withFlux(flux)
        galaxy = galaxy.rotate(galsim.Angle(entry["btk_rotation"], unit=galsim.degrees))
        if self.apply_shear:
            if "g1" not in entry.colnames or "g2" not in entry.colnames:
                raise KeyError("apply_shear needs the g1 and g2 columns in the blend catalog")
            galaxy = galaxy.shear(g1=entry["g1"], g2=entry["g2"])
        size = self._get_pix_stamp_size(survey)
        drawn = galsim.Convolve(galaxy, psf).shift(entry["ra"], entry["dec"])
        return drawn.drawImage(nx=size, ny=size, scale=survey.pixel_scale.to_value("arcsec"))


class _WithMorphologies:
    """BTK's blend iterator, with the morphologies of each batch decoded as it comes out."""

    def __init__(self, blends: Any, generator: GalsimHubGenerator):
        self._blends = blends
        self._generator = generator

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._blends, name)

    def __iter__(self) -> _WithMorphologies:
        return self

    def __next__(self) -> list[Table]:
        blends = next(self._blends)
        self._generator.sample_morphologies(blends)
        return blends

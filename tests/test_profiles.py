import numpy as np
import pandas as pd
import pytest

from morphoprof import metadata as md
from morphoprof import profiles


def _wells():
    rows = []
    for plate, batch, offset in [("P1", "B1", 0.0), ("P2", "B2", 5.0)]:
        for i, noise in enumerate([-1.0, 0.0, 0.0, 1.0]):
            rows.append({md.PLATE: plate, md.WELL: f"A{i:02d}", md.BATCH: batch, md.COMPOUND: "DMSO",
                         md.CONCENTRATION: 0.0, md.MOA: "DMSO",
                         "CNN_a": offset + noise, "CNN_b": 1.0, "Intensity_x": 0.1 + 0.01 * noise})
        for compound in ["c1", "c2"]:
            rows.append({md.PLATE: plate, md.WELL: f"B_{compound}", md.BATCH: batch, md.COMPOUND: compound,
                         md.CONCENTRATION: 1.0, md.MOA: "m", "CNN_a": offset + 3.0, "CNN_b": 2.0, "Intensity_x": 0.2})
    return pd.DataFrame(rows)


def test_controls_are_centred_per_plate():
    normalized = profiles.normalize_to_controls(_wells(), "DMSO")
    controls = normalized[normalized[md.COMPOUND] == "DMSO"]
    assert np.allclose(controls.groupby(md.PLATE)[["CNN_a", "CNN_b", "Intensity_x"]].mean(), 0, atol=1e-6)
    treated = normalized[normalized[md.COMPOUND] != "DMSO"]
    # the plate offset of 5 is gone: both plates' treated wells sit at the same place
    assert np.allclose(treated["CNN_a"], treated["CNN_a"].iloc[0])
    # and the scale is the controls' pooled std (sqrt(0.5) here)
    assert treated["CNN_a"].iloc[0] == pytest.approx(3.0 / np.sqrt(0.5), rel=1e-5)


def test_a_feature_constant_in_controls_cannot_dominate():
    normalized = profiles.normalize_to_controls(_wells(), "DMSO", std_floor_quantile=0.25)
    treated = normalized[normalized[md.COMPOUND] != "DMSO"]
    # CNN_b has zero control variance: it is divided by the family's floor, not by ~0
    assert np.isfinite(treated["CNN_b"]).all() and treated["CNN_b"].abs().max() < 10


def test_missing_controls_on_a_plate_is_an_error():
    wells = _wells()
    wells = wells[~((wells[md.PLATE] == "P2") & (wells[md.COMPOUND] == "DMSO"))]
    with pytest.raises(ValueError, match="plate P2: no DMSO wells"):
        profiles.normalize_to_controls(wells, "DMSO")


def test_treatment_profiles_put_metadata_first():
    treatments = profiles.treatment_profiles(profiles.normalize_to_controls(_wells(), "DMSO"), "DMSO")
    assert len(treatments) == 2
    assert list(treatments.columns[:5]) == [md.COMPOUND, md.CONCENTRATION, md.MOA, md.BATCH, "Metadata_Wells"]
    assert treatments["Metadata_Wells"].tolist() == [2, 2]
    assert profiles.feature_columns(treatments, "CNN") == ["CNN_a", "CNN_b"]


def test_aggregate_median_and_mean():
    table = pd.DataFrame({md.PLATE: ["P"] * 3, md.WELL: ["A"] * 3, "CNN_a": [0.0, 1.0, 5.0]})
    assert profiles.aggregate(table, profiles.WELL_KEYS, "mean")["CNN_a"].item() == pytest.approx(2.0)
    assert profiles.aggregate(table, profiles.WELL_KEYS, "median")["CNN_a"].item() == pytest.approx(1.0)

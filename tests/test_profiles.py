import numpy as np
import pandas as pd
import pytest

from morphoprof import families, profiles
from morphoprof import metadata as md


def _wells():
    rows = []
    for plate, batch, offset in [("P1", "B1", 0.0), ("P2", "B2", 5.0)]:
        for i, noise in enumerate([-1.0, 0.0, 0.0, 1.0]):
            rows.append(
                {
                    md.PLATE: plate,
                    md.WELL: f"A{i:02d}",
                    md.BATCH: batch,
                    md.COMPOUND: "DMSO",
                    md.CONCENTRATION: 0.0,
                    md.MOA: "DMSO",
                    "CNN_a": offset + noise,
                    "CNN_b": 1.0,
                    "Intensity_x": 0.1 + 0.01 * noise,
                }
            )
        for compound in ["c1", "c2"]:
            rows.append(
                {
                    md.PLATE: plate,
                    md.WELL: f"B_{compound}",
                    md.BATCH: batch,
                    md.COMPOUND: compound,
                    md.CONCENTRATION: 1.0,
                    md.MOA: "m",
                    "CNN_a": offset + 3.0,
                    "CNN_b": 2.0,
                    "Intensity_x": 0.2,
                }
            )
    return pd.DataFrame(rows)


def test_controls_are_centred_per_plate():
    normalized = profiles.normalize(_wells(), "DMSO")
    controls = normalized[normalized[md.COMPOUND] == "DMSO"]
    assert np.allclose(controls.groupby(md.PLATE)[["CNN_a", "CNN_b", "Intensity_x"]].mean(), 0, atol=1e-6)
    treated = normalized[normalized[md.COMPOUND] != "DMSO"]
    # the plate offset of 5 is gone: both plates' treated wells sit at the same place
    assert np.allclose(treated["CNN_a"], treated["CNN_a"].iloc[0])
    # and the scale is the controls' pooled std (sqrt(0.5) here)
    assert treated["CNN_a"].iloc[0] == pytest.approx(3.0 / np.sqrt(0.5), rel=1e-5)


def test_a_feature_constant_in_controls_cannot_dominate():
    normalized = profiles.normalize(_wells(), "DMSO", "zscore", std_floor_quantile=0.25)
    treated = normalized[normalized[md.COMPOUND] != "DMSO"]
    # CNN_b has zero control variance: it is divided by the family's floor, not by ~0
    assert np.isfinite(treated["CNN_b"]).all() and treated["CNN_b"].abs().max() < 10


def test_plate_zscore_divides_each_plate_by_its_own_control_std(caplog):
    """Plate P2 twice as spread as P1, in its controls and in its treatment effect: the per-plate
    recipe puts both plates' treated wells at the same place, the pooled std does not; the feature
    constant in controls falls back to the pooled, floored std, and the log says so."""
    wells = _wells()
    on_p2 = wells[md.PLATE] == "P2"
    wells.loc[on_p2, "CNN_a"] = 5.0 + 2 * (wells.loc[on_p2, "CNN_a"] - 5.0)
    with caplog.at_level("INFO", logger="morphoprof.profiles"):
        per_plate = profiles.normalize(wells, "DMSO", "plate_zscore")
    pooled = profiles.normalize(wells, "DMSO", "zscore")
    treated = per_plate[md.COMPOUND] != "DMSO"
    assert np.allclose(per_plate.loc[treated, "CNN_a"], 3.0 / np.sqrt(0.5), rtol=1e-5)
    assert pooled.loc[treated & on_p2, "CNN_a"].iloc[0] == pytest.approx(
        2 * pooled.loc[treated & ~on_p2, "CNN_a"].iloc[0]
    )
    assert np.allclose(per_plate["CNN_b"], pooled["CNN_b"])  # constant in controls: pooled and floored
    assert "own control std for 4 of 6 plate-features" in caplog.text and "floored std for 2 constant" in caplog.text


def test_missing_controls_on_a_plate_is_an_error():
    wells = _wells()
    wells = wells[~((wells[md.PLATE] == "P2") & (wells[md.COMPOUND] == "DMSO"))]
    with pytest.raises(ValueError, match="plate P2: no DMSO wells"):
        profiles.normalize(wells, "DMSO")


def test_treatment_profiles_put_metadata_first():
    treatments = profiles.treatment_profiles(profiles.normalize(_wells(), "DMSO"), "DMSO")
    assert len(treatments) == 2
    assert list(treatments.columns[:5]) == [md.COMPOUND, md.CONCENTRATION, md.MOA, md.BATCH, "Metadata_Wells"]
    assert treatments["Metadata_Wells"].tolist() == [2, 2]
    assert families.feature_columns(treatments, "CNN") == ["CNN_a", "CNN_b"]


def test_aggregate_median_and_mean():
    table = pd.DataFrame({md.PLATE: ["P"] * 3, md.WELL: ["A"] * 3, "CNN_a": [0.0, 1.0, 5.0]})
    assert profiles.aggregate(table, profiles.WELL_KEYS, "mean")["CNN_a"].item() == pytest.approx(2.0)
    assert profiles.aggregate(table, profiles.WELL_KEYS, "median")["CNN_a"].item() == pytest.approx(1.0)


def _screen(n_plates=4, controls_per_plate=40, n_features=3, seed=0):
    """Wells with correlated control variation that differs between two batches."""
    rng = np.random.default_rng(seed)
    rows = []
    mixing = {
        "B1": np.array([[1.0, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]]),
        "B2": np.array([[2.0, 0.0, 0.0], [0.0, 0.5, 0.3], [0.0, 0.0, 1.5]]),
    }
    for p in range(n_plates):
        batch = "B1" if p < n_plates // 2 else "B2"
        for i in range(controls_per_plate):
            values = rng.normal(size=n_features) @ mixing[batch] + p
            rows.append(
                {
                    md.PLATE: f"P{p}",
                    md.WELL: f"W{i}",
                    md.BATCH: batch,
                    md.COMPOUND: "DMSO",
                    md.CONCENTRATION: 0.0,
                    **{f"CNN_{k}": v for k, v in enumerate(values)},
                }
            )
    return pd.DataFrame(rows)


def _control_covariance(table, batch=None):
    rows = table if batch is None else table[table[md.BATCH] == batch]
    return np.cov(rows[families.feature_columns(rows)].to_numpy(np.float64).T)


def test_sphering_whitens_the_controls():
    out = profiles.normalize(_screen(), "DMSO", "sphering", ridge=1e-6)
    assert np.allclose(_control_covariance(out), np.eye(3), atol=0.05)


def test_tvn_aligns_each_batch_to_all_controls():
    screen = _screen()
    before = profiles.normalize(screen, "DMSO", "sphering", ridge=1e-6)
    after = profiles.normalize(screen, "DMSO", "tvn", ridge=1e-6)
    gap_before = np.abs(_control_covariance(before, "B1") - _control_covariance(before, "B2")).max()
    gap_after = np.abs(_control_covariance(after, "B1") - _control_covariance(after, "B2")).max()
    assert gap_before > 0.5 and gap_after < 0.1


def test_robust_zscore_resists_an_outlying_control():
    screen = _screen()
    screen.loc[0, "CNN_0"] = 1e6
    plain = profiles.normalize(screen, "DMSO", "zscore")
    robust = profiles.normalize(screen, "DMSO", "robust_zscore")
    assert plain.loc[40:, "CNN_0"].abs().max() < 0.01  # the outlier inflated the pooled std: all else is flat
    assert robust.loc[1:, "CNN_0"].abs().median() > 0.3


def test_unknown_normalization_is_a_config_error():
    with pytest.raises(ValueError, match="profiles.normalization: unknown method 'pca'"):
        profiles.normalize(_screen(), "DMSO", "pca")


def test_feature_selection_drops_constant_and_duplicated_features():
    screen = _screen()
    screen["CNN_const"] = 1.0
    screen["CNN_copy"] = screen["CNN_0"] * 2
    kept = profiles.select_features(screen, ["variance_threshold", "correlation_threshold"])
    features = families.feature_columns(kept)
    assert "CNN_const" not in features
    assert ("CNN_copy" in features) != ("CNN_0" in features)
    assert {"CNN_1", "CNN_2"} <= set(features)


def test_wells_and_treatments_count_the_nuclei_and_sites_they_stand_on():
    fields = pd.DataFrame(
        {
            md.PLATE: ["P1"] * 3 + ["P2"] * 2,
            md.WELL: ["A01", "A01", "B01", "A01", "B01"],
            md.BATCH: ["B1"] * 3 + ["B2"] * 2,
            md.COMPOUND: ["taxol", "taxol", "DMSO", "taxol", "DMSO"],
            md.CONCENTRATION: [1.0, 1.0, 0.0, 1.0, 0.0],
            "CNN_a": [1.0, 3.0, 5.0, 7.0, 9.0],
        }
    )
    wells = profiles.well_profiles(fields, [10, 20, 5, 7, 9])
    taxol = wells[wells[md.COMPOUND] == "taxol"]
    assert taxol[profiles.OBJECT_COUNT].tolist() == [30, 7] and taxol[profiles.SITE_COUNT].tolist() == [2, 1]
    assert taxol["CNN_a"].tolist() == [2.0, 7.0]
    treatments = profiles.treatment_profiles(wells, "DMSO")
    assert treatments[[profiles.OBJECT_COUNT, profiles.SITE_COUNT, "Metadata_Wells"]].values.tolist() == [[37, 3, 2]]
    assert families.feature_columns(treatments) == ["CNN_a"]

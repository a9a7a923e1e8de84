import numpy as np
import pytest

from morphoprof import metadata as md
from morphoprof import simulate

SMALL = simulate.ScreenParams(plates=3, batches=2, sites=1, height=128, width=128, moas=6)


def test_layout_has_the_shape_of_a_screen():
    layout = simulate.screen_layout(SMALL)
    assert layout["plate"].nunique() == 3 and layout["batch"].nunique() == 2
    assert (layout.groupby("plate")["compound"].apply(lambda c: (c == "DMSO").sum()) == SMALL.control_wells).all()
    moas = simulate.moa_table(SMALL)
    assert moas["moa"].nunique() == 6 and (moas.groupby("moa").size() >= 2).all()
    treated = layout[layout["compound"] != "DMSO"]
    assert (treated.groupby("compound")["concentration"].nunique() == 2).all()
    # a compound sits in one batch, and each MOA's compounds span batches (so NSCB is defined)
    assert (treated.groupby("compound")["batch"].nunique() == 1).all()
    assert (moas.groupby("moa")["batch"].nunique() == 2).all()


def test_fields_are_deterministic_for_a_seed():
    first = [raw for _, raw, _ in simulate.simulate_plate(SMALL, "SIM01")]
    again = [raw for _, raw, _ in simulate.simulate_plate(SMALL, "SIM01")]
    other = [raw for _, raw, _ in simulate.simulate_plate(simulate.ScreenParams(**{**SMALL.__dict__, "seed": 1}), "SIM01")]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])
    assert first[0].dtype == np.uint16 and first[0].shape == (3, 128, 128)


def _nuclear_area(pheno, n_fields=6):
    areas = []
    for i in range(n_fields):
        _, labels = simulate.render_field(SMALL, 0, i, pheno, np.ones(3, np.float32), np.ones((128, 128), np.float32))
        counts = np.bincount(labels.ravel())[1:]
        areas.extend(counts[counts > 0])
    return np.median(areas), len(areas)


def test_phenotypes_move_nuclear_size_and_cell_count_with_dose():
    dmso_area, dmso_n = _nuclear_area(simulate.treatment_phenotype(SMALL, "DMSO", 0.0))
    low_area, _ = _nuclear_area(simulate.treatment_phenotype(SMALL, "DDR-1", 0.3))
    high_area, high_n = _nuclear_area(simulate.treatment_phenotype(SMALL, "DDR-1", 1.0))
    assert dmso_area < low_area < high_area  # DNA damage enlarges nuclei, more at the higher dose
    assert high_n < dmso_n  # and lowers the cell count


def test_illumination_differs_per_plate_and_channel():
    a, b, c = (simulate.illumination_field(SMALL, p, ch) for p, ch in [(0, 0), (1, 0), (0, 1)])
    assert a.max() == pytest.approx(1.0) and a.min() < 0.8
    assert not np.allclose(a, b) and not np.allclose(a, c)


def test_field_table_carries_moa_and_paths():
    fields = simulate.field_table(SMALL, "results/simulated/images")
    assert set(fields[md.MOA]) - {"DMSO"} == set(simulate.moa_table(SMALL)["moa"])
    assert fields[md.path_column("actin")].iloc[0] == "results/simulated/images/SIM01/SIM01_A01_s1_actin.tif"


def test_config_typo_is_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['plate'\]"):
        simulate.ScreenParams.from_config({"plate": 3})

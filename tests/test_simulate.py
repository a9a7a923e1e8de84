from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.spatial.distance import pdist

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


def test_fields_and_masks_are_deterministic_for_a_seed():
    first = list(simulate.simulate_plate(SMALL, "SIM01"))
    again = list(simulate.simulate_plate(SMALL, "SIM01"))
    other = list(simulate.simulate_plate(simulate.ScreenParams(**{**SMALL.__dict__, "seed": 1}), "SIM01"))
    for (_, raw, labels), (_, raw_again, labels_again) in zip(first, again):
        assert np.array_equal(raw, raw_again) and np.array_equal(labels, labels_again)
    assert not np.array_equal(first[0][1], other[0][1]) and not np.array_equal(first[0][2], other[0][2])
    first = [raw for _, raw, _ in first]
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


def _change_vector(params, compound, concentration, batch="Batch1"):
    """A treatment's cell parameters as log-fold changes from its batch's resting cells (raw
    differences for fractions)."""
    pheno, resting = (
        simulate.treatment_phenotype(params, compound, concentration, batch),
        simulate.resting_phenotype(params, batch),
    )
    return np.array(
        [pheno[k] - resting[k] if k in simulate.ADDITIVE else np.log(pheno[k] / resting[k]) for k in simulate.BASELINE]
    )


def _within_moa_similarity(params):
    """Mean cosine similarity of the high-dose phenotypes of compounds sharing an MOA."""
    moas = simulate.moa_table(params)
    sims = []
    for _, group in moas.groupby("moa"):
        vectors = [_change_vector(params, c, 1.0) for c in group["compound"]]
        for i in range(len(vectors)):
            for j in range(i + 1, len(vectors)):
                a, b = vectors[i], vectors[j]
                sims.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    return float(np.mean(sims))


def test_difficulty_spreads_the_compounds_of_an_moa_and_the_batches():
    easy, hard = (simulate.ScreenParams(**{**SMALL.__dict__, "difficulty": d}) for d in (0.0, 1.0))
    assert _within_moa_similarity(easy) > 0.99 > 0.95 > _within_moa_similarity(hard)
    assert simulate.moa_table(hard)["potency"].std() > 1.2 * simulate.moa_table(easy)["potency"].std()
    # at difficulty 0 every cell of a treated well responds, and batches share their biology
    assert all(
        simulate.treatment_phenotype(easy, c, 0.3)["responding"] == 1.0 for c in simulate.moa_table(easy)["compound"]
    )
    assert simulate.resting_phenotype(easy, "Batch1") == simulate.resting_phenotype(easy, "Batch2")
    weakest = simulate.moa_table(hard).sort_values("potency")["compound"].iloc[0]
    assert simulate.treatment_phenotype(hard, weakest, 0.3)["responding"] < 0.9
    assert simulate.resting_phenotype(hard, "Batch1") != simulate.resting_phenotype(hard, "Batch2")
    # the same compound looks different in another batch (sensitivity), beyond its resting cells
    assert not np.allclose(_change_vector(hard, "ACT-1", 1.0, "Batch1"), _change_vector(hard, "ACT-1", 1.0, "Batch2"))


def test_resting_cells_dilute_a_weak_treatment():
    """A well where a share of cells rests shows the phenotype less: fewer enlarged nuclei."""
    hard = simulate.ScreenParams(**{**SMALL.__dict__, "difficulty": 1.0})
    pheno = simulate.treatment_phenotype(hard, "DDR-1", 1.0)
    everyone = {**pheno, "responding": 1.0}
    half = {**pheno, "responding": 0.5}
    assert _nuclear_area(half)[0] < _nuclear_area(everyone)[0]


def test_illumination_differs_per_plate_and_channel():
    a, b, c = (simulate.illumination_field(SMALL, p, ch) for p, ch in [(0, 0), (1, 0), (0, 1)])
    assert a.max() == pytest.approx(1.0) and a.min() < 0.8
    assert not np.allclose(a, b) and not np.allclose(a, c)


def test_field_table_carries_moa_and_paths():
    fields = simulate.field_table(SMALL, "results/simulated/images")
    assert set(fields[md.MOA]) - {"DMSO"} == set(simulate.moa_table(SMALL)["moa"])
    assert fields[md.path_column("actin")].iloc[0] == "results/simulated/images/SIM01/SIM01_A01_s1_actin.tif"


def test_image_table_reads_back_as_the_field_table(tmp_path):
    """The generic image table the simulator writes is read by the table input as the screen's own fields."""
    simulate.image_table(SMALL).to_csv(tmp_path / "images.csv", index=False)
    read = md.generic_fields(tmp_path / "images.csv", list(simulate.CHANNELS))
    expected = simulate.field_table(SMALL, str(tmp_path / "images"))
    columns = [md.FIELD, md.PLATE, md.BATCH, md.COMPOUND, *(md.path_column(ch) for ch in simulate.CHANNELS)]
    pd.testing.assert_frame_equal(read[columns].reset_index(drop=True), expected[columns].reset_index(drop=True))


def test_config_typo_is_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['plate'\]"):
        simulate.ScreenParams.from_config({"plate": 3})


def _place_one_at_a_time(rng, n, height, width, min_dist):
    """Reference: the straightforward sequential placement that _place_centres must reproduce exactly."""
    centres = []
    for _ in range(n * 30):
        if len(centres) == n:
            break
        c = rng.uniform([0, 0], [height, width])
        if all(np.hypot(*(c - o)) >= min_dist for o in centres):
            centres.append(c)
    return np.array(centres).reshape(-1, 2)


@pytest.mark.parametrize(
    "n, height, width, min_dist",
    [
        (0, 64, 64, 18.2),
        (1, 64, 64, 18.2),
        (40, 256, 256, 18.2),
        (150, 1024, 1280, 18.2),
        (200, 256, 256, 18.2),  # more than fit: stops after n * 30 candidates
        (10, 20, 20, 15.0),
        (60, 64, 64, 5.0),
        (7, 30, 500, 3.0),
    ],
)
def test_placement_matches_one_candidate_at_a_time(n, height, width, min_dist):
    for seed in range(3):
        fast, reference = np.random.default_rng(seed), np.random.default_rng(seed)
        centres = simulate._place_centres(fast, n, height, width, min_dist)
        assert np.array_equal(centres, _place_one_at_a_time(reference, n, height, width, min_dist))
        assert fast.bit_generator.state == reference.bit_generator.state  # later draws (cell shapes) unchanged


def test_placement_keeps_a_candidate_exactly_at_min_dist():
    first, second = np.random.default_rng(5).uniform([0, 0], [64, 64], size=(2, 2))
    gap = np.hypot(*(second - first))
    for min_dist, second_kept in [(gap, True), (np.nextafter(gap, np.inf), False)]:
        fast, reference = np.random.default_rng(5), np.random.default_rng(5)
        centres = simulate._place_centres(fast, 2, 64, 64, min_dist)
        assert np.array_equal(centres, _place_one_at_a_time(reference, 2, 64, 64, min_dist))
        assert (centres == second).all(axis=1).any() == second_kept


def test_placed_centres_are_spaced_and_all_placed_when_they_fit():
    min_dist = 7.0 * simulate.NUCLEUS_SPACING
    n = int(simulate.max_cells_per_field(7.0) * 1024 * 1280 / 256**2)  # the densest allowed
    centres = simulate._place_centres(np.random.default_rng(0), n, 1024, 1280, min_dist)
    assert len(centres) == n
    assert ((centres >= 0) & (centres < [1024, 1280])).all()
    assert pdist(centres).min() >= min_dist


def test_too_dense_is_a_config_error_naming_the_key():
    with pytest.raises(ValueError, match=r"simulate\.cells_per_field: 150 .* per 256x256 px area \(not per field\)"):
        simulate.ScreenParams.from_config({"cells_per_field": 150})
    with pytest.raises(ValueError, match=r"at most about 25 fit there at simulate\.nucleus_radius 14"):
        simulate.ScreenParams(cells_per_field=40, nucleus_radius=14)
    shipped = yaml.safe_load(Path(__file__).resolve().parents[1].joinpath("config", "config.yaml").read_text())
    assert simulate.ScreenParams.from_config(shipped["simulate"]).cells_per_field == 40
    simulate.ScreenParams(height=1024, width=1280, cells_per_field=7.5)  # about 150 per BBBC021-sized field

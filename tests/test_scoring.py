import numpy as np
import pandas as pd
import pytest

from morphoprof import metadata as md
from morphoprof import scoring


def _profiles(rows):
    return pd.DataFrame(rows, columns=[md.COMPOUND, md.CONCENTRATION, md.MOA, md.BATCH, "f_x", "f_y"])


def test_nsc_skips_the_same_compound_and_nscb_the_same_batch():
    table = _profiles([
        ["a", 1, "M1", "B1", 1.0, 0.0],
        ["a", 2, "M1", "B1", 1.0, 0.01],   # same compound: never a neighbour of 'a 1'
        ["b", 1, "M1", "B2", 0.9, 0.3],
        ["c", 1, "M2", "B1", 0.95, 0.1],   # nearest other compound to 'a', but a different MOA
        ["d", 1, "M2", "B2", 0.0, 1.0],
    ])
    nsc = scoring.nearest_neighbours(table, ["f_x", "f_y"], exclude_batch=False)
    assert nsc["neighbour_compound"].tolist()[:2] == ["c", "c"]
    nscb = scoring.nearest_neighbours(table, ["f_x", "f_y"], exclude_batch=True)
    assert nscb["neighbour_compound"].tolist() == ["b", "b", "c", "b", "c"]
    assert scoring.accuracy(nscb) == pytest.approx(3 / 5)
    summary, per_treatment = scoring.score(table, ["f_x", "f_y"])
    assert summary["nsc"] == pytest.approx(scoring.accuracy(nsc))
    assert summary["n_treatments"] == 5 and summary["n_compounds"] == 4 and summary["n_moas"] == 2
    assert per_treatment.shape[0] == 5


def test_a_batch_holding_one_compound_alone_has_no_nscb_neighbour():
    table = _profiles([
        ["a", 1, "M1", "B1", 1.0, 0.0],   # batch B1 holds only compound a
        ["a", 2, "M1", "B2", 1.0, 0.1],   # so this query has no admissible NSCB neighbour
        ["b", 1, "M1", "B2", 0.9, 0.2],
        ["c", 1, "M2", "B2", 0.0, 1.0],
    ])
    nscb = scoring.nearest_neighbours(table, ["f_x", "f_y"], exclude_batch=True)
    assert nscb["predicted_moa"].isna().tolist() == [False, True, False, False]
    assert scoring.accuracy(nscb) == pytest.approx(2 / 3)  # a1 -> b (right), b -> a1 (right), c -> a1 (wrong)
    summary, _ = scoring.score(table, ["f_x", "f_y"])
    assert summary["nscb_scored_treatments"] == 3


def test_ties_go_to_the_first_treatment_in_table_order():
    table = _profiles([
        ["q", 1, "M1", "B1", 1.0, 0.0],
        ["x", 1, "M2", "B2", 2.0, 0.0],   # same direction as q: cosine 1
        ["y", 1, "M1", "B2", 3.0, 0.0],   # also cosine 1
    ])
    nsc = scoring.nearest_neighbours(table, ["f_x", "f_y"], exclude_batch=False)
    assert nsc["neighbour_compound"].iloc[0] == "x"


def test_confusion_counts_true_by_predicted():
    table = _profiles([
        ["a", 1, "M1", "B1", 1.0, 0.0], ["b", 1, "M1", "B2", 1.0, 0.1],
        ["c", 1, "M2", "B1", 0.0, 1.0], ["d", 1, "M2", "B2", 0.9, 0.2],
    ])
    counts = scoring.confusion(scoring.nearest_neighbours(table, ["f_x", "f_y"], False))
    assert counts.loc["M1", "M1"] == 2
    assert counts.to_numpy().sum() == 4


def test_cosine_similarity_is_scale_free():
    x = np.array([[1.0, 2.0], [2.0, 4.0], [-1.0, 0.5]])
    sim = scoring.cosine_similarity(x)
    assert sim[0, 1] == pytest.approx(1.0) and sim[0, 2] == pytest.approx(0.0)

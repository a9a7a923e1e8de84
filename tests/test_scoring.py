import numpy as np
import pandas as pd
import pytest

from morphoprof import metadata as md
from morphoprof import scoring


def _profiles(rows):
    return pd.DataFrame(rows, columns=[md.COMPOUND, md.CONCENTRATION, md.MOA, md.BATCH, "f_x", "f_y"])


def test_nsc_skips_the_same_compound_and_nscb_the_same_batch():
    table = _profiles(
        [
            ["a", 1, "M1", "B1", 1.0, 0.0],
            ["a", 2, "M1", "B1", 1.0, 0.01],  # same compound: never a neighbour of 'a 1'
            ["b", 1, "M1", "B2", 0.9, 0.3],
            ["c", 1, "M2", "B1", 0.95, 0.1],  # nearest other compound to 'a', but a different MOA
            ["d", 1, "M2", "B2", 0.0, 1.0],
        ]
    )
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
    table = _profiles(
        [
            ["a", 1, "M1", "B1", 1.0, 0.0],  # batch B1 holds only compound a
            ["a", 2, "M1", "B2", 1.0, 0.1],  # so this query has no admissible NSCB neighbour
            ["b", 1, "M1", "B2", 0.9, 0.2],
            ["c", 1, "M2", "B2", 0.0, 1.0],
        ]
    )
    nscb = scoring.nearest_neighbours(table, ["f_x", "f_y"], exclude_batch=True)
    assert nscb["predicted_moa"].isna().tolist() == [False, True, False, False]
    assert scoring.accuracy(nscb) == pytest.approx(2 / 3)  # a1 -> b (right), b -> a1 (right), c -> a1 (wrong)
    summary, _ = scoring.score(table, ["f_x", "f_y"])
    assert summary["nscb_scored_treatments"] == 3


def test_ties_go_to_the_first_treatment_in_table_order():
    table = _profiles(
        [
            ["q", 1, "M1", "B1", 1.0, 0.0],
            ["x", 1, "M2", "B2", 2.0, 0.0],  # same direction as q: cosine 1
            ["y", 1, "M1", "B2", 3.0, 0.0],  # also cosine 1
        ]
    )
    nsc = scoring.nearest_neighbours(table, ["f_x", "f_y"], exclude_batch=False)
    assert nsc["neighbour_compound"].iloc[0] == "x"


def test_confusion_counts_true_by_predicted():
    table = _profiles(
        [
            ["a", 1, "M1", "B1", 1.0, 0.0],
            ["b", 1, "M1", "B2", 1.0, 0.1],
            ["c", 1, "M2", "B1", 0.0, 1.0],
            ["d", 1, "M2", "B2", 0.9, 0.2],
        ]
    )
    counts = scoring.confusion(scoring.nearest_neighbours(table, ["f_x", "f_y"], False))
    # a and b find each other (M1 twice); c finds d (M2); d finds b, of the other MOA
    assert counts.loc["M1", "M1"] == 2 and counts.loc["M1", "M2"] == 0
    assert counts.loc["M2", "M2"] == 1 and counts.loc["M2", "M1"] == 1


def test_cosine_similarity_is_scale_free():
    x = np.array([[1.0, 2.0], [2.0, 4.0], [-1.0, 0.5]])
    sim = scoring.cosine_similarity(x)
    assert sim[0, 1] == pytest.approx(1.0) and sim[0, 2] == pytest.approx(0.0)


def test_a_compound_with_a_single_treatment_is_scored_like_any_other():
    table = _profiles(
        [
            ["solo", 1, "M1", "B1", 1.0, 0.0],  # one concentration only
            ["b", 1, "M1", "B2", 0.9, 0.1],
            ["b", 2, "M1", "B2", 0.8, 0.1],
            ["c", 1, "M2", "B1", 0.0, 1.0],
            ["d", 1, "M2", "B2", 0.1, 0.9],
        ]
    )
    nsc = scoring.nearest_neighbours(table, ["f_x", "f_y"], exclude_batch=False)
    assert nsc["neighbour_compound"].iloc[0] == "b" and nsc["predicted_moa"].iloc[0] == "M1"
    assert scoring.accuracy(nsc) == 1.0


def test_an_moa_held_by_one_batch_is_dropped_from_the_common_set():
    table = _profiles(
        [
            ["a", 1, "M1", "B1", 1.0, 0.0],
            ["b", 1, "M1", "B2", 0.9, 0.1],
            ["c", 1, "M2", "B1", 0.0, 1.0],
            ["d", 1, "M2", "B2", 0.1, 0.9],
            ["e", 1, "M3", "B1", 0.7, 0.7],
            ["f", 1, "M3", "B1", 0.6, 0.8],  # M3 only in batch B1
        ]
    )
    assert scoring.single_batch_moas(table) == ["M3"]
    summary, _ = scoring.score(table, ["f_x", "f_y"])
    assert summary["nscb_common_treatments"] == 4 and summary["nscb_common_dropped_moas"] == ["M3"]
    assert summary["nscb_common"] == 1.0
    assert summary["nscb"] == pytest.approx(4 / 6)  # M3 queries can only find other MOAs across batches


def test_pearson_ignores_a_profile_wide_offset():
    x = np.array([[1.0, 2.0, 3.0], [11.0, 12.0, 13.0], [3.0, 2.0, 1.0]])
    pearson = scoring.similarity(x, "pearson")
    assert pearson[0, 1] == pytest.approx(1.0) and pearson[0, 2] == pytest.approx(-1.0)
    assert scoring.similarity(x, "cosine")[0, 1] < 1.0


def test_knn_majority_vote_and_its_tie_break():
    table = _profiles(
        [
            ["q", 1, "M1", "B1", 1.0, 0.0],
            ["a", 1, "M2", "B2", 0.99, 0.05],  # nearest
            ["b", 1, "M1", "B2", 0.95, 0.2],
            ["c", 1, "M1", "B2", 0.9, 0.3],
            ["d", 1, "M2", "B2", 0.5, 0.8],
        ]
    )
    features = ["f_x", "f_y"]
    assert scoring.knn_predictions(table, features, 1, False).iloc[0] == "M2"
    assert scoring.knn_predictions(table, features, 3, False).iloc[0] == "M1"  # M1 wins 2 to 1
    assert scoring.knn_predictions(table, features, 4, False).iloc[0] == "M2"  # 2-2 tie: the nearest's MOA


def test_map_agrees_with_copairs_run_directly():
    from copairs.map import average_precision, mean_average_precision

    rng = np.random.default_rng(0)
    rows = []
    for m in range(3):
        centre = rng.normal(size=8)
        for c in range(3):
            for conc in (1, 2):
                rows.append([f"c{m}{c}", conc, f"M{m}", f"B{c % 2}", *(centre + rng.normal(scale=1.5, size=8))])
    table = pd.DataFrame(rows, columns=[md.COMPOUND, md.CONCENTRATION, md.MOA, md.BATCH, *[f"f_{i}" for i in range(8)]])
    features = [f"f_{i}" for i in range(8)]
    summary, _ = scoring.score(table, features)
    ap = average_precision(
        table[[md.COMPOUND, md.CONCENTRATION, md.MOA]],
        table[features].to_numpy(),
        pos_sameby=[md.MOA],
        pos_diffby=[md.COMPOUND],
        neg_sameby=[],
        neg_diffby=[md.MOA],
        progress_bar=False,
    )
    direct = mean_average_precision(ap, sameby=[md.MOA], null_size=100, threshold=0.05, seed=0, progress_bar=False)
    for moa, value, p_value in zip(direct[md.MOA], direct["mean_average_precision"], direct["p_value"]):
        assert summary["map_per_moa"][moa] == pytest.approx(value)
        assert summary["map_significance"][moa]["p_value"] == pytest.approx(p_value, abs=0.05)  # nulls: 10,000, 100
    assert 0 < summary["map"] < 1


@pytest.mark.parametrize(
    "rows,undefined",
    [
        (
            [
                ["a", 1, "M1", "B1", 1.0, 0.0],
                ["b", 1, "M1", "B1", 0.9, 0.1],
                ["c", 1, "M2", "B1", 0.0, 1.0],
                ["d", 1, "M2", "B1", 0.1, 0.9],
            ],
            {"nscb": "one batch", "nscb_common": "one batch"},
        ),
        (
            [
                ["a", 1, "M1", "B1", 1.0, 0.0],
                ["a", 2, "M1", "B2", 0.9, 0.1],
                ["c", 1, "M2", "B1", 0.0, 1.0],
                ["c", 2, "M2", "B2", 0.1, 0.9],
            ],
            {"nsc": "no MOA has two compounds", "map": "no MOA has two compounds"},
        ),
        (
            [
                ["a", 1, "M1", "B1", 1.0, 0.0],
                ["b", 1, "M1", "B1", 0.9, 0.1],
                ["c", 1, "M2", "B2", 0.0, 1.0],
                ["d", 1, "M2", "B2", 0.1, 0.9],
            ],
            {"nscb_common": "every MOA sits in one batch"},
        ),
    ],
)
def test_a_screen_that_cannot_give_a_score_gets_null_and_the_reason(rows, undefined):
    """One batch, one compound per MOA, MOAs each in one batch: the scores finish, with null and
    the reason where the screen cannot give them."""
    summary, table = scoring.evaluate(_profiles(rows), "f", levels={"both": "f"})
    assert {k: v for k, v in summary["undefined"].items()}.keys() == undefined.keys()
    for score, reason in undefined.items():
        assert summary[score] is None and reason in summary["undefined"][score]
        assert summary["levels"]["both"][score] is None
    for score in {"nsc", "nscb", "nscb_common", "map"} - undefined.keys():
        assert 0 <= summary[score] <= 1
    assert len(table) == len(rows)


def test_the_normalization_plot_leaves_out_null_scores(tmp_path, monkeypatch):
    from morphoprof import plots

    drawn = []
    monkeypatch.setattr(plots.plt, "close", drawn.append)  # keep the figure to read its bars
    table = pd.DataFrame(
        {
            "normalization": ["zscore", "tvn"],
            "family": ["CNN", "CNN"],
            "nsc": [0.5, None],
            "nscb": [None, None],
            "map": [0.4, 0.3],
        }
    )
    plots.scores_by_method(table, tmp_path / "scores.png")
    assert (tmp_path / "scores.png").stat().st_size > 5000
    heights = np.array([bar.get_height() for bar in drawn[0].axes[0].patches])  # NSC, NSCB, mAP; two rows each
    np.testing.assert_array_equal(heights, [0.5, np.nan, np.nan, np.nan, 0.4, 0.3])  # a null score: no bar


def _two_family_screen(seed=0, narrow=12, wide=240):
    """Six MOAs, three compounds each at two concentrations, in two batches, measured by two
    families: the narrow ``A`` tells the first three MOAs apart (the others share one profile in
    it), the wide ``B``, 20 times wider, the last three; as whole-field and single-cell features
    each see some phenotypes."""
    rng = np.random.default_rng(seed)
    shared_a, shared_b = rng.normal(size=narrow), rng.normal(size=wide)
    rows = []
    for m in range(6):
        a_centre = rng.normal(size=narrow) if m < 3 else shared_a
        b_centre = rng.normal(size=wide) if m >= 3 else shared_b
        for c in range(3):
            for concentration in (1.0, 3.0):
                a = a_centre + rng.normal(scale=0.8, size=narrow)
                b = b_centre + rng.normal(scale=1.5, size=wide)
                rows.append([f"c{m}{c}", concentration, f"M{m}", f"B{c % 2}", *a, *b])
    columns = [f"A_{i}" for i in range(narrow)] + [f"B_{i}" for i in range(wide)]
    return pd.DataFrame(rows, columns=[md.COMPOUND, md.CONCENTRATION, md.MOA, md.BATCH, *columns]), columns


def test_combined_families_weigh_the_same_and_score_at_least_as_well_as_each():
    table, columns = _two_family_screen()
    scores = {}
    for name, wanted in (("A", columns[:12]), ("B", columns[12:]), ("A+B", columns)):
        summary, _ = scoring.score(table, wanted)
        scores[name] = (summary["nsc"], summary["map"])
    as_one_family = table.rename(columns={c: f"X_{c}" for c in columns})  # concatenated as they are
    summary, _ = scoring.score(as_one_family, [f"X_{c}" for c in columns])
    unbalanced = (summary["nsc"], summary["map"])
    print(f"\nNSC, mAP: A {scores['A']}, B {scores['B']}, balanced {scores['A+B']}, as one family {unbalanced}")
    for k in range(2):
        assert scores["A+B"][k] >= max(scores["A"][k], scores["B"][k])
        assert scores["A+B"][k] > unbalanced[k]  # the wide family alone would decide
    balanced = scoring.profile_matrix(table, columns)
    assert balanced[:, :12].var(axis=0).sum() == pytest.approx(1.0)
    assert balanced[:, 12:].var(axis=0).sum() == pytest.approx(1.0)


def test_phenotypic_activity_tells_active_treatments_from_inert_ones():
    """Four replicate wells of each treatment among twelve control wells: the two that move away from
    the controls (each its own way) are active, the two drawn like controls are not."""
    rng = np.random.default_rng(0)
    shifts = {"active1": rng.normal(size=16) * 3, "active2": rng.normal(size=16) * 3, "inert1": 0, "inert2": 0}
    rows = [["DMSO", 0.0, *rng.normal(size=16)] for _ in range(12)]
    rows += [[name, 1.0, *(shift + rng.normal(size=16))] for name, shift in shifts.items() for _ in range(4)]
    wells = pd.DataFrame(rows, columns=[md.COMPOUND, md.CONCENTRATION, *[f"CNN_{i}" for i in range(16)]])
    activity = scoring.phenotypic_activity(wells, "DMSO", [f"CNN_{i}" for i in range(16)]).set_index(md.COMPOUND)
    assert sorted(activity.index) == ["active1", "active2", "inert1", "inert2"]
    assert activity.loc[["active1", "active2"], "significant"].all()
    assert not activity.loc[["inert1", "inert2"], "significant"].any()
    assert (activity.loc[["active1", "active2"], "mean_average_precision"] == 1.0).all()
    assert (activity["corrected_p_value"] >= activity["p_value"]).all()


def test_headline_table_has_one_row_per_scored_level_and_baseline():
    rows = [
        ["a", 1, "M1", "B1", 1.0, 0.0],
        ["b", 1, "M1", "B2", 0.9, 0.1],
        ["c", 1, "M2", "B1", 0.0, 1.0],
        ["d", 1, "M2", "B2", 0.1, 0.9],
    ]
    profiles = _profiles(rows).assign(g_x=[0.0, 1.0, 1.0, 0.0], g_y=[1.0, 0.0, 0.0, 1.0])
    summary, _ = scoring.evaluate(profiles, "f+g", baselines=["g"], levels={"field": "f", "both": "f+g"})
    table = scoring.headline_table(summary)
    assert table.columns.tolist() == [
        "level",
        "feature_family",
        "weights",
        "nsc",
        "nscb",
        "nscb_common",
        "map",
        "map_significant_moas",
        "active_fraction",
        "same_batch_neighbours",
        "same_batch_chance",
        "n_features",
    ]
    assert table[["level", "feature_family"]].values.tolist() == [["field", "f"], ["both", "f+g"], ["baseline", "g"]]
    assert table.loc[0, ["nsc", "nscb", "map"]].tolist() == [1.0, 1.0, 1.0]  # f pairs a with b, c with d
    assert table.loc[1, "nsc"] == summary["nsc"]
    assert table.loc[2, "nsc"] == 0.0  # g pairs a with d, b with c: never the same MOA
    assert table.loc[2, ["same_batch_neighbours", "same_batch_chance"]].tolist() == [0.0, 0.333]  # nor batch
    assert table["active_fraction"].isna().all()  # no wells given: activity not measured
    assert (table["weights"] == "none").all()  # f and g are no network's features


def test_the_headline_names_the_weights_and_the_training_protocol():
    summary = {"training": {"protocol": "transductive"}}
    assert scoring.weights_label("TrainedCNN+TrainedCellCNN", summary) == "trained (transductive)"
    assert scoring.weights_label("CNN+CellCNN+Nuclei", summary) == "ImageNet"
    assert scoring.weights_label("Intensity", summary) == "none"


def test_treatments_of_one_well_have_no_activity_to_test():
    wells = pd.DataFrame(
        {md.COMPOUND: ["DMSO", "DMSO", "a", "b"], md.CONCENTRATION: [0.0, 0.0, 1.0, 1.0], "CNN_x": [0.1, -0.1, 2, 3]}
    )
    assert scoring.phenotypic_activity(wells, "DMSO", ["CNN_x"]).empty


def test_every_normalization_is_scored_and_one_that_cannot_run_says_why(caplog):
    """Batch B2 has one control well: TVN cannot run there, the other normalizations are scored."""
    import yaml

    from morphoprof import profiles, screen

    rng = np.random.default_rng(0)
    signatures = {f"M{m}": rng.normal(size=20) for m in range(4)}
    rows = []
    for plate, batch, controls in (("P1", "B1", 3), ("P2", "B2", 1)):
        for k in range(controls):
            rows.append([plate, f"C{k}", batch, "DMSO", 0.0, "DMSO", *rng.normal(scale=0.3, size=20)])
        for m, signature in enumerate(signatures.values()):
            for c in range(2):
                values = signature + rng.normal(scale=0.5, size=20)
                rows.append([plate, f"T{m}{c}", batch, f"c{m}{c}", 1.0, f"M{m}", *values])
    features = [f"A_{i}" for i in range(10)] + [f"B_{i}" for i in range(10)]
    wells = pd.DataFrame(rows, columns=[md.PLATE, md.WELL, md.BATCH, md.COMPOUND, md.CONCENTRATION, md.MOA, *features])
    settings = yaml.safe_load((screen.CONFIG / "config.yaml").read_text())["profiles"]
    with caplog.at_level("WARNING", logger="morphoprof.scoring"):
        table = scoring.normalization_table(wells, "DMSO", settings, ["A", "B"])
    assert list(zip(table["normalization"], table["family"])) == [
        (method, family) for method in profiles.NORMALIZATIONS for family in ("A", "B")
    ]
    tvn = table[table["normalization"] == "tvn"]
    assert tvn["note"].str.contains("batch B2: TVN needs at least 2 control wells").all() and tvn["nsc"].isna().all()
    assert "tvn cannot run on these wells" in caplog.text
    others = table[table["normalization"] != "tvn"]
    assert others["note"].isna().all() and others["nsc"].between(0, 1).all()
    normalized, treatments = profiles.build_profiles(wells, "DMSO", {**settings, "normalization": "zscore"})
    direct = pd.Series(scoring.headline_row(scoring.score_family(treatments, "B", normalized)[0]), dtype=float)
    pd.testing.assert_series_equal(table.iloc[1][direct.index].astype(float), direct, check_names=False)

import numpy as np
import pandas as pd
import pytest
import tifffile

from morphoprof import metadata as md

CHANNELS = ["DNA", "tubulin", "actin"]


@pytest.mark.parametrize(
    "folder,image_csv",
    [
        ("celltriplets_bbbc021_metadata", "BBBC021_v1_image.csv"),
        ("cytominergallery_bbbc021", "BBBC021_v1_image.csv.gz"),
    ],
)
def test_bbbc021_tables_give_the_published_treatment_set(shared_data, folder, image_csv):
    fields = md.bbbc021_fields(
        shared_data / folder / image_csv,
        shared_data / folder / "BBBC021_v1_moa.csv",
        "/images",
        ["DAPI", "Tubulin", "Actin"],
    )
    treated = fields[(fields[md.COMPOUND] != "DMSO") & md.annotated(fields)]
    treatments = treated.drop_duplicates(md.TREATMENT_KEYS)
    assert len(treatments) == 103
    assert treatments[md.COMPOUND].nunique() == 38
    assert treatments[md.MOA].nunique() == 12
    assert fields[md.BATCH].nunique() == 10
    taxol = treated[(treated[md.COMPOUND] == "taxol") & np.isclose(treated[md.CONCENTRATION], 0.3)]
    assert sorted(taxol[md.PLATE].unique()) == ["Week1_22123", "Week1_22141", "Week1_22161"]
    assert set(taxol[md.WELL]) == {"D05"}
    assert fields[md.FIELD].is_unique
    assert fields[md.path_column("DAPI")].iloc[0].startswith("/images/Week")
    # the compounds the MOA table does not name are kept, unannotated, for held-out training
    unannotated = md.unannotated_compounds(fields)
    assert len(unannotated) == 74 and not set(unannotated) & set(treatments[md.COMPOUND])
    assert fields.loc[fields[md.COMPOUND].isin(unannotated), md.BATCH].nunique() == 10


def test_bbbc021_rejects_a_channel_it_does_not_have(shared_data):
    folder = shared_data / "cytominergallery_bbbc021"
    with pytest.raises(md.InputError, match="unknown channel.*'DNA'"):
        md.bbbc021_fields(folder / "BBBC021_v1_image.csv.gz", folder / "BBBC021_v1_moa.csv", "/x", ["DNA"])


def test_concentrations_written_differently_join_as_one():
    assert md.concentration_key(["0.003", "0.003000", 0.003]).tolist() == [0.003] * 3


def _write_table(tmp_path, rows, name="images.csv"):
    path = tmp_path / name
    table = pd.DataFrame(rows[0]) if isinstance(rows[0][next(iter(rows[0]))], list) else pd.DataFrame(rows)
    table.to_parquet(path, index=False) if name.endswith(".parquet") else table.to_csv(path, index=False)
    return path


def _row(site=1, compound="taxol", well="B02", **extra):
    row = {
        "plate": "P1",
        "well": well,
        "site": site,
        "compound": compound,
        "concentration": "1.0",
        **{f"path_{ch}": f"img/{well}_{site}_{ch}.tif" for ch in CHANNELS},
    }
    row.update(extra)
    return row


def test_generic_table_reads_paths_relative_to_the_table(tmp_path):
    path = _write_table(tmp_path, [_row(1), _row(2), _row(1, "DMSO", "B03", concentration="0")])
    fields = md.generic_fields(path, CHANNELS)
    assert fields[md.path_column("DNA")].iloc[0] == str(tmp_path / "img/B02_1_DNA.tif")
    assert fields[md.BATCH].tolist() == ["P1"] * 3
    assert fields[md.FIELD].tolist() == ["P1_B02_s1", "P1_B02_s2", "P1_B03_s1"]


@pytest.mark.parametrize(
    "rows,channels,message",
    [
        ([{k: v for k, v in _row().items() if k != "well"}], CHANNELS, r"missing column\(s\) \['well'\]"),
        ([_row()], CHANNELS + ["mito"], r"unknown channel\(s\) \['mito'\]"),
        ([_row(1), _row(1)], CHANNELS, r"duplicate site P1/B02/site 1 \(lines \[2, 3\]\)"),
        ([_row(1), _row(2, concentration="lots")], CHANNELS, r"line 3, column 'concentration': 'lots'"),
        ([_row(site="x")], CHANNELS, r"line 2, column 'site'"),
        ([_row(1), _row(2), _row("1.5", well="B03")], CHANNELS, r"line 4, column 'site': '1.5' is not a whole number"),
        ([_row(1), _row(1, well="B2")], CHANNELS, r"duplicate site P1/B02/site 1"),
        ([_row(1), _row(1, plate="P/2")], CHANNELS, r"line 3: plate 'P/2' cannot name a folder"),
        ([{k: [] for k in _row()}], CHANNELS, r"header but no rows"),
    ],
)
def test_generic_table_errors_name_the_file_and_the_fault(tmp_path, rows, channels, message):
    path = _write_table(tmp_path, rows)
    with pytest.raises(md.InputError, match=message) as err:
        md.generic_fields(path, channels)
    assert str(path) in str(err.value)


def test_a_compound_without_moa_is_kept_unannotated_and_an_unannotated_dose_is_dropped(tmp_path):
    rows = [_row(1), _row(1, "taxol", "B05", concentration=9), _row(1, "DMSO", "B03"), _row(1, "mystery", "B04")]
    fields = md.generic_fields(_write_table(tmp_path, rows), CHANNELS)
    moa = pd.DataFrame({"compound": ["taxol"], "concentration": [1.0], "moa": ["Microtubule stabilizers"]})
    out = md.attach_moa(fields, moa, control="DMSO", source="moa.csv")
    # taxol 9 belongs to an annotated compound: neither scored nor trained on, so not kept
    assert out[md.WELL].tolist() == ["B02", "B03", "B04"]
    assert out[md.MOA].tolist() == ["Microtubule stabilizers", "DMSO", None]
    assert md.unannotated_compounds(out) == ["mystery"]


def test_an_moa_table_naming_none_of_the_compounds_is_an_error(tmp_path):
    fields = md.generic_fields(_write_table(tmp_path, [_row(1), _row(1, "DMSO", "B03")]), CHANNELS)
    moa = pd.DataFrame({"compound": ["Taxol"], "moa": ["Microtubule stabilizers"]})
    with pytest.raises(md.InputError, match=r"moa.csv: annotates none of the image table's compounds"):
        md.attach_moa(fields, moa, control="DMSO", source="moa.csv")


@pytest.mark.parametrize(
    "wells,expected",
    [
        (["A1", "a01", "A01", "P24", "AF48", " B3 ", "ctrl-1"], ["A01", "A01", "A01", "P24", "AF48", "B03", "ctrl-1"]),
    ],
)
def test_well_names_are_one_form(wells, expected):
    assert md.normalize_wells(pd.Series(wells)).tolist() == expected


def test_parquet_tables_of_any_dtype_read_like_csv(tmp_path):
    rows = [{**_row(s), "plate": 7, "site": s, "concentration": 1.0} for s in (1, 2)]
    fields = md.generic_fields(_write_table(tmp_path, rows, "images.parquet"), CHANNELS)
    assert fields[md.FIELD].tolist() == ["7_B02_s1", "7_B02_s2"]


def test_a_control_matching_no_compound_names_the_config_key(tmp_path):
    fields = md.generic_fields(_write_table(tmp_path, [_row(1), _row(1, "DMSO", "B03")]), CHANNELS)
    moa = pd.DataFrame({"compound": ["taxol"], "moa": ["Microtubule stabilizers"]})
    with pytest.raises(md.InputError, match=r"config control: 'dmso' is not a compound .*did you mean 'DMSO'"):
        md.attach_moa(fields, moa, control="dmso", source="moa.csv")


def test_a_plate_without_control_wells_is_named(tmp_path):
    rows = [_row(1), _row(1, "DMSO", "B03"), _row(1, plate="P2")]
    fields = md.generic_fields(_write_table(tmp_path, rows), CHANNELS)
    moa = pd.DataFrame({"compound": ["taxol"], "moa": ["Microtubule stabilizers"]})
    with pytest.raises(md.InputError, match=r"plate\(s\) \['P2'\] have no 'DMSO' wells"):
        md.attach_moa(fields, moa, control="DMSO", source="moa.csv")


def test_moa_table_by_compound_and_concentration(tmp_path):
    (tmp_path / "moa.csv").write_text('"compound",concentration,"moa"\n"taxol",1.000000,"Microtubule stabilizers"\n')
    fields = md.generic_fields(_write_table(tmp_path, [_row(1), _row(1, "DMSO", "B03")]), CHANNELS)
    out = md.attach_moa(fields, md.read_moa_table(tmp_path / "moa.csv"), "DMSO", "moa.csv")
    assert out[md.MOA].tolist() == ["Microtubule stabilizers", "DMSO"]


def test_missing_image_files_are_listed_before_any_work(tmp_path):
    fields = md.generic_fields(_write_table(tmp_path, [_row(1), _row(2)]), CHANNELS)
    (tmp_path / "img").mkdir()
    for ch in CHANNELS:
        tifffile.imwrite(tmp_path / f"img/B02_1_{ch}.tif", np.zeros((4, 4), np.uint16))
    with pytest.raises(md.InputError, match=r"3 image file\(s\) not found, e.g. P1_B02_s2 DNA: .*B02_2_DNA.tif"):
        md.check_image_files(fields, CHANNELS)


def test_empty_and_directory_paths_are_named_with_their_channel(tmp_path):
    (tmp_path / "img").mkdir()
    fields = md.generic_fields(_write_table(tmp_path, [_row(1, path_DNA="", path_actin="img")]), CHANNELS)
    with pytest.raises(md.InputError) as err:
        md.check_image_files(fields, CHANNELS)
    assert "P1_B02_s1 DNA: empty path" in str(err.value)
    assert f"P1_B02_s1 actin: {tmp_path / 'img'} is a directory" in str(err.value)


def test_unreadable_table_is_reported(tmp_path):
    with pytest.raises(md.InputError, match="table not found"):
        md.read_table(tmp_path / "nope.csv")


def test_paths_resolving_outside_the_image_root_are_refused(tmp_path):
    root = tmp_path / "screen"
    (root / "img").mkdir(parents=True)
    (tmp_path / "elsewhere.tif").write_bytes(b"")
    (root / "img" / "link.tif").symlink_to(tmp_path / "elsewhere.tif")
    inside = md.generic_fields(_write_table(root, [_row(1)]), CHANNELS, root)
    md.check_paths_inside(inside, CHANNELS, root)
    for sneaky in ("../elsewhere.tif", "img/link.tif", str(tmp_path / "elsewhere.tif")):
        fields = md.generic_fields(_write_table(root, [_row(1, path_actin=sneaky)]), CHANNELS, root)
        with pytest.raises(md.InputError, match=r"P1_B02_s1 actin: .* resolves to .*elsewhere\.tif, outside config"):
            md.check_paths_inside(fields, CHANNELS, root)

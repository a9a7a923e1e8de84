"""Image and MOA tables: read the supported layouts into one field table and check them.

The field table has one row per field (plate, well, site) with ``Metadata_`` columns and
one ``Path_<channel>`` column per channel. Every check runs before any job starts and
raises :class:`InputError` naming the file, row or column at fault.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

PLATE, WELL, SITE, BATCH = "Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Batch"
COMPOUND, CONCENTRATION, MOA = "Metadata_Compound", "Metadata_Concentration", "Metadata_MOA"
FIELD = "Metadata_Field"
# The per-cell table's object columns, named as CellProfiler names them.
NUCLEUS_NUMBER, CELL_NUMBER = "Metadata_ObjectNumber", "Metadata_Cells_ObjectNumber"
NUCLEUS_CENTRE = ["Nuclei_Location_Center_Y", "Nuclei_Location_Center_X"]  # (row, column) pixels
# The QC and segmentation tables' columns that later stages read.
NUCLEI_COUNT = "Nuclei_Count"  # nuclei per field, in the segmentation table
QC_PASS = "QC_Pass"  # the field passed image QC (in the segmentation QC table: and its nuclei count)
QC_BLANK, QC_DEBRIS, QC_BLURRY, QC_SATURATED = "QC_Blank", "QC_Debris", "QC_Blurry", "QC_Saturated"
QC_FEW_CELLS, QC_MANY_CELLS = "QC_FewCells", "QC_ManyCells"
TREATMENT_KEYS = [COMPOUND, CONCENTRATION]
GENERIC_COLUMNS = ["plate", "well", "site", "compound", "concentration"]

# BBBC021 puts taxol 0.3 positive controls in these wells of every plate; the published
# "taxol 0.3" treatment is only well D05 of three Week1 plates (see the data's SOURCE.md).
BBBC021_POSITIVE_CONTROL_WELLS = {"B11", "C11", "D11", "E02", "F02", "G02"}
BBBC021_CHANNELS = ("DAPI", "Tubulin", "Actin")


class InputError(ValueError):
    """A problem with the user's tables or images, stated in terms of their files."""


def evenly_spread(length: int, count: int) -> np.ndarray:
    """Positions of up to ``count`` of ``length`` items, first and last included and evenly between:
    the fields a plate is sampled by, wherever a few must stand for all.

    Examples
    --------
    >>> evenly_spread(10, 4).tolist()
    [0, 3, 6, 9]
    >>> evenly_spread(3, 8).tolist()
    [0, 1, 2]
    """
    return np.unique(np.linspace(0, length - 1, count).round().astype(int))


def metadata_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith("Metadata_")]


def with_field_metadata(fields: pd.DataFrame, objects: pd.DataFrame) -> pd.DataFrame:
    """A per-object table (``Metadata_Field`` on every row) with its field's ``Metadata_`` columns
    (plate, well, site, compound, ...) in front, so that each row reads on its own."""
    return fields[metadata_columns(fields)].merge(objects, on=FIELD, how="right")


def path_column(channel: str) -> str:
    return f"Path_{channel}"


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV (optionally gzipped) or Parquet table, keeping strings as strings."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: table not found")
    try:
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
            return table.apply(lambda column: column.map(lambda v: "" if pd.isna(v) else str(v)))
        sep = "\t" if ".tsv" in path.suffixes else ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        raise InputError(f"{path}: cannot be read as a table ({err})") from err


def _require_columns(table: pd.DataFrame, columns, source) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        found = list(table.columns)
        shown = f"{found}" if len(found) <= 12 else f"{len(found)} columns: {found[:12]} ..."
        raise InputError(f"{source}: missing column(s) {missing}; found {shown}")


def _numbers(values: pd.Series, column: str, source, kind=float) -> pd.Series:
    """Parse a column of numbers, naming the first row (file line) that is not one."""
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna() | ((np.mod(parsed.fillna(0), 1) != 0) if kind is int else False)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        what = "a whole number" if kind is int else "a number"
        raise InputError(f"{source}: line {row + 2}, column {column!r}: {values.iloc[row]!r} is not {what}")
    return parsed.astype(kind)


def concentration_key(values) -> np.ndarray:
    """Concentrations as join keys: 0.003 and 0.003000 are the same treatment."""
    return np.round(np.asarray(values, dtype=float), 9)


def read_moa_table(path: str | Path) -> pd.DataFrame:
    """MOA table with columns compound, moa and optionally concentration."""
    table = read_table(path)
    table.columns = [c.strip().lower() for c in table.columns]
    _require_columns(table, ["compound", "moa"], path)
    table["compound"] = table["compound"].str.strip()
    table["moa"] = table["moa"].str.strip()
    if "concentration" in table:
        table["concentration"] = _numbers(table["concentration"], "concentration", path)
    return table


def _check_duplicate_sites(fields: pd.DataFrame, source) -> None:
    dup = fields.duplicated([PLATE, WELL, SITE], keep=False)
    if dup.any():
        rows = (np.flatnonzero(dup.to_numpy())[:6] + 2).tolist()
        first = fields[dup].iloc[0]
        raise InputError(f"{source}: duplicate site {first[PLATE]}/{first[WELL]}/site {first[SITE]} (lines {rows})")


def normalize_wells(wells: pd.Series) -> pd.Series:
    """Well names as row letters and a two-digit column (``A1``, ``a01`` and ``A01`` are one well);
    names of another shape are kept as they are."""
    parts = wells.str.strip().str.extract(r"^([A-Za-z]{1,2})0*(\d{1,3})$")
    matched = parts[0].notna()
    normalized = wells.str.strip().copy()
    normalized[matched] = parts.loc[matched, 0].str.upper() + parts.loc[matched, 1].astype(int).map("{:02d}".format)
    return normalized


def field_ids(plates: pd.Series, wells: pd.Series, sites: pd.Series) -> pd.Series:
    """The id of each field, ``<plate>_<well>_s<site>``: names its files and rows throughout."""
    return plates + "_" + wells + "_s" + sites.astype(int).astype(str)


def _check_plates(fields: pd.DataFrame, source) -> None:
    """Plate names become folder and file names: no path separators, nothing empty."""
    bad = fields[PLATE].str.contains("/", regex=False) | (fields[PLATE] == "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"{source}: line {row + 2}: plate {fields[PLATE].iloc[row]!r} cannot name a folder (empty, or holds '/')"
        )


def _with_field_ids(fields: pd.DataFrame) -> pd.DataFrame:
    fields = fields.copy()
    fields[SITE] = fields[SITE].astype(int)
    fields[FIELD] = field_ids(fields[PLATE], fields[WELL], fields[SITE])
    return fields


def generic_fields(path: str | Path, channels: list[str], image_root: str | Path | None = None) -> pd.DataFrame:
    """Fields from a generic image table.

    Columns: plate, well, site, compound, concentration, optional batch, and
    ``path_<channel>`` per channel. Relative paths are resolved against ``image_root``,
    by default the table's folder.
    """
    table = read_table(path)
    _require_columns(table, GENERIC_COLUMNS, path)
    if table.empty:
        raise InputError(f"{path}: the image table has a header but no rows")
    path_columns = [c for c in table.columns if c.startswith("path_")]
    unknown = [ch for ch in channels if f"path_{ch}" not in table.columns]
    if unknown:
        raise InputError(
            f"{path}: unknown channel(s) {unknown}: no column path_<channel> for them; the table has {path_columns}"
        )
    root = str(image_root) if image_root else os.path.dirname(str(path))
    fields = pd.DataFrame(
        {
            PLATE: table["plate"].str.strip(),
            WELL: normalize_wells(table["well"]),
            SITE: _numbers(table["site"], "site", path, int),
            BATCH: table["batch"].str.strip() if "batch" in table else table["plate"].str.strip(),
            COMPOUND: table["compound"].str.strip(),
            CONCENTRATION: _numbers(table["concentration"], "concentration", path),
        }
    )
    for ch in channels:
        fields[path_column(ch)] = [os.path.join(root, p) if p else p for p in table[f"path_{ch}"].str.strip()]
    _check_plates(fields, path)
    _check_duplicate_sites(fields, path)
    return _with_field_ids(fields)


def bbbc021_fields(
    image_csv: str | Path, moa_csv: str | Path, image_root: str | Path, channels: list[str]
) -> pd.DataFrame:
    """Fields of BBBC021, from its published CSVs: its annotated treatments and DMSO, scored, and
    the compounds its MOA table does not name, kept unannotated for held-out training.

    Drops the taxol 0.3 positive-control wells and the unannotated concentrations of annotated
    compounds (:func:`attach_moa`), and takes the week as the batch.
    """
    unknown = [ch for ch in channels if ch not in BBBC021_CHANNELS]
    if unknown:
        raise InputError(f"{image_csv}: unknown channel(s) {unknown}; BBBC021 has {list(BBBC021_CHANNELS)}")
    table = read_table(image_csv)
    needed = [
        "Image_Metadata_Plate_DAPI",
        "Image_Metadata_Well_DAPI",
        "Image_Metadata_Compound",
        "Image_Metadata_Concentration",
    ]
    needed += [f"Image_{kind}_{ch}" for ch in channels for kind in ("FileName", "PathName")]
    _require_columns(table, needed, image_csv)
    site = table["Image_FileName_DAPI" if "DAPI" in channels else f"Image_FileName_{channels[0]}"]
    site = site.str.extract(r"_s(\d+)_", expand=False)
    if site.isna().any():
        row = int(np.flatnonzero(site.isna().to_numpy())[0])
        raise InputError(f"{image_csv}: line {row + 2}: no site (_s<N>_) in the file name")
    fields = pd.DataFrame(
        {
            PLATE: table["Image_Metadata_Plate_DAPI"].str.strip(),
            WELL: normalize_wells(table["Image_Metadata_Well_DAPI"]),
            SITE: site.astype(int),
            BATCH: table[f"Image_PathName_{channels[0]}"].str.strip().str.split("/").str[0],
            COMPOUND: table["Image_Metadata_Compound"].str.strip(),
            CONCENTRATION: _numbers(table["Image_Metadata_Concentration"], "Image_Metadata_Concentration", image_csv),
        }
    )
    for ch in channels:
        fields[path_column(ch)] = [
            os.path.join(image_root, d, f)
            for d, f in zip(table[f"Image_PathName_{ch}"].str.strip(), table[f"Image_FileName_{ch}"].str.strip())
        ]
    positive_control = (
        (fields[COMPOUND] == "taxol")
        & (concentration_key(fields[CONCENTRATION]) == 0.3)
        & fields[WELL].isin(BBBC021_POSITIVE_CONTROL_WELLS)
    )
    fields = fields[~positive_control.to_numpy()].reset_index(drop=True)
    _check_plates(fields, image_csv)
    _check_duplicate_sites(fields, image_csv)
    return attach_moa(_with_field_ids(fields), read_moa_table(moa_csv), control="DMSO", source=moa_csv)


def attach_moa(fields: pd.DataFrame, moa: pd.DataFrame, control: str, source) -> pd.DataFrame:
    """Add ``Metadata_MOA``: the control's name for the control, null for a compound the MOA table
    does not annotate at all (profiled by no score, trained on under the held-out protocol).
    A compound annotated at some concentrations only keeps just those treatments: the others
    could be neither scored nor trained on without the compound's MOA leaking in."""
    if not (fields[COMPOUND] == control).any():
        near = sorted({c for c in fields[COMPOUND] if c.lower() == control.lower()})
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise InputError(f"config control: {control!r} is not a compound of the image table{hint}")
    with_control = set(fields.loc[fields[COMPOUND] == control, PLATE])
    without = sorted(set(fields[PLATE]) - with_control)
    if without:
        raise InputError(
            f"plate(s) {without[:5]}{' ...' if len(without) > 5 else ''} have no {control!r} wells "
            f"(config control): each plate's profiles are normalized against its own control wells"
        )
    fields = fields.copy()
    if "concentration" in moa:
        lookup = {(c, k): m for c, k, m in zip(moa["compound"], concentration_key(moa["concentration"]), moa["moa"])}
        keys = zip(fields[COMPOUND], concentration_key(fields[CONCENTRATION]))
    else:
        lookup = dict(zip(moa["compound"], moa["moa"]))
        keys = iter(fields[COMPOUND])
    fields[MOA] = pd.Series([lookup.get(k) for k in keys], index=fields.index, dtype=object)
    fields.loc[fields[COMPOUND] == control, MOA] = control
    annotated_compound = fields[COMPOUND].isin(set(moa["compound"]))
    fields = fields[fields[MOA].notna() | ~annotated_compound].reset_index(drop=True)
    if not (fields[MOA].notna() & (fields[COMPOUND] != control)).any():
        raise InputError(f"{source}: annotates none of the image table's compounds, so there is nothing to score")
    return fields


def annotated(fields: pd.DataFrame) -> pd.Series:
    """Which rows have an MOA (the control included): those profiled and scored."""
    return fields[MOA].notna()


def unannotated_compounds(fields: pd.DataFrame) -> list[str]:
    """The compounds without an MOA in the MOA table, sorted: those the held-out protocol trains on."""
    return sorted(set(fields.loc[~annotated(fields), COMPOUND]))


def check_image_files(fields: pd.DataFrame, channels: list[str]) -> None:
    """Every image path must exist; names the first missing ones with their field."""
    missing = []
    for ch in channels:
        exists = np.array([os.path.isfile(p) for p in fields[path_column(ch)]])
        missing += [(f, ch, p) for f, p in zip(fields.loc[~exists, FIELD], fields.loc[~exists, path_column(ch)])]
    if missing:
        shown = "; ".join(f"{f} {ch}: {_path_problem(p)}" for f, ch, p in missing[:5])
        raise InputError(f"{len(missing)} image file(s) not found, e.g. {shown}")


def check_paths_inside(fields: pd.DataFrame, channels: list[str], root: str | Path) -> None:
    """Every image path resolves, after symbolic links, inside ``root``: an image table cannot point
    the workflow at files elsewhere on the machine."""
    base = os.path.realpath(root)
    for ch in channels:
        for field_id, path in zip(fields[FIELD], fields[path_column(ch)]):
            real = os.path.realpath(path)
            if os.path.commonpath([base, real]) != base:
                raise InputError(
                    f"{field_id} {ch}: {path} resolves to {real}, outside config input.image_root "
                    f"{root} (set input.allow_outside_root: true to read it anyway)"
                )


def _path_problem(path: str) -> str:
    if not path:
        return "empty path"
    return f"{path} is a directory" if os.path.isdir(path) else path


def plate_fields(fields: pd.DataFrame, plate: str) -> pd.DataFrame:
    return fields[fields[PLATE] == plate].reset_index(drop=True)


def join_well_profiles(
    table: pd.DataFrame, source, fields: pd.DataFrame, plate_column: str, well_column: str, family: str
) -> pd.DataFrame:
    """Attach well metadata (batch, compound, concentration, MOA) to another tool's well profiles.

    Every column other than the plate and well columns must be numeric; features are
    renamed ``<family>_<column>`` so the profiling code treats them as one family. Wells
    the image table does not keep (e.g. unannotated compounds) are dropped, and the caller
    reports how many; plates the image table does not have are an error, never a drop.
    """
    _require_columns(table, [plate_column, well_column], source)
    features = [c for c in table.columns if c not in (plate_column, well_column) and not c.startswith("Metadata_")]
    numeric = table[features].apply(pd.to_numeric, errors="coerce")
    bad = [c for c in features if numeric[c].isna().any()]
    if bad:
        raise InputError(f"{source}: non-numeric or empty values in feature column(s) {bad[:5]}")
    if not features:
        raise InputError(f"{source}: no feature columns besides {plate_column!r} and {well_column!r}")
    wells = fields[annotated(fields)].drop_duplicates([PLATE, WELL])[[PLATE, WELL, BATCH, COMPOUND, CONCENTRATION, MOA]]
    keys = pd.DataFrame(
        {PLATE: table[plate_column].astype(str).str.strip(), WELL: normalize_wells(table[well_column].astype(str))}
    )
    if keys.duplicated().any():
        first = keys[keys.duplicated()].iloc[0]
        raise InputError(f"{source}: more than one row for plate {first[PLATE]} well {first[WELL]}")
    unknown = sorted(set(keys[PLATE]) - set(wells[PLATE]))
    if unknown:
        raise InputError(
            f"{source}: {len(unknown)} plate(s) of the profile table are not in the image table, e.g. {unknown[:3]}: "
            "check --plate-column and the image table"
        )
    joined = pd.concat([keys, numeric.add_prefix(f"{family}_")], axis=1).merge(wells, on=[PLATE, WELL])
    if joined.empty:
        raise InputError(f"{source}: no (plate, well) matches the image table; check --plate-column/--well-column")
    return joined[[PLATE, WELL, BATCH, COMPOUND, CONCENTRATION, MOA] + [f"{family}_{c}" for c in features]]

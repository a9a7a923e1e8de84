"""``morphoprof-score``: score another tool's per-well profiles with morphoprof's normalization and MOA scoring.

The profile table (CSV/TSV/Parquet, e.g. CellProfiler per-well means) has one row per well,
a plate and a well column, and numeric feature columns. It is joined with BBBC021's image
and MOA tables (or a generic image table and MOA table), then run through the same
normalization, aggregation and scoring as the workflow, writing the same JSON.

  morphoprof-score wells.csv --image-table BBBC021_v1_image.csv \\
      --moa-table BBBC021_v1_moa.csv --out scores.json [--format bbbc021|table]
      [--plate-column Metadata_Plate] [--well-column Metadata_Well] [--normalization zscore]
"""

import argparse
import json
import sys
from pathlib import Path

from . import metadata, profiles, scoring, screen


def score_profiles(argv: list[str] | None = None) -> None:
    """The command line: parse, score, and end in one line with exit status 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="morphoprof-score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profiles", help="per-well profile table")
    parser.add_argument("--image-table", required=True)
    parser.add_argument("--moa-table", required=True)
    parser.add_argument("--format", choices=["bbbc021", "table"], default="bbbc021")
    parser.add_argument(
        "--channels",
        nargs="+",
        default=None,
        help="channels of the image table (default: BBBC021's DAPI Tubulin Actin)",
    )
    parser.add_argument("--control", default="DMSO")
    parser.add_argument("--plate-column", default="Metadata_Plate")
    parser.add_argument("--well-column", default="Metadata_Well")
    parser.add_argument("--family", default="External", help="name given to the profile's features")
    parser.add_argument("--normalization", choices=profiles.NORMALIZATIONS, default=None)
    parser.add_argument(
        "--config",
        help="a config (the whole file or only its 'profiles' block) over the defaults: "
        "its profiles block sets aggregation and normalization",
    )
    parser.add_argument("--out", required=True, help="scores JSON to write")
    parser.add_argument("--treatments", help="also write the treatment profiles (Parquet)")
    args = parser.parse_args(argv)
    try:
        score(args)
    except metadata.InputError as err:
        parser.exit(2, f"morphoprof-score: {err}\n")


def score(args) -> None:
    """Join, normalize, aggregate and score; write the JSON (and treatments) and print the headline."""
    settings = screen.partial_config(args.config, screen.CONFIG / "config.yaml", screen.CONFIG / "config.schema.yaml")[
        "profiles"
    ]
    if args.normalization:
        settings["normalization"] = args.normalization
    if args.format == "bbbc021":
        fields = metadata.bbbc021_fields(
            args.image_table, args.moa_table, ".", args.channels or list(metadata.BBBC021_CHANNELS)
        )
    else:
        fields = metadata.generic_fields(args.image_table, args.channels or [])
        fields = metadata.attach_moa(fields, metadata.read_moa_table(args.moa_table), args.control, args.moa_table)
    table = metadata.read_table(args.profiles)
    wells = metadata.join_well_profiles(table, args.profiles, fields, args.plate_column, args.well_column, args.family)
    print(
        f"{args.profiles}: {len(wells)} of {len(table)} wells matched the image table's annotated wells; "
        f"{len(table) - len(wells)} left out",
        file=sys.stderr,
    )
    normalized, treatments = profiles.build_profiles(wells, args.control, settings)
    summary, _ = scoring.evaluate(treatments, args.family, wells=normalized, control=args.control)
    summary["normalization"] = settings["normalization"]
    Path(args.out).write_text(json.dumps(summary, indent=2))
    if args.treatments:
        treatments.to_parquet(args.treatments, index=False)
    shown = {k: scoring.shown(summary[k]) for k in scoring.RETRIEVAL}
    print(
        f"NSC {shown['nsc']}  NSCB {shown['nscb']} ({summary['nscb_scored_treatments']} treatments)  "
        f"NSCB common {shown['nscb_common']} ({summary['nscb_common_treatments']})  mAP {shown['map']}"
    )
    for score, reason in summary["undefined"].items():
        print(f"{score} not scored: {reason}")

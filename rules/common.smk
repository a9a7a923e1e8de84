import functools
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from morphoprof import metadata, segmentation, workflow as mp_workflow  # noqa: E402


validate(config, schema="../config/config.schema.yaml")

FIELDS = mp_workflow.load_fields(config)
PLATES = sorted(FIELDS[metadata.PLATE].unique())
CHANNELS = list(config["channels"])
SIMULATED = config["input"]["format"] == "simulated"
if config["segmentation"]["model"] == "train" and not SIMULATED:
    raise metadata.InputError(
        "config segmentation.model: 'train' learns from the simulator's ground truth; for a real screen "
        "name a Cellpose built-in model (nuclei, cyto3) or a model file"
    )


wildcard_constraints:
    plate="|".join(PLATES),
    channel="|".join(CHANNELS),


@functools.cache
def fields_of(plate):
    """A plate's fields as records: passed as params, so a plate reruns only when its fields change.

    Cached: several rules per plate ask for them, and building records is the bulk of planning time."""
    return metadata.plate_fields(FIELDS, plate).to_dict("records")


def plate_records(wildcards):
    return fields_of(wildcards.plate)


def simulated_images(wildcards):
    """The simulator's output folder of a plate; a user's images exist before the run."""
    return f"{mp_workflow.SIMULATED_IMAGES}/{wildcards.plate}" if SIMULATED else []


def illumination_functions(wildcards):
    if not config["illumination"]["correct"]:
        return []
    return expand("results/illumination/{plate}/{channel}.tif", plate=wildcards.plate, channel=CHANNELS)


def illumination_plots():
    if not config["illumination"]["correct"]:
        return []
    return expand("results/plots/illumination/{plate}_{channel}.png", plate=PLATES, channel=CHANNELS)


def simulated_tables():
    """The simulated screen's image and MOA tables, beside its images."""
    return ["results/simulated/images.csv", "results/simulated/moa.csv"] if SIMULATED else []


def segmentation_model():
    spec = config["segmentation"]["model"]
    return "results/models/cellpose_nuclei.pth" if spec == "train" else spec


def model_inputs(wildcards):
    """The model file, when the model is a file; built-in names are fetched by Cellpose itself."""
    model = segmentation_model()
    return [] if model in segmentation.BUILTIN_MODELS else [model]

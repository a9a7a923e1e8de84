import re
from pathlib import Path

from morphoprof import families, metadata, screen, segmentation

FIELDS = screen.plan(config, Path(workflow.basedir) / "config" / "config.schema.yaml")
PLATES = sorted(FIELDS[metadata.PLATE].unique())
CHANNELS = list(config["channels"])
SIMULATED = config["input"]["format"] == "simulated"
WHOLE_CELLS = bool(config["segmentation"]["cells"]["model"])  # cells segmented around the nuclei
TRAINING_FOLDER = config["segmentation"]["train"]["images"]
WEIGHTS = config["features"]["weights"]  # imagenet | trained: the backbone also fine-tuned on this screen
TRAINED_WEIGHTS = "results/models/features.pt"
MODEL_CHECK = "results/models/segmentation_check.json"  # what the nuclei model finds, before any plate is segmented


wildcard_constraints:
    plate="|".join(map(re.escape, PLATES)),
    channel="|".join(map(re.escape, CHANNELS)),


def memory(mb):
    """A rule's mem_mb: ``mb`` on the first attempt, doubled on each retry of a job killed for memory."""
    return lambda wildcards, attempt: mb * 2 ** (attempt - 1)


def minutes(runtime):
    """A rule's runtime in minutes, doubled on each retry."""
    return lambda wildcards, attempt: runtime * 2 ** (attempt - 1)


def cpus_per_gpu(wildcards, threads):
    """A GPU rule's CPUs under SLURM: its threads, which read stacks ahead and compute masks beside the GPU."""
    return threads


def plate_records(wildcards):
    """A plate's fields as records, the params of its check_images job: the plate reruns when they
    change. Its manifest then carries them to the plate's other jobs."""
    return metadata.plate_fields(FIELDS, wildcards.plate).to_dict("records")


def simulated_images(wildcards):
    """The simulator's output folder of a plate; a user's images exist before the run."""
    return f"{screen.SIMULATED_IMAGES}/{wildcards.plate}" if SIMULATED else []


def illumination_functions(wildcards):
    if not config["illumination"]["correct"]:
        return []
    return expand("results/illumination/{plate}/{channel}.tif", plate=wildcards.plate, channel=CHANNELS)


def illumination_outputs():
    """With illumination.correct, qc_illumination also writes each channel's function and its plot."""
    if not config["illumination"]["correct"]:
        return {}

    def plot(channel):
        return report(
            f"results/plots/illumination/{{plate}}_{channel}.png",
            caption="../report/illumination.rst",
            category="Illumination",
            subcategory="{plate}",
            labels={"plate": "{plate}", "channel": channel},
        )

    return {
        "functions": expand("results/illumination/{{plate}}/{channel}.tif", channel=CHANNELS),
        "plots": [plot(channel) for channel in CHANNELS],
    }


def dark_frames(wildcards):
    """The camera's dark frames, where the config names them: their mean is subtracted before correction."""
    return {"dark_frames": config["illumination"]["dark_frames"]} if config["illumination"]["dark_frames"] else {}


def illumination_plots():
    if not config["illumination"]["correct"]:
        return []
    return expand("results/plots/illumination/{plate}_{channel}.png", plate=PLATES, channel=CHANNELS)


def segmentation_accuracy():
    """Masks scored against ground truth, where there is one: the simulated screen."""
    return ["results/scores/segmentation_accuracy.csv"] if SIMULATED else []


def ceiling_scores():
    """The scores of the simulator's own phenotype parameters, where there are some."""
    return ["results/scores/ceiling.csv"] if SIMULATED else []


def simulated_tables():
    """The simulated screen's image and MOA tables, beside its images."""
    return ["results/simulated/images.csv", "results/simulated/moa.csv"] if SIMULATED else []


def training_inputs(wildcards):
    """A user's annotated folder when configured, else the simulator's first plate and its masks."""
    if TRAINING_FOLDER:
        return {"annotations": TRAINING_FOLDER}
    return {
        "manifest": f"results/manifests/{PLATES[0]}.parquet",
        "images": f"{screen.SIMULATED_IMAGES}/{PLATES[0]}",
        "masks": f"{screen.SIMULATED_MASKS}/{PLATES[0]}",
    }


def feature_inputs(wildcards):
    """Corrected fields; with single-cell features, also the nuclei centres of the per-cell table."""
    inputs = {
        "manifest": f"results/manifests/{wildcards.plate}.parquet",
        "images": f"results/corrected/{wildcards.plate}",
    }
    if families.embeds_cells(config["features"]["level"]):
        inputs["cells"] = f"results/cells/{wildcards.plate}.parquet"
    return inputs


def trained_profiles(wildcards):
    """With features.weights: trained, the features of the trained backbone, merged into the profiles."""
    if WEIGHTS != "trained":
        return {}
    return {"trained": expand("results/features/{plate}_trained.parquet", plate=PLATES)}


def training_record(wildcards):
    """With features.weights: trained, the trained weights' JSON sidecar: moa.json names the protocol."""
    return {"training": f"{TRAINED_WEIGHTS}.json"} if WEIGHTS == "trained" else {}


def training_outputs():
    """With features.weights: trained, the training history and its plot, in the report."""
    if WEIGHTS != "trained":
        return []
    return ["results/models/features_training.csv", "results/plots/features_training.png"]


def cell_embeddings_output():
    """With features.export_cells, extract_features also writes each nucleus's embedding."""
    if not config["features"]["export_cells"]:
        return {}
    return {"cell_embeddings": "results/cells/{plate}_embeddings.parquet"}


def cellprofiler_profiles(wildcards):
    """With features.cellprofiler, the field means of CellProfiler's measurements, merged into the profiles."""
    if not config["features"]["cellprofiler"]:
        return {}
    return {"cellprofiler": expand("results/features/{plate}_cellprofiler.parquet", plate=PLATES)}


def scored_families():
    """The families scored beside the configured level: the baselines, and with features.cellprofiler
    the CellProfiler family alone and combined with the level's: ``Nuclei``, or ``Nuclei+Cells``
    where whole cells are segmented and measured too."""
    baselines = list(config["scoring"]["baselines"])
    if config["features"]["cellprofiler"]:
        cellprofiler = "Nuclei+Cells" if WHOLE_CELLS else "Nuclei"
        baselines += [cellprofiler, f"{families.level_family(config['features']['level'], WEIGHTS)}+{cellprofiler}"]
    return baselines


def segmentation_plots():
    return expand("results/plots/segmentation/{plate}_{plot}.png", plate=PLATES, plot=["cell_counts", "overlays"])


def segmentation_model():
    spec = config["segmentation"]["model"]
    return "results/models/cellpose_nuclei.pth" if spec == "train" else spec


def model_inputs(wildcards):
    """The model file, when the model is a file; built-in names are fetched by Cellpose itself."""
    model = segmentation_model()
    return [] if model in segmentation.BUILTIN_MODELS else [model]


def model_check_inputs(wildcards):
    """What the nuclei model is checked on before any plate is segmented: a few raw fields of the
    first plate and, on the simulated screen, their ground truth; and the model file, if one."""
    inputs = {"manifest": f"results/manifests/{PLATES[0]}.parquet", "model": model_inputs(wildcards)}
    if SIMULATED:
        inputs["truth"] = f"{screen.SIMULATED_MASKS}/{PLATES[0]}"
    return inputs

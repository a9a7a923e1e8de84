# morphoprof: plates of multi-channel fluorescence images -> morphological profiles -> MOA scores.
from snakemake.utils import min_version

min_version("9.0")

from morphoprof import screen

screen.check_yaml("config/config.yaml")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/simulate.smk"
include: "rules/preprocess.smk"
include: "rules/segmentation.smk"
include: "rules/features.smk"
include: "rules/profiles.smk"


rule all:
    default_target: True
    input:
        "results/profiles/treatments.parquet",
        "results/scores/moa.json",
        "results/plots/confusion_matrix.png",
        "results/plots/umap.png",
        "results/scores/normalizations.csv",
        "results/scores/headline.csv",
        "results/qc/summary.csv",
        expand("results/cells/{plate}.parquet", plate=PLATES),
        segmentation_plots(),
        illumination_plots(),
        simulated_tables(),
        segmentation_accuracy(),
        ceiling_scores(),
        training_outputs(),
    localrule: True

"""Rule train_features: the feature backbone fine-tuned on the screen's own cells, under the
configured protocol, with its training history."""

import json

import pandas as pd
import torch
from tqdm import tqdm

from morphoprof import features, jobs, metadata, plots, training

log = jobs.start_job(snakemake)
settings = snakemake.params.settings
fields, image_qc, cell_table = (
    pd.concat([pd.read_parquet(p) for p in tables], ignore_index=True)
    for tables in (snakemake.input.manifests, snakemake.input.qc, snakemake.input.cells)
)
passing = fields[metadata.FIELD].isin(image_qc.loc[image_qc[metadata.QC_PASS], metadata.FIELD])
fields = training.training_fields(
    fields[passing],
    protocol=settings["protocol"],
    labels=settings["labels"],
    control=settings["control"],
    min_compounds=settings["min_compounds"],
)
with tqdm(total=len(fields), desc="train_features: crops") as progress:
    cells = training.training_cells(
        fields,
        cell_table,
        dict(zip(snakemake.params.plates, snakemake.input.images)),
        crop_size=settings["crop_size"],
        crops_per_field=settings["crops_per_field"],
        validation_wells=settings["validation_wells"],
        seed=settings["seed"],
        progress=progress,
    )
log.info(
    "%s protocol: %d crops of %d classes (%d held out for validation)",
    settings["protocol"],
    len(cells.labels),
    len(cells.classes),
    int(cells.validation.sum()),
)
device = jobs.pick_device()
with tqdm(total=settings["epochs"], desc="train_features: epochs") as progress:
    state, history, chosen = training.train(
        cells,
        features.load_backbone(settings["backbone"], settings["weights_dir"]),
        epochs=settings["epochs"],
        learning_rate=settings["learning_rate"],
        schedule=settings["schedule"],
        weight_decay=settings["weight_decay"],
        batch_size=settings["batch_size"],
        plate_batches=settings["plate_batches"],
        mixup=settings["mixup"],
        cell_scale=settings["cell_scale"],
        precision=settings["precision"],
        seed=settings["seed"],
        device=device,
        progress=progress,
    )
torch.save(state, snakemake.output.weights)
sidecar = training.weights_sidecar(cells, settings, history, chosen, device)
with open(snakemake.output.sidecar, "w") as out:
    json.dump(sidecar, out, indent=2)
history.to_csv(snakemake.output.history, index=False)
plots.training_curve(history, chosen, f"{settings['backbone']}, {settings['protocol']}", snakemake.output.plot)
log.info("kept epoch %d of %d (%s)", chosen, settings["epochs"], sidecar["chosen_by"])

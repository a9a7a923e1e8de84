"""Rule extract_features: whole-field CNN features (and the mean-intensity baseline) of a plate."""

import pandas as pd
from tqdm import tqdm

from morphoprof import features, metadata, workflow

log = workflow.start_job(snakemake)  # noqa: F821
settings = snakemake.params.settings  # noqa: F821
channels = snakemake.params.channels  # noqa: F821
fields = pd.DataFrame(snakemake.params.fields)  # noqa: F821
device = workflow.pick_device()
embedder = features.FieldEmbedder(features.load_backbone(settings["backbone"], settings["weights_dir"]), device,
                                  settings["scale"])
ids = list(fields[metadata.FIELD])
with tqdm(total=len(ids), desc=f"features {snakemake.wildcards.plate}") as progress:  # noqa: F821
    embedding, baseline = features.extract_plate(embedder, snakemake.input[0], ids, channels,  # noqa: F821
                                                 settings["batch_size"] or features.default_batch_size(device),
                                                 progress)
names = features.cnn_feature_names(channels, embedding.shape[1] // len(channels))
meta = fields[[c for c in fields.columns if c.startswith("Metadata_")]].reset_index(drop=True)
table = pd.concat([meta, pd.DataFrame(baseline), pd.DataFrame(embedding, columns=names)], axis=1)
table.to_parquet(snakemake.output[0], index=False)  # noqa: F821
log.info("%d fields x %d CNN features (%s on %s)", len(table), len(names), settings["backbone"], device)

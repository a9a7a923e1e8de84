rule extract_features:
    input:
        unpack(feature_inputs),
    output:
        **cell_embeddings_output(),
        features="results/features/{plate}.parquet",
    log:
        "logs/extract_features/{plate}.log",
    benchmark:
        "benchmarks/extract_features/{plate}.tsv"
    retries: 1
    conda:
        "../envs/deep.yaml"
    threads: 8  # read-ahead threads; fewer where --cores gives fewer
    resources:
        mem_mb=memory(16000),
        runtime=minutes(240),
        gpu=1,
        cpus_per_gpu=cpus_per_gpu,
    params:
        channels=CHANNELS,
        settings=config["features"],
    script:
        "../scripts/extract_features.py"

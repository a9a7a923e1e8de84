rule extract_features:
    input:
        unpack(feature_inputs),
    output:
        "results/features/{plate}.parquet",
    log:
        "logs/extract_features/{plate}.log",
    benchmark:
        "benchmarks/extract_features/{plate}.tsv"
    conda:
        "../envs/deep.yaml"
    threads: 8  # read-ahead threads; fewer where --cores gives fewer
    resources:
        gpu=1,
    params:
        channels=CHANNELS,
        settings=config["features"],
    script:
        "../scripts/extract_features.py"

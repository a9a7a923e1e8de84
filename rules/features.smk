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
        settings=screen.feature_settings(config),
    script:
        "../scripts/extract_features.py"


rule train_features:
    input:
        manifests=expand("results/manifests/{plate}.parquet", plate=PLATES),
        qc=expand("results/qc/{plate}.parquet", plate=PLATES),
        cells=expand("results/cells/{plate}.parquet", plate=PLATES),
        images=expand("results/corrected/{plate}", plate=PLATES),
    output:
        weights=TRAINED_WEIGHTS,
        sidecar=f"{TRAINED_WEIGHTS}.json",
        history="results/models/features_training.csv",
        plot=report(
            "results/plots/features_training.png", caption="../report/features_training.rst", category="Features"
        ),
    log:
        "logs/train_features.log",
    benchmark:
        "benchmarks/train_features.tsv"
    retries: 1
    conda:
        "../envs/deep.yaml"
    threads: 8
    resources:
        mem_mb=memory(16000),
        runtime=minutes(480),
        gpu=1,
        cpus_per_gpu=cpus_per_gpu,
    params:
        plates=PLATES,
        settings=screen.training_settings(config),
    script:
        "../scripts/train_features.py"


rule extract_trained_features:
    input:
        unpack(feature_inputs),
        weights=TRAINED_WEIGHTS,
    output:
        features="results/features/{plate}_trained.parquet",
    log:
        "logs/extract_trained_features/{plate}.log",
    benchmark:
        "benchmarks/extract_trained_features/{plate}.tsv"
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
        settings=screen.feature_settings(config),
    script:
        "../scripts/extract_features.py"


rule measure_cellprofiler:
    input:
        manifest="results/manifests/{plate}.parquet",
        images="results/corrected/{plate}",
        masks="results/masks/{plate}",
    output:
        cells="results/cells/{plate}_cellprofiler.parquet",
        fields="results/features/{plate}_cellprofiler.parquet",
    log:
        "logs/measure_cellprofiler/{plate}.log",
    benchmark:
        "benchmarks/measure_cellprofiler/{plate}.tsv"
    conda:
        "../envs/deep.yaml"
    threads: 8  # fields measured at once, one per worker process
    resources:
        mem_mb=memory(8000),
        runtime=minutes(240),
    params:
        channels=CHANNELS,
        cellprofiler=config["features"]["cellprofiler"],
        cells=WHOLE_CELLS,
    script:
        "../scripts/measure_cellprofiler.py"

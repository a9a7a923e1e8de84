rule aggregate_profiles:
    input:
        features=expand("results/features/{plate}.parquet", plate=PLATES),
        qc=expand("results/qc/{plate}.parquet", plate=PLATES),
    output:
        wells="results/profiles/wells.parquet",
        treatments="results/profiles/treatments.parquet",
    params:
        control=config["control"],
        settings=config["profiles"],
    log:
        "logs/aggregate_profiles.log",
    conda:
        "../envs/profiling.yaml"
    script:
        "../scripts/aggregate_profiles.py"


rule score_moa:
    input:
        "results/profiles/treatments.parquet",
    output:
        scores="results/scores/moa.json",
        table="results/scores/treatments.csv",
        confusion="results/plots/confusion_matrix.png",
        umap="results/plots/umap.png",
    params:
        family=config["scoring"]["family"],
        baselines=config["scoring"]["baselines"],
    log:
        "logs/score_moa.log",
    conda:
        "../envs/profiling.yaml"
    script:
        "../scripts/score_moa.py"

rule aggregate_profiles:
    input:
        unpack(cellprofiler_profiles),
        unpack(trained_profiles),
        features=expand("results/features/{plate}.parquet", plate=PLATES),
        qc=expand("results/qc/{plate}.parquet", plate=PLATES),
        segmentation_qc=expand("results/qc/segmentation/{plate}.parquet", plate=PLATES),
    output:
        "results/profiles/wells_raw.parquet",
    log:
        "logs/aggregate_profiles.log",
    localrule: True
    conda:
        "../envs/profiling.yaml"
    params:
        method=config["profiles"]["aggregate"],
        nuclear=CHANNELS[0],
        blank_contrast=config["qc"]["blank_contrast"],
    script:
        "../scripts/aggregate_profiles.py"


rule normalize_profiles:
    input:
        "results/profiles/wells_raw.parquet",
    output:
        wells="results/profiles/wells.parquet",
        treatments="results/profiles/treatments.parquet",
    log:
        "logs/normalize_profiles.log",
    localrule: True
    conda:
        "../envs/profiling.yaml"
    params:
        control=config["control"],
        settings=config["profiles"],
    script:
        "../scripts/normalize_profiles.py"


rule score_moa:
    input:
        unpack(training_record),
        treatments="results/profiles/treatments.parquet",
        wells="results/profiles/wells.parquet",
    output:
        scores="results/scores/moa.json",
        table=report("results/scores/treatments.csv", caption="../report/treatments.rst", category="Scores"),
        confusion=report("results/plots/confusion_matrix.png", caption="../report/confusion.rst", category="Scores"),
        umap=report("results/plots/umap.png", caption="../report/umap.rst", category="Profiles"),
        heatmap=report("results/plots/similarity_heatmap.png", caption="../report/heatmap.rst", category="Profiles"),
        distances=report("results/plots/distances.png", caption="../report/distances.rst", category="Profiles"),
    log:
        "logs/score_moa.log",
    localrule: True
    conda:
        "../envs/profiling.yaml"
    params:
        control=config["control"],
        family=families.level_family(config["features"]["level"], WEIGHTS),
        levels=families.scored_levels(config["features"]["level"], WEIGHTS),
        baselines=scored_families(),
    script:
        "../scripts/score_moa.py"


rule compare_normalizations:
    input:
        "results/profiles/wells_raw.parquet",
    output:
        table=report("results/scores/normalizations.csv", caption="../report/normalizations.rst", category="Scores"),
        plot=report("results/plots/normalizations.png", caption="../report/normalizations.rst", category="Scores"),
    log:
        "logs/compare_normalizations.log",
    localrule: True
    conda:
        "../envs/profiling.yaml"
    params:
        control=config["control"],
        settings=config["profiles"],
        families=[*families.scored_levels(config["features"]["level"], WEIGHTS).values(), *scored_families()],
    script:
        "../scripts/compare_normalizations.py"


rule report_summary:
    input:
        scores="results/scores/moa.json",
        manifests=expand("results/manifests/{plate}.parquet", plate=PLATES),
        qc=expand("results/qc/{plate}.parquet", plate=PLATES),
        segmentation_qc=expand("results/qc/segmentation/{plate}.parquet", plate=PLATES),
    output:
        scores=report("results/scores/headline.csv", caption="../report/headline.rst", category="Scores"),
        qc=report("results/qc/summary.csv", caption="../report/qc_summary.rst", category="Quality control"),
    log:
        "logs/report_summary.log",
    localrule: True
    conda:
        "../envs/profiling.yaml"
    script:
        "../scripts/report_summary.py"


rule score_ceiling:
    input:
        "results/simulated/phenotypes.csv",
    output:
        report("results/scores/ceiling.csv", caption="../report/ceiling.rst", category="Scores"),
    log:
        "logs/score_ceiling.log",
    localrule: True
    conda:
        "../envs/profiling.yaml"
    script:
        "../scripts/score_ceiling.py"

rule simulate_plate:
    output:
        images=directory("results/simulated/images/{plate}"),
        masks=directory("results/simulated/masks/{plate}"),
        illumination=directory("results/simulated/illumination/{plate}"),
    log:
        "logs/simulate_plate/{plate}.log",
    benchmark:
        "benchmarks/simulate_plate/{plate}.tsv"
    conda:
        "../envs/imaging.yaml"
    resources:
        mem_mb=memory(2000),
        runtime=minutes(60),
    params:
        screen=config["simulate"],
    script:
        "../scripts/simulate_plate.py"


rule simulate_tables:
    output:
        images="results/simulated/images.csv",
        moa="results/simulated/moa.csv",
        phenotypes="results/simulated/phenotypes.csv",
    log:
        "logs/simulate_tables.log",
    localrule: True
    conda:
        "../envs/imaging.yaml"
    params:
        screen=config["simulate"],
    script:
        "../scripts/simulate_tables.py"

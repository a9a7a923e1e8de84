rule check_images:
    input:
        simulated_images,
    output:
        "results/manifests/{plate}.parquet",
    log:
        "logs/check_images/{plate}.log",
    localrule: True
    conda:
        "../envs/imaging.yaml"
    params:
        fields=plate_records,
        channels=CHANNELS,
        decode_compressed=config["input"].get("decode_compressed", True),
    script:
        "../scripts/check_images.py"


rule qc_plate:
    input:
        manifest="results/manifests/{plate}.parquet",
    output:
        table="results/qc/{plate}.parquet",
        plot=report(
            "results/plots/qc/{plate}.png",
            caption="../report/image_qc.rst",
            category="Quality control",
            labels={"plate": "{plate}"},
        ),
    log:
        "logs/qc_plate/{plate}.log",
    benchmark:
        "benchmarks/qc_plate/{plate}.tsv"
    conda:
        "../envs/imaging.yaml"
    resources:
        mem_mb=memory(4000),
        runtime=minutes(60),
    params:
        channels=CHANNELS,
        qc=config["qc"],
    script:
        "../scripts/qc_plate.py"


rule illumination_function:
    input:
        unpack(dark_frames),
        manifest="results/manifests/{plate}.parquet",
        qc="results/qc/{plate}.parquet",
    output:
        function="results/illumination/{plate}/{channel}.tif",
        plot=report(
            "results/plots/illumination/{plate}_{channel}.png",
            caption="../report/illumination.rst",
            category="Illumination",
            subcategory="{plate}",
            labels={"plate": "{plate}", "channel": "{channel}"},
        ),
    log:
        "logs/illumination_function/{plate}_{channel}.log",
    benchmark:
        "benchmarks/illumination_function/{plate}_{channel}.tsv"
    conda:
        "../envs/imaging.yaml"
    resources:
        mem_mb=memory(4000),
        runtime=minutes(60),
    params:
        settings=config["illumination"],
    script:
        "../scripts/illumination_function.py"


rule correct_plate:
    input:
        unpack(dark_frames),
        manifest="results/manifests/{plate}.parquet",
        functions=illumination_functions,
    output:
        directory("results/corrected/{plate}"),
    log:
        "logs/correct_plate/{plate}.log",
    benchmark:
        "benchmarks/correct_plate/{plate}.tsv"
    retries: 1
    conda:
        "../envs/imaging.yaml"
    resources:
        mem_mb=memory(8000),
        runtime=minutes(120),
    params:
        channels=CHANNELS,
        intensity=config["intensity"],
        dark_level=config["illumination"]["dark_level"],
        dark_frames=config["illumination"]["dark_frames"],
    script:
        "../scripts/correct_plate.py"

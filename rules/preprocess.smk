rule check_images:
    input:
        simulated_images,
    output:
        "results/manifests/{plate}.parquet",
    log:
        "logs/check_images/{plate}.log",
    benchmark:
        "benchmarks/check_images/{plate}.tsv"
    localrule: True
    conda:
        "../envs/imaging.yaml"
    params:
        fields=plate_records,
        channels=CHANNELS,
        decode_compressed=config["input"].get("decode_compressed", True),
    script:
        "../scripts/check_images.py"


rule qc_illumination:
    input:
        unpack(dark_frames),
        manifest="results/manifests/{plate}.parquet",
    output:
        **illumination_outputs(),
        table="results/qc/{plate}.parquet",
        plot=report(
            "results/plots/qc/{plate}.png",
            caption="../report/image_qc.rst",
            category="Quality control",
            labels={"plate": "{plate}"},
        ),
        samples="results/samples/{plate}.npy",
    log:
        "logs/qc_illumination/{plate}.log",
    benchmark:
        "benchmarks/qc_illumination/{plate}.tsv"
    conda:
        "../envs/imaging.yaml"
    resources:
        mem_mb=memory(4000),
        runtime=minutes(60),
    params:
        channels=CHANNELS,
        qc=config["qc"],
        illumination=config["illumination"],
    script:
        "../scripts/qc_illumination.py"


rule correct_plate:
    input:
        unpack(dark_frames),
        manifest="results/manifests/{plate}.parquet",
        functions=illumination_functions,
        samples="results/samples/{plate}.npy",
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

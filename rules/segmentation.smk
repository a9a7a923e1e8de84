rule train_cellpose:
    input:
        unpack(training_inputs),
    output:
        model="results/models/cellpose_nuclei.pth",
        meta="results/models/cellpose_nuclei.pth.json",
    log:
        "logs/train_cellpose.log",
    benchmark:
        "benchmarks/train_cellpose.tsv"
    retries: 1
    conda:
        "../envs/deep.yaml"
    threads: 2
    resources:
        mem_mb=memory(16000),
        runtime=minutes(240),
        gpu=1,
        cpus_per_gpu=cpus_per_gpu,
    params:
        nuclei_channel=CHANNELS[0],
        settings=config["segmentation"]["train"],
    script:
        "../scripts/train_cellpose.py"


rule check_segmentation_model:
    input:
        unpack(model_check_inputs),
    output:
        MODEL_CHECK,
    log:
        "logs/check_segmentation_model.log",
    benchmark:
        "benchmarks/check_segmentation_model.tsv"
    conda:
        "../envs/deep.yaml"
    threads: 2
    resources:
        mem_mb=memory(8000),
        runtime=minutes(30),
        gpu=1,
        cpus_per_gpu=cpus_per_gpu,
    params:
        plate=PLATES[0],
        nuclear=CHANNELS[0],
        model=segmentation_model(),
        trained=config["segmentation"]["model"] == "train",
        settings=screen.segmentation_settings(config, nuclei=True),
        min_cells=config["segmentation"]["qc"]["min_cells"],
    script:
        "../scripts/check_segmentation_model.py"


rule segment_plate:
    input:
        manifest="results/manifests/{plate}.parquet",
        images="results/corrected/{plate}",
        model=model_inputs,
        checked=MODEL_CHECK,
    output:
        masks=directory("results/masks/{plate}"),
        table="results/segmentation/{plate}.parquet",
        cells="results/cells/{plate}.parquet",
    log:
        "logs/segment_plate/{plate}.log",
    benchmark:
        "benchmarks/segment_plate/{plate}.tsv"
    retries: 1
    conda:
        "../envs/deep.yaml"
    threads: 8  # read-ahead threads and mask workers; fewer where --cores gives fewer
    resources:
        mem_mb=memory(16000),
        runtime=minutes(240),
        gpu=1,
        cpus_per_gpu=cpus_per_gpu,
    params:
        channels=CHANNELS,
        model=segmentation_model(),
        settings=screen.segmentation_settings(config),
    script:
        "../scripts/segment_plate.py"


rule segmentation_qc:
    input:
        manifest="results/manifests/{plate}.parquet",
        table="results/segmentation/{plate}.parquet",
        images="results/corrected/{plate}",
        masks="results/masks/{plate}",
    output:
        table="results/qc/segmentation/{plate}.parquet",
        counts=report(
            "results/plots/segmentation/{plate}_cell_counts.png",
            caption="../report/cell_counts.rst",
            category="Segmentation",
            labels={"plate": "{plate}", "plot": "cell counts"},
        ),
        overlays=report(
            "results/plots/segmentation/{plate}_overlays.png",
            caption="../report/overlays.rst",
            category="Segmentation",
            labels={"plate": "{plate}", "plot": "overlays"},
        ),
    log:
        "logs/segmentation_qc/{plate}.log",
    benchmark:
        "benchmarks/segmentation_qc/{plate}.tsv"
    conda:
        "../envs/imaging.yaml"
    resources:
        mem_mb=memory(4000),
        runtime=minutes(60),
    params:
        settings=config["segmentation"]["qc"],
        overlays=4,
        cells=WHOLE_CELLS,
    script:
        "../scripts/segmentation_qc.py"


rule segmentation_accuracy:
    input:
        manifests=expand("results/manifests/{plate}.parquet", plate=PLATES),
        masks=expand("results/masks/{plate}", plate=PLATES),
        truth=expand("{folder}/{plate}", folder=screen.SIMULATED_MASKS, plate=PLATES),
    output:
        report(
            "results/scores/segmentation_accuracy.csv",
            caption="../report/segmentation_accuracy.rst",
            category="Segmentation",
        ),
    log:
        "logs/segmentation_accuracy.log",
    localrule: True
    conda:
        "../envs/deep.yaml"
    params:
        plates=PLATES,
        iou=0.5,
    script:
        "../scripts/segmentation_accuracy.py"


rule preview_segmentation:
    input:
        manifest=f"results/manifests/{PLATES[0]}.parquet",
        model=model_inputs,
    output:
        "results/preview/segmentation.png",
    log:
        "logs/preview_segmentation.log",
    localrule: True
    conda:
        "../envs/deep.yaml"
    params:
        fields=config["preview_fields"],
        nuclear=CHANNELS[0],
        model=segmentation_model(),
        settings=screen.segmentation_settings(config, nuclei=True),
    script:
        "../scripts/preview_segmentation.py"

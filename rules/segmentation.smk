rule train_cellpose:
    input:
        images=f"{mp_workflow.SIMULATED_IMAGES}/{PLATES[0]}",
        masks=f"{mp_workflow.SIMULATED_MASKS}/{PLATES[0]}",
    output:
        model="results/models/cellpose_nuclei.pth",
        meta="results/models/cellpose_nuclei.pth.json",
    params:
        fields=fields_of(PLATES[0]),
        nuclei_channel=CHANNELS[0],
        settings=config["segmentation"]["train"],
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/train_cellpose.log",
    conda:
        "../envs/deep.yaml"
    script:
        "../scripts/train_cellpose.py"


rule segment_plate:
    input:
        images="results/corrected/{plate}",
        model=model_inputs,
    output:
        masks=directory("results/masks/{plate}"),
        table="results/segmentation/{plate}.parquet",
    params:
        fields=plate_records,
        model=segmentation_model(),
        settings=config["segmentation"],
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/segment_plate/{plate}.log",
    conda:
        "../envs/deep.yaml"
    script:
        "../scripts/segment_plate.py"

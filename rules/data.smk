rule fetch_dataset:
    # Runs on the submit host (localrules): compute nodes may have no internet. prepare_data then
    # reads the Hugging Face cache offline.
    output:
        f"{R}/hub/data/{{name}}.json",
    params:
        spec=lookup(dpath="datasets/{name}/hf", within=CFG),
    log:
        f"{R}/logs/fetch_dataset/{{name}}.log",
    script:
        "../workflow/scripts/fetch_dataset.py"


rule source_stamp:
    # A local dataset's (or model directory's) files, each with its sha256: the reader depends on this
    # record, so an edited file reruns what it feeds and a touched but unchanged one nothing else.
    input:
        source_files,
    output:
        f"{R}/sources/{{source}}.json",
    log:
        f"{R}/logs/source_stamp/{{source}}.log",
    run:
        from merge2mix.sources import stamp

        stamp(list(input), output[0])


rule prepare_data:
    input:
        hub=hub_dataset_record,
        source=dataset_stamp,
    output:
        train=f"{R}/data/{{name}}/train.parquet",
        val=f"{R}/data/{{name}}/val.parquet",
        test=f"{R}/data/{{name}}/test.parquet",
        meta=f"{R}/data/{{name}}/meta.json",
    params:
        dataset=lookup(dpath="datasets/{name}", within=CFG),
        labels=TASK.get("labels"),  # None: per-dataset classes (clip, text_label_description), or none (causal_lm)
        splits=CFG["splits"],
        seed=CFG["seed"],
    log:
        f"{R}/logs/prepare_data/{{name}}.log",
    script:
        "../workflow/scripts/prepare_data.py"

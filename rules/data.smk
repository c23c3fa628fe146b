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


rule prepare_data:
    input:
        hub=hub_dataset_record,
    output:
        train=f"{R}/data/{{name}}/train.parquet",
        val=f"{R}/data/{{name}}/val.parquet",
        test=f"{R}/data/{{name}}/test.parquet",
        meta=f"{R}/data/{{name}}/meta.json",
    params:
        dataset=lookup(dpath="datasets/{name}", within=CFG),
        content=source_content,  # a local file's sha256: edited, this reruns; touched, nothing does
        labels=TASK.get("labels"),  # None: per-dataset classes (clip, text_label_description), or none (causal_lm)
        splits=CFG["splits"],
        seed=CFG["seed"],
    log:
        f"{R}/logs/prepare_data/{{name}}.log",
    script:
        "../workflow/scripts/prepare_data.py"

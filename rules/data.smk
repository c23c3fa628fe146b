rule prepare_data:
    output:
        train=f"{R}/data/{{name}}/train.parquet",
        val=f"{R}/data/{{name}}/val.parquet",
        test=f"{R}/data/{{name}}/test.parquet",
        meta=f"{R}/data/{{name}}/meta.json",
    params:
        dataset=lookup(dpath="datasets/{name}", within=CFG),
        labels=TASK["labels"],
        splits=CFG["splits"],
        seed=CFG["seed"],
    log:
        f"{R}/logs/prepare_data/{{name}}.log",
    script:
        "../workflow/scripts/prepare_data.py"

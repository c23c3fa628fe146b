rule fetch_model:
    # Runs on the submit host (localrules): compute nodes may have no internet. init_model then
    # reads the Hugging Face cache offline.
    output:
        f"{R}/hub/model.json",
    params:
        asset=MODEL_ASSET,
    log:
        f"{R}/logs/fetch_model.log",
    script:
        "../workflow/scripts/fetch_model.py"


rule init_model:
    # theta_0: the pretrained model with a seeded head, saved once so every fine-tune starts from it.
    input:
        hub=hub_model_record(),
    output:
        weights=f"{R}/base/model.safetensors",
        config=f"{R}/base/config.json",
    params:
        source=MODEL_SOURCE,
        content=SOURCE_CONTENT["model"],  # a local model folder's sha256 (merge2mix.sources)
        revision=CFG["model"]["revision"],
        trust_remote_code=CFG["model"]["trust_remote_code"],
        task=TASK,
        seed=CFG["seed"],
    log:
        f"{R}/logs/init_model.log",
    script:
        "../workflow/scripts/init_model.py"


rule zero_shot_head:
    # clip / text_label_description: one dataset's frozen head, the (text) encoder's embeddings of its
    # class names over task.templates. A short torch job: in Snakemake's warm process (in_process).
    input:
        base=rules.init_model.output.weights,
        meta=f"{R}/data/{{name}}/meta.json",
    output:
        f"{R}/heads/{{name}}.safetensors",
    params:
        base_dir=model_dir,
        task=TASK,
        templates=head_templates,
        device=DEVICE,
    log:
        f"{R}/logs/zero_shot_head/{{name}}.log",
    run:
        build_head(input, output, params, log)


rule finetune:
    priority: 1  # before the baselines' jobs (common.smk)
    input:
        unpack(finetune_heads),
        unpack(constraints_gate),
        base=rules.init_model.output.weights,
        train=f"{R}/data/{{name}}/train.parquet",
        meta=f"{R}/data/{{name}}/meta.json",
    output:
        weights=f"{R}/finetune/{{name}}/model.safetensors",
        record=f"{R}/finetune/{{name}}/train.json",
    params:
        base_dir=model_dir,
        hp=CFG["train"],
        work_dir=f"{R}/work/finetune/{{name}}",
        checkpoint_every=CFG["checkpoint_every_steps"],
        store=STORE,
        task=TASK,
        seed=CFG["seed"],
        device=DEVICE,
    threads: CFG["threads"]["finetune"]
    resources:
        gpu=1,
        runtime=finetune_runtime,
        mem_mb=finetune_mem_mb,
    log:
        f"{R}/logs/finetune/{{name}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{name}}.tsv"
    run:
        finetune_one(wildcards, input, output, params, threads, log)

rule deploy:
    # Fine-tune theta_0 on the union of the selected datasets, with the same hyper-parameters.
    priority: 1  # before the baselines' jobs (common.smk)
    input:
        unpack(candidate_heads),
        best=rules.select_mixture.output.best,
        base=rules.init_model.output.weights,
        trains=candidate_files(f"{R}/data/{{name}}/train.parquet"),
        metas=candidate_files(f"{R}/data/{{name}}/meta.json"),
    output:
        weights=f"{R}/deploy/model.safetensors",
        record=f"{R}/deploy/train.json",
    params:
        candidates=PLAN.candidates,
        base_dir=model_dir,
        hp=CFG["train"],
        work_dir=f"{R}/work/deploy",
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
        f"{R}/logs/deploy.log",
    benchmark:
        f"{R}/benchmarks/deploy.tsv"
    run:
        deploy_model(input, output, params, threads, log)


rule evaluate:
    # Target test metrics of: theta_0, the best merged model, the deployed model (and its val score). A short torch job: in
    # Snakemake's warm process (in_process).
    priority: 1  # before the baselines' jobs (common.smk)
    input:
        unpack(target_head),
        best=rules.select_mixture.output.best,
        base=rules.init_model.output.weights,
        checkpoints=candidate_files(f"{R}/finetune/{{name}}/model.safetensors"),
        deploy_weights=rules.deploy.output.weights,
        deploy_record=rules.deploy.output.record,
        test=f"{R}/data/{CFG['target']}/test.parquet",
        val=f"{R}/data/{CFG['target']}/val.parquet",  # the deployed model's val score: one of rule trust's pairs
    output:
        summary=f"{R}/summary.json",
    params:
        candidates=PLAN.candidates,
        base_dir=model_dir,
        task=TASK,
        target=CFG["target"],
        batch_size=CFG["eval"]["batch_size"],
        device=DEVICE,
    threads: CFG["threads"]["evaluate"]
    resources:
        gpu=1,
        runtime=finetune_runtime,
        mem_mb=finetune_mem_mb,
    log:
        f"{R}/logs/evaluate.log",
    run:
        summarize_run(input, output, params, threads, log)

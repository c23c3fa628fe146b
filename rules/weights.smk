# Mixture weights (weights: in the config): the weight search after the subset search, the weighted
# deployment and mixture.json.


checkpoint weight_design:
    # weights: in the config. After the subset search: the top masks of masks.csv and seeded Dirichlet
    # draws of weights on their members (merge2mix.weight_search); each vector is one cached result.
    input:
        masks=rules.select_mixture.output.table,
    output:
        f"{R}/weights/design.json",
    params:
        top=WEIGHTS.get("top_masks"),
        per_mask=WEIGHTS.get("per_mask"),
        concentration=WEIGHTS.get("concentration"),
        seed=CFG["seed"],
    log:
        f"{R}/logs/weights/design.log",
    script:
        "../workflow/scripts/weight_design.py"


rule weight_eval:
    # One weight vector, merged as theta_0 + s(w) * sum_i w_i tau_i and scored on target val: the same
    # in-process job as merge_eval (equal weights are masks and keep merge_eval's files).
    input:
        unpack(mask_checkpoints),
        unpack(target_head),
        base=rules.init_model.output.weights,
        val=f"{R}/data/{CFG['target']}/val.parquet",
    output:
        f"{R}/weight_eval/{{wkey}}.json",
    params:
        base_dir=model_dir,
        task=TASK,
        batch_size=CFG["eval"]["batch_size"],
        precision=merge_precision(),
        device=DEVICE,
        mode=CFG["merge"]["mode"],
        operator=merge_operator(CFG["merge"]),
        budget=budget_bytes(),
    threads: CFG["threads"]["merge_eval"]
    resources:
        gpu=1,
        runtime=merge_runtime,
        mem_mb=finetune_mem_mb,
    log:
        f"{R}/logs/weight_eval/{{wkey}}.log",
    run:
        score_mask(wildcards, input, output, params, threads, log)


checkpoint weight_round:
    # Round r fits the piecewise-linear surrogate on every vector scored so far and proposes its
    # optimum under the constraints (PuLP); the round whose optimum was scored already is the last.
    input:
        unpack(weight_round_inputs),
    output:
        f"{R}/weights/round_{{r}}.json",
    params:
        metric=CFG["select"]["metric"],
        settings=WEIGHTS,
        constraints=PLAN.constraints,
    log:
        f"{R}/logs/weights/round_{{r}}.log",
    script:
        "../workflow/scripts/weight_round.py"


rule deploy_weighted:
    # theta_0 fine-tuned on the chosen weights: each epoch draws round(w_i * budget) examples of dataset i.
    input:
        unpack(candidate_heads),
        last=last_weight_round,
        base=rules.init_model.output.weights,
        trains=candidate_files(f"{R}/data/{{name}}/train.parquet"),
        metas=candidate_files(f"{R}/data/{{name}}/meta.json"),
    output:
        weights=f"{R}/deploy_weighted/model.safetensors",
        record=f"{R}/deploy_weighted/train.json",
    params:
        candidates=PLAN.candidates,
        base_dir=model_dir,
        hp=CFG["train"],
        budget=WEIGHTS.get("budget"),
        work_dir=f"{R}/work/deploy_weighted",
        checkpoint_every=CFG["checkpoint_every_steps"],
        task=TASK,
        seed=CFG["seed"],
        device=DEVICE,
    threads: CFG["threads"]["finetune"]
    resources:
        gpu=1,
        runtime=finetune_runtime,
        mem_mb=finetune_mem_mb,
    log:
        f"{R}/logs/deploy_weighted.log",
    benchmark:
        f"{R}/benchmarks/deploy_weighted.tsv"
    run:
        deploy_model(input, output, params, threads, log)


rule mixture:
    # mixture.json: the chosen weights, the search history, and the weighted deployment's target test
    # metrics beside the subset deployment's; the score-against-weight plot.
    input:
        unpack(target_head),
        last=last_weight_round,
        design=f"{R}/weights/design.json",
        summary=rules.evaluate.output.summary,
        base=rules.init_model.output.weights,
        deploy_weights=rules.deploy_weighted.output.weights,
        deploy_record=rules.deploy_weighted.output.record,
        test=f"{R}/data/{CFG['target']}/test.parquet",
    output:
        table=f"{R}/mixture.json",
        plot=report(f"{R}/plots/score_vs_weight.png", caption="../workflow/report/weights.rst", category="Mixture weights"),
    params:
        base_dir=model_dir,
        task=TASK,
        batch_size=CFG["eval"]["batch_size"],
        device=DEVICE,
    threads: CFG["threads"]["evaluate"]
    resources:
        gpu=1,
        runtime=finetune_runtime,
        mem_mb=finetune_mem_mb,
    log:
        f"{R}/logs/mixture.log",
    script:
        "../workflow/scripts/mixture.py"

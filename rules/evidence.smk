# Evidence: mixture fine-tunes scored on the target (the oracle, the all_data and single-dataset
# baselines), the methods table, the merged-vs-fine-tuned correlation, and the report's figures.


rule mixture_finetune:
    # One job per mask: fine-tune theta_0 on the mixture, score on target val and test.
    input:
        unpack(mixture_inputs),
        base=rules.init_model.output.weights,
        val=f"{R}/data/{CFG['target']}/val.parquet",
        test=f"{R}/data/{CFG['target']}/test.parquet",
    output:
        f"{R}/mixtures/{{mask}}.json",
    params:
        base_dir=model_dir,
        work_dir=f"{R}/work/mixture/{{mask}}",
        checkpoint_every=CFG["checkpoint_every_steps"],
        hp=CFG["train"],
        task=TASK,
        seed=CFG["seed"],
        device=DEVICE,
        batch_size=CFG["eval"]["batch_size"],
    threads: CFG["threads"]["finetune"]
    resources:
        gpu=1,
        runtime=finetune_runtime,
        mem_mb=finetune_mem_mb,
    log:
        f"{R}/logs/mixture_finetune/{{mask}}.log",
    benchmark:
        f"{R}/benchmarks/mixture_finetune/{{mask}}.tsv"
    run:
        train_mixture(wildcards, input, output, params, threads, log)


rule single_scores:
    # A singleton's mixture fine-tune is its dataset's fine-tune: scored on target val and test, not
    # trained (merge2mix.oracle), so a short torch job in Snakemake's warm process (in_process).
    input:
        unpack(mixture_inputs),
        base=rules.init_model.output.weights,
        val=f"{R}/data/{CFG['target']}/val.parquet",
        test=f"{R}/data/{CFG['target']}/test.parquet",
    output:
        f"{R}/mixtures/{{mask}}.json",
    wildcard_constraints:
        mask="|".join(PLAN.candidates),
    params:
        base_dir=model_dir,
        task=TASK,
        device=DEVICE,
        batch_size=CFG["eval"]["batch_size"],
    threads: CFG["threads"]["finetune"]  # as mixture_finetune's: the same scores, bit for bit
    resources:
        gpu=1,
        runtime=finetune_runtime,
        mem_mb=finetune_mem_mb,
    log:
        f"{R}/logs/mixture_finetune/{{mask}}.log",
    run:
        score_single(wildcards, input, output, params, threads, log)


ruleorder: single_scores > mixture_finetune


rule similarity:
    # Cosine between theta_0's mean-pooled embeddings of each candidate's train split and the target's val
    # split. A short torch job: in Snakemake's warm process (in_process).
    input:
        base=rules.init_model.output.weights,
        trains=candidate_files(f"{R}/data/{{name}}/train.parquet"),
        val=f"{R}/data/{CFG['target']}/val.parquet",
    output:
        f"{R}/baselines/similarity.csv",
    params:
        candidates=PLAN.candidates,
        base_dir=model_dir,
        task=TASK,
        max_examples=CFG["baselines"]["similarity_max_examples"],
        batch_size=CFG["eval"]["batch_size"],
        device=DEVICE,
        seed=CFG["seed"],
    threads: CFG["threads"]["evaluate"]
    resources:
        gpu=1,
        runtime=finetune_runtime,
        mem_mb=finetune_mem_mb,
    log:
        f"{R}/logs/similarity.log",
    benchmark:
        f"{R}/benchmarks/similarity.tsv"
    run:
        embed_similarity(input, output, params, threads, log)


checkpoint baseline_masks:
    # The mixtures the similarity and random baselines fine-tune on; k = size of the Merge to Mix pick;
    # within select.constraints when given (constraints.json), as the pick is.
    input:
        unpack(constraints_input),
        best=rules.select_mixture.output.best,
        similarity=similarity_table(),
    output:
        f"{R}/baselines/masks.json",
    params:
        candidates=PLAN.candidates,
        random_seeds=CFG["baselines"]["random_seeds"],
    log:
        f"{R}/logs/baseline_masks.log",
    script:
        "../workflow/scripts/baseline_masks.py"


rule methods:
    # Plain paths, not rules.<rule>.output: in a rule that also lists every mask, Snakemake 9.27 hashes
    # that whole list once per listed file when the rule references other rules' outputs, which made a
    # 16,383-mask dry run take minutes (bench/results/dag_scale.json).
    input:
        unpack(baseline_inputs),
        unpack(calibration_input),
        unpack(constraints_input),
        summary=f"{R}/summary.json",
        masks=f"{R}/masks.csv",
        merges=mask_results,
        mixtures=evidence_mixtures(),
    output:
        table=f"{R}/methods.csv",
        bars=report(f"{R}/plots/methods.png", caption="../workflow/report/methods.rst", category="Evidence"),
        sizes=report(f"{R}/plots/accuracy_vs_size.png", caption="../workflow/report/sizes.rst", category="Evidence"),
        transfer=report(f"{R}/plots/single_transfer.png", caption="../workflow/report/transfer.rst", category="Evidence"),
    params:
        candidates=PLAN.candidates,
        run_dir=run_dir_of,
        oracle=CFG["oracle"],
        oracle_masks=PLAN.masks,
    log:
        f"{R}/logs/methods.log",
    script:
        "../workflow/scripts/methods.py"


rule correlation:
    # Only with `oracle: true`: needs a mixture fine-tune for every mask.
    input:
        unpack(calibration_input),
        unpack(constraints_input),
        masks=f"{R}/masks.csv",  # plain paths: see methods
        best=f"{R}/best_mask.json",
        oracle=oracle_results(),
    output:
        json=f"{R}/correlation.json",
        scatter=report(f"{R}/plots/merged_vs_finetuned.png", caption="../workflow/report/scatter.rst", category="Evidence"),
    params:
        seed=CFG["seed"],
    log:
        f"{R}/logs/correlation.log",
    script:
        "../workflow/scripts/correlation.py"


rule trust:
    # How far to trust the pick (docs/method.md, Trust): merged vs fine-tuned target val scores of the
    # non-single mixtures the run fine-tuned anyway (+ trust.anchors extra ones). Reads files only.
    input:
        unpack(baseline_inputs),
        masks=f"{R}/masks.csv",  # plain paths: see methods
        summary=f"{R}/summary.json",
        mixtures=trust_mixtures(),
    output:
        f"{R}/trust.json",
    params:
        candidates=PLAN.candidates,
        anchors=sorted({*PLAN.anchors, *PLAN.trust_anchors}),
        seed=CFG["seed"],
    log:
        f"{R}/logs/trust.log",
    script:
        "../workflow/scripts/trust.py"


rule report_text:
    # The report's opening (Snakefile's report: directive) and summary.md: the answer, the trust line,
    # then the methods table.
    input:
        summary=f"{R}/summary.json",
        methods=f"{R}/methods.csv",
        trust=rules.trust.output[0],
    output:
        rst=f"{R}/report.rst",
        markdown=f"{R}/summary.md",
    params:
        surrogate=CFG["surrogate"]["note"],
    log:
        f"{R}/logs/report_text.log",
    script:
        "../workflow/scripts/report_text.py"

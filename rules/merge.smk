rule merge_eval:
    # One job per subset mask, one result file per mask (keyed by the sorted dataset names).
    # A `run:` job: under --force-use-threads (profiles/default) it executes in Snakemake's own
    # process, where merge2mix.engine keeps theta_0, the checkpoints and the tokenised target
    # split loaded across jobs; otherwise each job is its own process and loads what it needs.
    priority: 1  # before the baselines' jobs (common.smk)
    input:
        unpack(mask_checkpoints),
        unpack(mask_bundle),
        unpack(target_head),
        base=rules.init_model.output.weights,
        val=f"{R}/data/{CFG['target']}/val.parquet",
    output:
        f"{R}/merge_eval/{{mask}}.json",
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
        gpu=mask_gpus,
        runtime=merge_runtime,
        mem_mb=finetune_mem_mb,
    log:
        f"{R}/logs/merge_eval/{{mask}}.log",
    run:
        score_mask(wildcards, input, output, params, threads, log)


# masks_per_job > 1 (profiles/slurm): one job, one process, scores a bundle of masks; each mask's
# merge_eval job then only copies its record to merge_eval/<mask>.json (a local job), so per-mask
# result files and caching stay as they are. A rerun reuses every mask whose result file has the
# same inputs (merge2mix.engine.inputs_id).
use rule merge_eval as merge_bundle with:
    input:
        unpack(bundle_checkpoints),
        unpack(target_head),
        base=rules.init_model.output.weights,
        val=f"{R}/data/{CFG['target']}/val.parquet",
    output:
        f"{R}/merge_bundles/{{bundle}}.json",
    resources:
        gpu=1,
        runtime=bundle_runtime,
        mem_mb=finetune_mem_mb,
    log:
        f"{R}/logs/merge_bundle/{{bundle}}.log",


if BUNDLES:

    localrules:
        merge_eval,

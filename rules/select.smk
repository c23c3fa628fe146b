rule select_mixture:
    priority: 1  # before the baselines' jobs (common.smk)
    input:
        results=mask_results(),
    output:
        table=f"{R}/masks.csv",
        best=f"{R}/best_mask.json",
    params:
        candidates=PLAN.candidates,
        metric=CFG["select"]["metric"],
    log:
        f"{R}/logs/select_mixture.log",
    script:
        "../workflow/scripts/select_mixture.py"

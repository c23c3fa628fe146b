rule constraints:
    # select.constraints given: check them on the prepared data (the budget needs each dataset's train
    # rows) after prepare_data and before any fine-tune; select_mixture reads the sizes from here.
    input:
        unpack(token_budget_inputs),
        metas=candidate_files(f"{R}/data/{{name}}/meta.json"),
    output:
        f"{R}/constraints.json",
    params:
        constraints=PLAN.constraints,
        candidates=PLAN.candidates,
        tokenizer_dir=f"{R}/base",
        max_length=TASK.get("max_length"),
    log:
        f"{R}/logs/constraints.log",
    script:
        "../workflow/scripts/constraints.py"


checkpoint search_round:
    # select.search surrogate: round r fits the surrogate on every mask scored so far and proposes the
    # next round's masks (merge2mix.search); each proposal is one merge_eval job like any mask, with the
    # same cached result file. The round that proposes nothing is the last.
    input:
        unpack(search_round_inputs),
    output:
        f"{R}/search/round_{{r}}.json",
    params:
        candidates=PLAN.candidates,
        metric=CFG["select"]["metric"],
        settings=CFG["select"]["surrogate"],
        max_masks=SEARCH_MAX_MASKS,
        constraints=PLAN.constraints,
        seed=CFG["seed"],
    log:
        f"{R}/logs/search_round/{{r}}.log",
    script:
        "../workflow/scripts/search_round.py"


rule calibrate:
    # Size calibration (calibration: in the config): fit the predicted fine-tuned score on the anchors,
    # the masks whose mixture fine-tunes the run has (singles, all the data, calibration.mixtures more).
    input:
        merged=expand(f"{R}/merge_eval/{{mask}}.json", mask=PLAN.anchors),
        finetuned=expand(f"{R}/mixtures/{{mask}}.json", mask=PLAN.anchors),
    output:
        f"{R}/calibration.json",
    params:
        metric=CFG["select"]["metric"],
        extra=CALIBRATION_EXTRA,
    log:
        f"{R}/logs/calibrate.log",
    script:
        "../workflow/scripts/calibrate.py"


rule select_mixture:
    priority: 1  # before the baselines' jobs (common.smk)
    input:
        unpack(calibration_input),
        unpack(constraints_input),
        results=mask_results,
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

# Helpers of the scoring rules (merge.smk, select.smk's search rounds, weights.smk): which masks and
# weight vectors are scored (all masks, the surrogate search's rounds, bundles of masks), their inputs,
# and the in-process body of the merge_eval, merge_bundle and weight_eval jobs.
from merge2mix.masks import bundles, parse_key
from merge2mix.mixtures import parse_weights_key

# masks_per_job > 1 (profiles/slurm): exhaustive masks are scored in bundles (rule merge_bundle).
BUNDLES = bundles(PLAN.masks, PLAN.candidates, CFG["masks_per_job"]) if CFG["masks_per_job"] > 1 and PLAN.search == "exhaustive" else {}
BUNDLE_OF = {m: b for b, masks in BUNDLES.items() for m in masks}


def score_mask(wildcards, input, output, params, threads, log):
    """The merge_eval (or weight_eval) job: score one mask, or one weight vector with the weighted
    merge (merge2mix.engine.merge_eval), in this process; a bundled mask's job copies its result from
    the bundle's, and the merge_bundle job scores every mask of its bundle (engine.merge_bundle)."""
    from merge2mix import engine, jobs

    key = wildcards.get("mask") or wildcards.get("wkey")
    if "bundle" in input.keys():
        jobs.run_inline(engine.from_bundle, log[0], key=key, bundle_json=input.bundle, out_json=output[0])
        return
    job = jobs.context(params, threads, input).only([PLAN.target])
    common = dict(job=job, split_path=input.val, mode=params.mode, operator=params.operator,
                  pool=PLAN.candidates,  # not a param: adding a candidate must not rerun existing masks
                  budget_bytes=params.budget)
    if "bundle" in wildcards.keys():
        masks = {m: {n: input[n] for n in parse_key(m)} for m in BUNDLES[wildcards.bundle]}
        jobs.run_inline(engine.merge_bundle, log[0], masks=masks, results_dir=f"{R}/merge_eval", out_json=output[0], **common)
        return
    jobs.run_inline(engine.merge_eval, log[0], key=key, out_json=output[0],
                    checkpoints={n: input[n] for n in sorted(parse_weights_key(key))},
                    weights=parse_weights_key(key) if "@" in key else None, **common)


def mask_members(wildcards):
    """The dataset names of a mask (or of a weight vector: the wkey wildcard); every one must be a candidate."""
    key = wildcards.get("mask") or wildcards.get("wkey")
    names = sorted(parse_weights_key(key))
    unknown = [n for n in names if n not in PLAN.candidates]
    if unknown:
        raise ValueError(f"mixture '{key}': not candidates: {', '.join(unknown)}")
    return names


def finetunes_of(names):
    """{dataset: its fine-tune's weights file}."""
    return {n: f"{R}/finetune/{n}/model.safetensors" for n in names}


def mask_checkpoints(wildcards):
    """The fine-tunes of the mask's datasets only, so adding a dataset leaves existing masks cached."""
    return finetunes_of(mask_members(wildcards))


def mask_bundle(wildcards):
    """A bundled mask (masks_per_job > 1) also takes its bundle's result file, whose record it copies."""
    return {"bundle": f"{R}/merge_bundles/{BUNDLE_OF[wildcards.mask]}.json"} if wildcards.mask in BUNDLE_OF else {}


def mask_gpus(wildcards):
    """A bundled mask's job only copies a file: no GPU."""
    return 0 if wildcards.mask in BUNDLE_OF else 1


def bundle_checkpoints(wildcards):
    """The fine-tunes of every dataset in the bundle's masks."""
    return finetunes_of(sorted({n for m in BUNDLES[wildcards.bundle] for n in parse_key(m)}))


def merge_precision():
    e = CFG["eval"]
    return {"precision": e["precision"], "check_examples": e["precision_check_examples"],
            "min_agreement": e["precision_min_agreement"]}


def budget_bytes():
    gb = CFG["merge"]["memory_budget_gb"]
    return None if gb is None else int(gb * 1e9)


def merge_runtime(wildcards, attempt):
    # Minutes. A mask is seconds of work once the pool is loaded; keep this modest (a short queue).
    return 5 * attempt


def bundle_runtime(wildcards, attempt):
    return (5 + len(BUNDLES[wildcards.bundle])) * attempt


def _round(r):
    """The search_round checkpoint's record of round r (raises Snakemake's incomplete-checkpoint
    signal until that round has run, which is how the rounds chain)."""
    return read_json(checkpoints.search_round.get(r=r).output[0])


def searched_masks():
    """Every mask to score: all of PLAN.masks (exhaustive), or the surrogate search's round-0 design
    plus each round's proposals, up to the round that says done."""
    if PLAN.search != "surrogate":
        return PLAN.masks
    r = 0
    while not (rnd := _round(r))["done"]:
        r += 1
    return rnd["scored"]


def mask_results(wildcards=None):
    return expand(f"{R}/merge_eval/{{mask}}.json", mask=searched_masks())


def search_round_inputs(wildcards):
    """Round r fits on the design and the proposals of rounds 0..r-1, all scored."""
    r = int(wildcards.r)
    masks = list(PLAN.masks)
    for i in range(r):
        masks += _round(i)["proposed"]
    files = {"results": expand(f"{R}/merge_eval/{{mask}}.json", mask=masks)}
    if r:
        files["previous"] = f"{R}/search/round_{r - 1}.json"
    return files | constraints_input(wildcards)


def _weight_design():
    return read_json(checkpoints.weight_design.get().output[0])


def _weight_round(r):
    """The weight_round checkpoint's record of round r (chains the rounds like _round)."""
    return read_json(checkpoints.weight_round.get(r=r).output[0])


def vector_file(key):
    """A weight vector's cached result: a mask's own file for equal weights, else weight_eval/<key>.json."""
    return f"{R}/{'weight_eval' if '@' in key else 'merge_eval'}/{key}.json"


def weight_round_inputs(wildcards):
    """Round r fits on the design (the top masks and the draws around them) and rounds 0..r-1's proposals."""
    r = int(wildcards.r)
    keys = list(_weight_design()["vectors"]) + [_weight_round(i)["proposed"] for i in range(r)]
    return {"design": f"{R}/weights/design.json", "results": [vector_file(k) for k in keys]} | constraints_input(wildcards)


def last_weight_round(wildcards=None):
    r = 0
    while not _weight_round(r)["done"]:
        r += 1
    return f"{R}/weights/round_{r}.json"

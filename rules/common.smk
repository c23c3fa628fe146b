# Config validation and the helpers rules use. Light: merge2mix.config imports no torch.
import os
import sys

sys.path.insert(0, f"{workflow.basedir}/workflow")  # run from a checkout even without `pip install -e .`

from merge2mix.assets import model_source
from merge2mix.config import PER_DATASET_LABELS, Plan, check_file, merge_operator, validate
from merge2mix.errors import Merge2MixError
from merge2mix.hub import dataset_assets, model_asset
from merge2mix.io import read_json
from merge2mix.runtime import one_wake_up_timer, stop_on_interrupt
from merge2mix.check import check_changed_inputs
from merge2mix.sources import CACHE as HASH_CACHE, NOT_TRACKED, Hashes, dataset_files, model_files

try:
    for path in workflow.configfiles:
        check_file(path)
    CFG = validate(config)
    PLAN = Plan(CFG)
    MODEL_SOURCE = model_source(CFG)
except Merge2MixError as e:
    # One line naming the culprit, exit != 0; nothing has been touched yet.
    print(f"merge2mix: error: {e}", file=sys.stderr)
    sys.exit(1)

stop_on_interrupt()  # Ctrl-C stops a fine-tune training in this process (see train() below)
one_wake_up_timer()  # Snakemake's scheduler: one pending wake-up timer, not one more per pass
R = PLAN.run_dir
# Fine-tunes shared by every run under results_dir (merge2mix.store); share_finetunes: false turns it off.
STORE = f"{CFG['results_dir'].rstrip('/')}/store/finetune" if CFG["share_finetunes"] else None
TASK = CFG["task"]
SEARCH_MAX_MASKS = getattr(PLAN, "search_max_masks", None)
WEIGHTS = CFG["weights"] or {}  # mixture weights off: {}
CALIBRATION_EXTRA = (CFG["calibration"] or {}).get("mixtures", 0)
DEVICE = CFG["device"]
# clip, text_label_description: every dataset has its own label space and a frozen head (rule zero_shot_head).
PER_DATASET_HEADS = TASK["type"] in PER_DATASET_LABELS
# Hub model / hf: datasets are fetched by localrules before the jobs that read them (merge2mix.hub).
MODEL_ASSET = model_asset(MODEL_SOURCE, CFG["model"]["revision"])
HF_DATASETS = dataset_assets(CFG["datasets"])


wildcard_constraints:
    name="|".join(PLAN.datasets),
    mask=r"[A-Za-z0-9][A-Za-z0-9_+-]*",
    wkey=r"[A-Za-z0-9][A-Za-z0-9_+.-]*@[A-Za-z0-9_+.@-]+",
    r=r"\d+",
    bundle=r"b\d+",


# priority: 1 on finetune, merge_eval, select_mixture, deploy and evaluate: when both are ready,
# Snakemake runs Merge to Mix's own jobs before the baselines' (mixture_finetune, similarity), so the
# selection and summary come first and methods.csv after; the total work is the same.


localrules:
    all,
    fetch_model,
    fetch_dataset,
    select_mixture,
    calibrate,
    constraints,
    search_round,
    baseline_masks,
    report_text,
    trust,


def hub_model_record():
    return [f"{R}/hub/model.json"] if MODEL_ASSET else []


# The user's own files by content (merge2mix.sources): a param of the job that reads them. Where there
# are none (a package or Hub source), the param is NOT_TRACKED, a value Snakemake leaves out of its
# params comparison (it records builtin types only), so runs from before this param do not rerun.
_HASHES = Hashes(f"{CFG['results_dir'].rstrip('/')}/{HASH_CACHE}")
SOURCE_CONTENT = {name: _HASHES.content(dataset_files(CFG["datasets"][name])) for name in PLAN.datasets}
SOURCE_CONTENT["model"] = _HASHES.content(model_files(MODEL_SOURCE, CFG["model"]), MODEL_SOURCE)
# Check first, compute after (merge2mix.check): in the main process, every dataset and the model whose
# inputs changed since they were last checked (or never were) are read now, before any job can delete an
# earlier output; a problem stops here with one line each. Checked inputs are remembered in the cache.
if workflow.is_main_process:
    try:
        check_changed_inputs(CFG, MODEL_SOURCE, SOURCE_CONTENT, _HASHES)
    except Merge2MixError as e:
        print(f"merge2mix: error: {e}", file=sys.stderr)
        sys.exit(1)
_HASHES.save()
SOURCE_CONTENT = {k: v or NOT_TRACKED for k, v in SOURCE_CONTENT.items()}


def source_content(wildcards):
    return SOURCE_CONTENT[wildcards.name]


def hub_dataset_record(wildcards):
    return [f"{R}/hub/data/{wildcards.name}.json"] if wildcards.name in HF_DATASETS else []


def model_dir(wildcards, input):
    """theta_0's folder (weights, config, tokenizer), from the job's `base` input: not a hard-coded prefix."""
    return os.path.dirname(input.base)


def run_dir_of(wildcards, input):
    """The run's results folder, from the job's `summary` input."""
    return os.path.dirname(input.summary)


def heads_of(names):
    """{head_<name>: its zero-shot head file}, for families with per-dataset heads; else nothing."""
    return {f"head_{n}": f"{R}/heads/{n}.safetensors" for n in names} if PER_DATASET_HEADS else {}


def head_templates(wildcards):
    """A dataset's own head templates, else task.templates."""
    return CFG["datasets"][wildcards.name].get("templates") or TASK["templates"]


def finetune_heads(wildcards):
    return heads_of([wildcards.name])


def candidate_heads(wildcards):
    return heads_of(PLAN.candidates)


def target_head(wildcards):
    return heads_of([PLAN.target])


def final_outputs():
    out = [f"{R}/masks.csv", f"{R}/best_mask.json", f"{R}/summary.json", f"{R}/summary.md", f"{R}/methods.csv",
           f"{R}/trust.json", f"{R}/report.rst"]
    if CFG["oracle"]:
        out.append(f"{R}/correlation.json")
    if CFG["weights"]:
        out.append(f"{R}/mixture.json")
    return out


def report_description():
    """The report opens on the answer once the run wrote it (rule report_text); before that, on a
    static description (Snakemake reads this file when it builds the report, not at parse time)."""
    written = os.path.abspath(f"{R}/report.rst")
    return written if os.path.exists(written) else "workflow/report/workflow.rst"


def oracle_results():
    """Every mask's mixture fine-tune, when the oracle is on (2^N - 1 fine-tunes)."""
    return expand(f"{R}/mixtures/{{mask}}.json", mask=PLAN.masks) if CFG["oracle"] else []


def mixture_inputs(wildcards):
    """A mask's train splits; a singleton scores its existing per-dataset fine-tune instead of training."""
    names = mask_members(wildcards)
    files = {f"train_{n}": f"{R}/data/{n}/train.parquet" for n in names}
    files |= {f"meta_{n}": f"{R}/data/{n}/meta.json" for n in names}
    if len(names) == 1:
        files["single"] = f"{R}/finetune/{names[0]}/model.safetensors"
    return files | heads_of(sorted({*names, PLAN.target}))


# The torch jobs are `run:` jobs: under --force-use-threads (profiles/default) they execute in
# Snakemake's own process, as merge_eval does, so torch and transformers are imported once instead of
# once per job (~4-8 s each on 2 cores, bench/results/run-breakdown). Jobs in that process take turns
# (merge2mix.runtime.WARM: torch's thread count and RNG are process-wide).
def in_process(fn, log, **kwargs):
    from merge2mix import jobs

    jobs.run_inline(fn, log[0], **kwargs)


# Training jobs (fine-tunes, trained mixtures, deploy) train in that process too when their threads
# take every core Snakemake was given (the 2-core default): they could not run beside another job
# anyway. With cores to spare, each trains in a fresh process of its own (jobs.spawn), side by side,
# as a script: job would. On a cluster the job's own Snakemake process is already a fresh one.
def train(fn, log, threads, **kwargs):
    from merge2mix import jobs

    if workflow.is_main_process and workflow.local_exec and workflow.cores > threads:
        jobs.spawn(fn, log[0], threads, **kwargs)
    else:
        in_process(fn, log, **kwargs)


def finetune_one(wildcards, input, output, params, threads, log):
    from merge2mix import jobs
    from merge2mix.io import read_json
    from merge2mix.train import finetune_stored

    meta = read_json(input.meta)
    train(finetune_stored, log, threads, store_dir=params.store, job=jobs.context(params, threads, input),
          train_paths={wildcards.name: input.train}, out_weights=output.weights, out_json=output.record,
          data_meta={meta["name"]: meta["content_sha256"]}, work_dir=params.work_dir)


def train_mixture(wildcards, input, output, params, threads, log):
    from merge2mix import jobs
    from merge2mix.io import read_json
    from merge2mix.oracle import mixture_scores

    names = mask_members(wildcards)
    train(mixture_scores, log, threads, job=jobs.context(params, threads, input), mask=wildcards.mask,
          train_paths={n: input[f"train_{n}"] for n in names}, single_checkpoint=input.get("single"),
          splits={"val": input.val, "test": input.test}, work_dir=params.work_dir, out_json=output[0],
          data_meta={n: read_json(input[f"meta_{n}"])["content_sha256"] for n in names})


def deploy_model(input, output, params, threads, log):
    """The deployment fine-tune: the selected mask's datasets (deploy), or every candidate drawn by the
    weight search's pick (deploy_weighted; the store keys no weights)."""
    from merge2mix import jobs
    from merge2mix.io import read_json
    from merge2mix.train import finetune_stored

    if "last" in input.keys():
        weights = read_json(input.last)["weights"]
        chosen, store, options = sorted(weights), None, {"weights": weights, "budget": params.budget}
    else:
        chosen, store, options = read_json(input.best)["datasets"], params.store, {}
    metas = {m["name"]: m["content_sha256"] for m in map(read_json, input.metas)}
    trains = dict(zip(params.candidates, input.trains))
    train(finetune_stored, log, threads, store_dir=store, job=jobs.context(params, threads, input),
          train_paths={n: trains[n] for n in chosen}, out_weights=output.weights, out_json=output.record,
          data_meta={n: metas[n] for n in chosen}, work_dir=params.work_dir, **options)


def build_head(input, output, params, log):
    from merge2mix.families.heads import zero_shot_head

    in_process(zero_shot_head, log, base_dir=params.base_dir, task=params.task, templates=params.templates,
               meta_path=input.meta, out_path=output[0], device=params.device)


def score_single(wildcards, input, output, params, threads, log):
    from merge2mix import jobs
    from merge2mix.oracle import mixture_scores

    name = mask_members(wildcards)[0]
    in_process(mixture_scores, log, job=jobs.context(params, threads, input), mask=wildcards.mask,
               train_paths={name: input[f"train_{name}"]}, single_checkpoint=input.single,
               splits={"val": input.val, "test": input.test}, work_dir=None, out_json=output[0], data_meta=None)


def embed_similarity(input, output, params, threads, log):
    from merge2mix import jobs
    from merge2mix.baselines import similarities

    in_process(similarities, log, job=jobs.context(params, threads, input), train_paths=dict(zip(params.candidates, input.trains)),
               target_val=input.val, max_examples=params.max_examples, out_csv=output[0])


def summarize_run(input, output, params, threads, log):
    from merge2mix import jobs
    from merge2mix.summary import summarize

    in_process(summarize, log, job=jobs.context(params, threads, input), target=params.target, best_json=input.best,
               checkpoints=dict(zip(params.candidates, input.checkpoints)),
               deployed={"weights": input.deploy_weights, "record": input.deploy_record},
               test_path=input.test, val_path=input.val, out_json=output.summary)


def candidate_files(pattern):
    return expand(pattern, name=PLAN.candidates)


def evidence_mixtures():
    """Mixture fine-tunes every run scores: each candidate alone, all of them, and every mask with the oracle."""
    masks = PLAN.masks if CFG["oracle"] else [*PLAN.candidates, PLAN.full_mask]
    return expand(f"{R}/mixtures/{{mask}}.json", mask=sorted(set(masks)))


def trust_mixtures():
    """Every mixture fine-tune the run makes for a fixed reason (rule trust adds the baselines'): the
    evidence mixtures, size calibration's anchors and trust.anchors' extra pairs."""
    return sorted(set(evidence_mixtures()) | set(expand(f"{R}/mixtures/{{mask}}.json", mask=[*PLAN.anchors, *PLAN.trust_anchors])))


def calibration_input(wildcards):
    """calibration.json for select_mixture when size calibration is on (nothing otherwise: the
    default run's inputs and outputs stay as they were)."""
    return {"calibration": f"{R}/calibration.json"} if PLAN.anchors else {}


def constraints_input(wildcards):
    """constraints.json for select_mixture when select.constraints is given."""
    return {"constraints": f"{R}/constraints.json"} if PLAN.constraints else {}


def token_budget_inputs(wildcards):
    """A tokens budget counts the candidates' train tokens with theta_0's tokenizer."""
    if (PLAN.budget or {}).get("tokens") is None:
        return {}
    return {"trains": candidate_files(f"{R}/data/{{name}}/train.parquet"), "base": rules.init_model.output.config}


def constraints_gate(wildcards):
    """Fine-tunes wait for the constraints check (so an impossible budget fails before any training),
    but ancient(): a changed constraint set must not make the fine-tunes look out of date."""
    return {"constraints": ancient(f"{R}/constraints.json")} if PLAN.constraints else {}


def similarity_table():
    return [f"{R}/baselines/similarity.csv"] if CFG["baselines"]["similarity"] else []


def baselines_on():
    return CFG["baselines"]["similarity"] or CFG["baselines"]["random_seeds"] > 0


def baseline_inputs(wildcards):
    """The baselines' chosen mixtures are known only once selection and similarity ran (a checkpoint)."""
    if not baselines_on():
        return {}
    choice_path = checkpoints.baseline_masks.get().output[0]
    choice = read_json(choice_path)
    masks = {choice.get("similarity_topk"), choice.get("similarity_threshold"), *choice["random"]} - {None}
    return {"choice": choice_path, "baseline_mixtures": expand(f"{R}/mixtures/{{mask}}.json", mask=sorted(masks))}


# Cluster resources grow with each retry (profiles/slurm sets retries): a job killed for time or
# memory comes back with more. Ignored on a workstation unless --resources names them.
def finetune_runtime(wildcards, attempt):
    return 120 * attempt


def finetune_mem_mb(wildcards, attempt):
    return 8000 * attempt

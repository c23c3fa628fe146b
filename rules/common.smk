# Config validation and the helpers rules use. Light: merge2mix.config imports no torch.
import sys

sys.path.insert(0, f"{workflow.basedir}/workflow")  # run from a checkout even without `pip install -e .`

from merge2mix.config import Plan, model_source, validate
from merge2mix.errors import Merge2MixError
from merge2mix.masks import bitstring, parse_key

try:
    CFG = validate(config)
    PLAN = Plan(CFG)
    MODEL_SOURCE = model_source(CFG)
except Merge2MixError as e:
    # One line naming the culprit, exit != 0; nothing has been touched yet.
    print(f"merge2mix: error: {e}", file=sys.stderr)
    sys.exit(1)

R = PLAN.run_dir
TASK = CFG["task"]
DEVICE = CFG["device"]


wildcard_constraints:
    name="|".join(PLAN.datasets),
    mask=r"[A-Za-z0-9][A-Za-z0-9_+-]*",


localrules:
    all,
    select_mixture,


def final_outputs():
    return [f"{R}/masks.csv", f"{R}/best_mask.json", f"{R}/summary.json", f"{R}/summary.md"]


def mask_results():
    return expand(f"{R}/merge_eval/{{mask}}.json", mask=PLAN.masks)


def candidate_files(pattern):
    return expand(pattern, name=PLAN.candidates)


def mask_checkpoints(wildcards):
    """The fine-tunes of the mask's datasets only, so adding a dataset leaves existing masks cached."""
    names = parse_key(wildcards.mask)
    unknown = [n for n in names if n not in PLAN.candidates]
    if unknown:
        raise ValueError(f"mask '{wildcards.mask}': not candidates: {', '.join(unknown)}")
    return {n: f"{R}/finetune/{n}/model.safetensors" for n in names}


def mask_bits(wildcards):
    return bitstring(wildcards.mask, PLAN.candidates)


def budget_bytes():
    gb = CFG["merge"]["memory_budget_gb"]
    return None if gb is None else int(gb * 1e9)

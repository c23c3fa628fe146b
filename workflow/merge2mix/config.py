"""Load, validate and resolve the workflow config. Runs at DAG-build time: never import torch here."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from . import constraints
from .calibration import anchor_masks, extra_pool
from .errors import ConfigError
from .masks import enumerate_masks, mask_key
from .task_types import TASK_TYPES

SURROGATE_MAX = 30  # candidates: the surrogate search's DAG and ILP are tested up to here

# Views of the task-type registry (merge2mix.task_types) that the checks below read.
MODALITY = {name: t.modality for name, t in TASK_TYPES.items()}
PER_DATASET_LABELS = {name for name, t in TASK_TYPES.items() if t.per_dataset_heads}
DEFAULT_TEMPLATES = {name: list(t.templates) for name, t in TASK_TYPES.items() if t.templates}

AVERAGE = {"method": "average", "params": {}}  # the paper's merge (and what results from before operators used)

# The surrogate a config gets where it sets none of its keys: per task.type, the settings chosen leave-one-
# target-out on our own oracles (bench/results/surrogates: head and operator; bench/results/selection-metric:
# the ranking score). A family without such evidence keeps the schema's defaults (the paper's average,
# accuracy), and every run says which it got (surrogate_note).
RECOMMENDED = {
    "text_classification": {"head": "label_description", "method": "task_arithmetic", "lambda_power": 0.5,
                            "metric": "loss",
                            "evidence": "bench/results/surrogates and bench/results/selection-metric"},
}


def merge_operator(merge: dict) -> dict:
    """The configured merge operator (merge2mix.merge.OPERATORS) and its parameters; the average has none."""
    if merge["method"] == "average":
        return dict(AVERAGE)
    params = {"lam": merge["lambda"], "power": merge["lambda_power"]}
    if merge["method"] == "ties":
        params["density"] = merge["density"]
    return {"method": merge["method"], "params": params}


SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"
_SCHEMA = None


def schema() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        with open(SCHEMA_PATH) as fh:
            _SCHEMA = yaml.safe_load(fh)
        _SCHEMA["properties"]["task"]["properties"]["type"]["enum"] = list(TASK_TYPES)  # the registry's, not a copy
    return _SCHEMA


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _resolve_ref(sch: dict, root: dict) -> dict:
    while "$ref" in sch:
        node = root
        for part in sch["$ref"].lstrip("#/").split("/"):
            node = node[part]
        sch = node
    return sch


def _fill_defaults(value, sch: dict, root: dict):
    """Fill `default`s of object properties, recursively (what snakemake.utils.validate does)."""
    sch = _resolve_ref(sch, root)
    if not isinstance(value, dict):
        return
    for key, sub in sch.get("properties", {}).items():
        sub_r = _resolve_ref(sub, root)
        if key not in value and "default" in sub_r:
            value[key] = copy.deepcopy(sub_r["default"])
        if key in value:
            _fill_defaults(value[key], sub_r, root)
    extra = sch.get("additionalProperties")
    if isinstance(extra, dict):
        for key, item in value.items():
            if key not in sch.get("properties", {}):
                _fill_defaults(item, extra, root)


def _one_line(err) -> str:
    """One line for a jsonschema.ValidationError."""
    where = _where(err.absolute_path)
    if err.validator == "oneOf":
        options = [r["required"][0] for r in err.validator_value if "required" in r]
        return f"config: {where}: give exactly one of {', '.join(options)}"
    if err.validator == "additionalProperties":
        return f"config: {where}: {err.message} (allowed: {', '.join(sorted(err.schema.get('properties', {})))})"
    if err.validator == "type" and "number" in str(err.validator_value) and isinstance(err.instance, str):
        try:
            float(err.instance)
            return (f"config: {where}: {err.message} (YAML reads {err.instance} as text: write it with a decimal "
                    f"point and a signed exponent, e.g. {float(err.instance):.1e}, or as {float(err.instance):g})")
        except ValueError:
            pass
    if err.validator == "type" and err.validator_value == "boolean" and str(err.instance).lower() in ("true", "false"):
        return f"config: {where}: {err.message} (on the command line write --config {where}={str(err.instance).capitalize()})"
    return f"config: {where}: {err.message}"


def validate(config: dict) -> dict:
    """Return a validated copy of `config` with defaults filled in; raise ConfigError (one line)."""
    if not isinstance(config, dict) or not config:
        raise ConfigError("config: empty or not a mapping (give --configfile or edit config.yaml)")
    import jsonschema  # here, not at the top: the engine imports this module, and it also runs where no
                       # config is validated (bench/gpu.py on a device image without jsonschema)

    cfg = copy.deepcopy(config)
    root = schema()
    validator = jsonschema.Draft202012Validator(root)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ConfigError(_one_line(jsonschema.exceptions.best_match(errors)))
    given = _surrogate_keys_given(cfg)
    _fill_defaults(cfg, root, root)
    _recommended_surrogate(cfg, given)
    _check_semantics(cfg)
    return cfg


def _surrogate_keys_given(cfg: dict) -> dict[str, bool]:
    task, merge, sel = (cfg.get(k) or {} for k in ("task", "merge", "select"))
    return {"head": "head" in task, "method": "method" in merge, "lambda_power": "lambda_power" in merge,
            "metric": "metric" in sel}


def _recommended_surrogate(cfg: dict, given: dict[str, bool]) -> None:
    """Fill the surrogate keys the user left out with the recommended settings of the task type (if it
    has any), and record in cfg["surrogate"] what the run got and whether it is the recommended one."""
    ttype = cfg["task"]["type"]
    rec = RECOMMENDED.get(ttype)
    if rec is None:
        cfg["surrogate"] = {"recommended": None, "note": f"no evidence yet for task.type {ttype} on which surrogate "
                            f"predicts its mixture fine-tunes best (this run: {cfg['merge']['method']}, ranked by "
                            f"{cfg['select']['metric']})"}
        return
    if not given["head"]:
        cfg["task"]["head"] = rec["head"]
    if not given["method"]:
        cfg["merge"]["method"] = rec["method"]
    if not given["lambda_power"] and cfg["merge"]["method"] == rec["method"]:
        cfg["merge"]["lambda_power"] = rec["lambda_power"]
    if not given["metric"]:
        cfg["select"]["metric"] = rec["metric"]
    got = {"head": cfg["task"].get("head") or "trained", "method": cfg["merge"]["method"],
           "lambda_power": cfg["merge"]["lambda_power"], "metric": cfg["select"]["metric"]}
    differs = [f"{k} {got[k]} (recommended: {rec[k]})" for k in ("head", "method", "lambda_power", "metric")
               if got[k] != rec[k] and not (k == "lambda_power" and got["method"] != rec["method"])]
    cfg["surrogate"] = {"recommended": not differs,
                        "note": (f"the recommended surrogate for {ttype} ({rec['evidence']})" if not differs else
                                 f"not the recommended surrogate for {ttype}: {'; '.join(differs)} ({rec['evidence']})")}


def _check_semantics(cfg: dict) -> None:
    names = list(cfg["datasets"])
    if cfg["target"] not in cfg["datasets"]:
        raise ConfigError(f"config: target: '{cfg['target']}' is not a key of datasets ({', '.join(names)})")
    cands = cfg["candidates"]
    if cands is None:
        cands = [n for n in names if n != cfg["target"]]
    for c in cands:
        if c not in cfg["datasets"]:
            raise ConfigError(f"config: candidates: '{c}' is not a key of datasets")
    if cfg["target"] in cands:
        raise ConfigError(f"config: candidates: the target '{cfg['target']}' cannot also be a candidate")
    if cfg.get("weights") is not None and cfg["merge"]["method"] == "ties":
        raise ConfigError("config: weights: merge.method ties has no weighted form (average or task_arithmetic)")
    if len(cands) < 2:
        raise ConfigError(f"config: candidates: {len(cands)} candidate(s); a mixture needs at least 2 to choose from")
    sel = cfg["select"]
    if sel["search"] == "auto":  # resolved here, so every later reader sees the search that runs
        sel["search"] = "exhaustive" if len(cands) <= cfg["max_candidates"] else "surrogate"
    if sel["search"] == "exhaustive" and len(cands) > cfg["max_candidates"]:
        raise ConfigError(
            f"config: candidates: {len(cands)} candidates means {2 ** len(cands) - 1} masks; "
            f"exhaustive search is capped at max_candidates={cfg['max_candidates']} (select.search: surrogate goes beyond)"
        )
    if sel["search"] == "surrogate" and len(cands) > SURROGATE_MAX:
        raise ConfigError(f"config: candidates: {len(cands)} candidates; the surrogate search is tested up to {SURROGATE_MAX}")
    if sel["search"] == "surrogate" and cfg["oracle"]:
        raise ConfigError("config: oracle: true fine-tunes every mask, which needs select.search: exhaustive")
    cfg["candidates"] = list(cands)
    constraints.check(sel.get("constraints"), cfg["candidates"])
    budget = constraints.budget_of(sel.get("constraints"))
    if budget and budget[0] == "tokens" and cfg["task"]["type"] not in ("text_classification", "text_label_description"):
        raise ConfigError(f"config: select.constraints.budget.tokens: counts tokens of text; task.type {cfg['task']['type']} "
                          "takes budget.examples")
    task = cfg["task"]
    if task.get("head") == "trained":  # the absent key's meaning before recommended defaults: the task dict
        del task["head"]                # (part of every fine-tune's store key) stays as those runs had it
    head = task.get("head")
    if head is not None and task["type"] != "text_classification":
        raise ConfigError(f"config: task.head: '{head}' is an option of task.type text_classification, not {task['type']}")
    if task["type"] in PER_DATASET_LABELS:
        task.setdefault("templates", list(DEFAULT_TEMPLATES[task["type"]]))
        task.pop("labels", None)  # each dataset's classes are its label space
    elif task["type"] == "causal_lm":  # instruction data: the response is the target, no label space
        task.setdefault("metric", "response_loss")
        task.setdefault("lora", None)
        task.setdefault("torch_dtype", "float32")
        task.setdefault("max_new_tokens", 32)
    elif "labels" not in task:
        raise ConfigError(f"config: task.labels: required for task.type {task['type']} (the shared label space)")
    if MODALITY[task["type"]] == "image" and task["type"] != "clip":
        task.setdefault("image_size", 224)
    arch = cfg["model"].get("arch")
    if arch and task["type"] != "image_classification":
        raise ConfigError(f"config: model.arch: '{arch}' is a plain-torch image backbone; it needs task.type image_classification")
    labels = task.get("labels")
    for name, ds in cfg["datasets"].items():
        if "templates" in ds and task["type"] not in PER_DATASET_LABELS:
            raise ConfigError(f"config: datasets.{name}.templates: only task.type {' or '.join(sorted(PER_DATASET_LABELS))} "
                              "has per-dataset heads")
        if "classes" in ds and task["type"] not in PER_DATASET_LABELS:
            raise ConfigError(f"config: datasets.{name}.classes: only task.type {' or '.join(sorted(PER_DATASET_LABELS))} "
                              "has per-dataset classes (use task.labels and label_map)")
        # YAML reads `1: negative` and `drop_labels: [3]` as integers; labels are read as text
        ds["label_map"] = {str(k): v for k, v in ds["label_map"].items()}
        if "drop_labels" in ds:
            ds["drop_labels"] = [str(v) for v in ds["drop_labels"]]
        for raw, mapped in ds["label_map"].items():
            if labels is not None and mapped not in labels:
                raise ConfigError(
                    f"config: datasets.{name}.label_map: '{raw}' maps to '{mapped}', not a task label ({', '.join(labels)})"
                )
        if "package" in ds:
            from .data import packaged  # light: pandas is imported only when data is read

            packaged.check(f"datasets.{name}.package", ds["package"]["loader"], ds["package"].get("domain"),
                           MODALITY[task["type"]])
        if "local" in ds:
            p = Path(ds["local"]["path"])
            if not p.exists():
                raise ConfigError(f"config: datasets.{name}.local.path: no such file or directory: {p}")
            if p.is_dir() and MODALITY[task["type"]] != "image":
                raise ConfigError(f"config: datasets.{name}.local.path: {p} is a directory (an image folder); "
                                  f"task.type {task['type']} reads one file")
            lp = ds["local"].get("labels_path")
            if lp and not Path(lp).is_file():
                raise ConfigError(f"config: datasets.{name}.local.labels_path: no such file: {lp}")
    if head == "label_description":
        _frozen_shared_head(cfg)
    cal = cfg["calibration"]
    for key, k, what in [("calibration.mixtures", 0 if cal is None else cal["mixtures"], "extra anchors"),
                         ("trust.anchors", cfg["trust"]["anchors"], "extra pairs")]:
        if k > len(extra_pool(cands)):
            raise ConfigError(f"config: {key}: {k} {what}, but {len(cands)} candidates have only "
                              f"{len(extra_pool(cands))} pairs and triples that are not all the data")


def _frozen_shared_head(cfg: dict) -> None:
    """task.head label_description: text_label_description with every dataset's classes = task.labels
    (one shared label space, so every dataset's frozen head is the same matrix of class embeddings)."""
    task = cfg["task"]
    for ds in cfg["datasets"].values():
        ds["classes"] = list(task["labels"])
    task["type"] = "text_label_description"
    task.setdefault("templates", list(DEFAULT_TEMPLATES["text_label_description"]))
    del task["labels"]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML loading keeps the last one silently, so a
    second `airline:` entry would quietly replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"config: line {key_node.start_mark.line + 1}: duplicate key '{key}'")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read(path):
    """YAML with duplicate keys refused, the file named in the message."""
    with open(path) as fh:
        try:
            return yaml.load(fh, Loader=_UniqueKeyLoader)
        except ConfigError as e:
            raise ConfigError(str(e).replace("config: ", f"config: {path} ", 1)) from None


def check_file(path) -> None:
    """What Snakemake's own YAML reading lets through: duplicate keys. Names the file and line."""
    try:
        _read(path)
    except (OSError, yaml.YAMLError):
        pass  # Snakemake reports unreadable or malformed files itself


def load(path: str | os.PathLike) -> dict:
    """Read a YAML config file and validate it (used by the CLI and tests; Snakemake reads YAML itself)."""
    return validate(read_raw(path))


def read_raw(path: str | os.PathLike) -> dict:
    """A config file as written, not validated: what a derived config (leave-one-out) starts from, since
    validation rewrites some keys (task.head label_description becomes its own task.type)."""
    try:
        raw = _read(path)
    except FileNotFoundError:
        raise ConfigError(f"config: file not found: {path}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config: {path}{at}: not valid YAML ({getattr(e, 'problem', e)})") from None
    return raw


class Plan:
    """Everything the Snakefile needs to know, derived from a validated config (no I/O beyond stat)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.run_dir = f"{cfg['results_dir'].rstrip('/')}/{cfg['run']}"
        self.target = cfg["target"]
        self.candidates = cfg["candidates"]
        self.datasets = [self.target, *self.candidates]
        sel = cfg.get("select", {})
        self.constraints = sel.get("constraints")
        self.search = sel.get("search", "exhaustive")
        if self.search == "surrogate":  # round 0 only; later rounds come from the search_round checkpoint
            from .search import design

            sur = sel["surrogate"]
            self.masks = design(self.candidates, sur["design_masks"], cfg["seed"], self.constraints)
            n = 2 ** len(self.candidates) - 1
            self.search_max_masks = sur["max_masks"] or max(len(self.masks) + sur["per_round"], round(0.05 * n))
        else:
            # masks that break a membership constraint are never scored (the budget is checked on data: rule constraints)
            self.masks = [mask_key(m) for m in enumerate_masks(self.candidates) if constraints.allows(m, self.constraints)]
        self.budget = (self.constraints or {}).get("budget")
        self.full_mask = mask_key(self.candidates)
        cal = cfg.get("calibration")
        self.anchors = [] if cal is None else anchor_masks(self.candidates, cal["mixtures"], cfg["seed"])
        k = (cfg.get("trust") or {}).get("anchors", 0)
        # the same draw as calibration's: with both on, a mixture is fine-tuned once
        self.trust_anchors = anchor_masks(self.candidates, k, cfg["seed"]) if k else []

    def path(self, *parts: str) -> str:
        return "/".join([self.run_dir, *parts])

"""What a chosen mixture may be (`select.constraints`), checked at parse time with an integer program.

    max_datasets / min_datasets     how many datasets the mixture has
    must_include / exclude          datasets that must / must not be in it
    at_most_one_of                  groups of datasets of which at most one may be used
    budget: {examples: B}           the deployment fine-tune's training examples (the members'
                                    prepared train rows) at most B
    budget: {tokens: B}             or its training tokens (text families: the tokenizer's tokens
                                    per example, truncated at task.max_length as in training)

The membership constraints are known before any data is read, so the masks that break them are
never scored, and a set that no mask satisfies is a one-line error before anything runs: PuLP
(CBC, shipped with pulp; light, no torch) answers feasibility over binary x_i = "dataset i is in".
The budget needs each dataset's prepared size: the `constraints` job checks it after prepare_data
and before any fine-tune, and select_mixture keeps only masks within it.
"""

from __future__ import annotations

from .errors import ConfigError

KEY = "config: select.constraints"


def _names(c: dict, candidates: list[str]) -> None:
    lists = [("must_include", c.get("must_include", [])), ("exclude", c.get("exclude", []))]
    lists += [(f"at_most_one_of[{i}]", g) for i, g in enumerate(c.get("at_most_one_of", []))]
    for key, names in lists:
        for n in names:
            if n not in candidates:
                raise ConfigError(f"{KEY}.{key}: '{n}' is not a candidate ({', '.join(candidates)})")


def _contradictions(c: dict) -> None:
    """The usual mistakes, named; anything subtler is left to the solver."""
    must, excl = set(c.get("must_include", [])), set(c.get("exclude", []))
    both = sorted(must & excl)
    if both:
        raise ConfigError(f"{KEY}: {', '.join(both)} both in must_include and in exclude")
    lo, hi = c.get("min_datasets", 1), c.get("max_datasets")
    if hi is not None and lo > hi:
        raise ConfigError(f"{KEY}: min_datasets {lo} > max_datasets {hi}")
    if hi is not None and len(must) > hi:
        raise ConfigError(f"{KEY}: must_include names {len(must)} datasets, max_datasets is {hi}")
    for i, g in enumerate(c.get("at_most_one_of", [])):
        clash = sorted(must & set(g))
        if len(clash) > 1:
            raise ConfigError(f"{KEY}.at_most_one_of[{i}]: must_include needs {' and '.join(clash)}, the group allows one")


def budget_of(c: dict | None) -> tuple[str, int] | None:
    """(unit, limit) of the budget: ('examples', B) or ('tokens', B); None without one."""
    b = (c or {}).get("budget")
    return None if not b else next(iter(b.items()))


def allows(names, c: dict | None, sizes: dict[str, int] | None = None) -> bool:
    """Whether a mixture of `names` satisfies `c`; the budget only when `sizes` (each dataset's train
    examples or tokens, the budget's unit) are given."""
    if not c:
        return True
    s = set(names)
    if len(s) < c.get("min_datasets", 1) or len(s) > c.get("max_datasets", len(s)):
        return False
    if not set(c.get("must_include", [])) <= s or s & set(c.get("exclude", [])):
        return False
    if any(len(s & set(g)) > 1 for g in c.get("at_most_one_of", [])):
        return False
    budget = budget_of(c)
    return budget is None or sizes is None or sum(sizes[n] for n in s) <= budget[1]


def binary(prob, name: str):
    """A binary variable of `prob` (pulp >= 3.3 attaches it to the problem; older pulp builds it alone)."""
    return variable(prob, name, cat="Binary")


def variable(prob, name: str, low=None, high=None, cat: str = "Continuous"):
    """A variable of `prob`, through prob.add_variable where pulp has it (3.3 deprecates LpVariable(...))."""
    import pulp

    new_var = getattr(prob, "add_variable", None) or pulp.LpVariable
    return new_var(name, low, high, cat=cat)


def solve(prob) -> str:
    """CBC: a system `cbc` (COIN_CMD) when there is one, else the binary pulp ships (PULP_CBC_CMD, which
    pulp >= 3.3 marks deprecated in favour of the pulp[cbc] extra; silenced here, it is what installs)."""
    import warnings

    import pulp

    solver = pulp.COIN_CMD(msg=False)
    if not solver.available():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            solver = pulp.PULP_CBC_CMD(msg=False)
    return pulp.LpStatus[prob.solve(solver)]


def problem(candidates: list[str], c: dict, sizes: dict[str, int] | None = None):
    """The constraints as a PuLP problem over binary x[name] (no objective: feasibility)."""
    import pulp

    prob = pulp.LpProblem("mixture", pulp.LpMaximize)
    x = {n: binary(prob, f"x{i}") for i, n in enumerate(candidates)}
    prob += pulp.lpSum([])
    prob += pulp.lpSum(x.values()) >= max(1, c.get("min_datasets", 1))
    if c.get("max_datasets") is not None:
        prob += pulp.lpSum(x.values()) <= c["max_datasets"]
    for n in c.get("must_include", []):
        prob += x[n] == 1
    for n in c.get("exclude", []):
        prob += x[n] == 0
    for g in c.get("at_most_one_of", []):
        prob += pulp.lpSum(x[n] for n in g) <= 1
    budget = budget_of(c)
    if budget is not None and sizes is not None:
        prob += pulp.lpSum(sizes[n] * x[n] for n in candidates) <= budget[1]
    return prob, x


def feasible_mask(candidates: list[str], c: dict, sizes: dict[str, int] | None = None) -> list[str] | None:
    """One mask satisfying `c` (CBC), or None when there is none."""
    prob, x = problem(candidates, c, sizes)
    if solve(prob) != "Optimal":
        return None
    return sorted(n for n, v in x.items() if v.value() > 0.5)


def check(c: dict | None, candidates: list[str]) -> None:
    """Parse time: names, contradictions, and feasibility of everything but the budget."""
    if not c:
        return
    _names(c, candidates)
    _contradictions(c)
    if feasible_mask(candidates, {k: v for k, v in c.items() if k != "budget"}) is None:
        raise ConfigError(f"{KEY}: no mixture of the candidates satisfies them (max/min_datasets, must_include, "
                          "exclude and at_most_one_of together)")


def token_counts(tokenizer_dir: str, train_paths: dict[str, str], max_length: int) -> dict[str, int]:
    """Each dataset's training tokens: its train texts through the model's tokenizer, truncated at
    max_length as the fine-tune truncates them (special tokens included)."""
    import pandas as pd
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    out = {}
    for name, path in train_paths.items():
        ids = tok(pd.read_parquet(path)["text"].tolist(), truncation=True, max_length=max_length)["input_ids"]
        out[name] = int(sum(len(x) for x in ids))
    return out


def check_data(c: dict, candidates: list[str], meta_paths: list[str], out_json: str, tokens: dict[str, int] | None = None) -> dict:
    """After prepare_data, before any fine-tune: is some allowed mask within the budget? Writes the
    constraints, each candidate's size in the budget's unit and one feasible mask (select_mixture
    reads them). `tokens`: each candidate's training tokens (token_counts), for a tokens budget."""
    import pulp

    from .errors import Merge2MixError
    from .io import atomic_write_json, read_json

    rows = {meta["name"]: int(meta["rows"]["train"]) for meta in map(read_json, meta_paths)}
    budget = budget_of(c)
    unit = budget[0] if budget else "examples"
    sizes = {n: (tokens if unit == "tokens" else rows)[n] for n in candidates}
    mask = feasible_mask(candidates, c, sizes)
    if mask is None:  # check() at parse time ruled out everything but the budget: name the smallest allowed mixture
        prob, x = problem(candidates, {k: v for k, v in c.items() if k != "budget"})
        prob.sense = pulp.LpMinimize
        prob.setObjective(pulp.lpSum(sizes[n] * x[n] for n in candidates))
        solve(prob)
        least = sorted(n for n, v in x.items() if v.value() > 0.5)
        raise Merge2MixError(f"{KEY}.budget.{unit}: {budget[1]} admits no allowed mixture (the smallest, "
                             f"{'+'.join(least)}, has {sum(sizes[n] for n in least)} train {unit})")
    out = {"constraints": c, "unit": unit, "train_examples": {n: rows[n] for n in candidates}, "sizes": sizes,
           "a_feasible_mask": mask}
    atomic_write_json(out, out_json)
    return out

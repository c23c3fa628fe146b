from merge2mix import jobs, trust
from merge2mix.io import read_json
from merge2mix.masks import mask_key


def roles_of(candidates, anchors, choice):
    """mask -> what the run fine-tuned it as."""
    roles = {mask_key([c]): ["single"] for c in candidates}
    roles.setdefault(mask_key(candidates), []).append("all_data")
    for m in anchors:
        roles.setdefault(m, []).append("anchor")
    for name in ("similarity_topk", "similarity_threshold"):
        if (choice or {}).get(name):
            roles.setdefault(choice[name], []).append(name)
    for m in (choice or {}).get("random", []):
        if "random" not in roles.setdefault(m, []):
            roles[m].append("random")
    return roles


def main(inp, out, params):
    summary = read_json(inp.summary)
    choice = read_json(inp.choice) if inp.get("choice") else None
    mixtures = sorted({*inp.mixtures, *inp.get("baseline_mixtures", [])})
    trust.write(masks_csv=inp.masks, mixture_jsons=mixtures, roles=roles_of(params.candidates, params.anchors, choice),
                metric=summary.get("selection_metric", "accuracy"), summary=summary, out_json=out[0], seed=params.seed)


jobs.run(main, snakemake.log[0], inp=snakemake.input, out=snakemake.output, params=snakemake.params)

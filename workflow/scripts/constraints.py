from merge2mix import constraints, jobs


def main(c, candidates, metas, trains, tokenizer_dir, max_length, out_json):
    tokens = None
    if constraints.budget_of(c)[0:1] == ("tokens",):
        tokens = constraints.token_counts(tokenizer_dir, dict(zip(candidates, trains)), max_length)
    return constraints.check_data(c, candidates, metas, out_json, tokens=tokens)


jobs.run(
    main, snakemake.log[0],
    c=snakemake.params.constraints, candidates=snakemake.params.candidates, metas=list(snakemake.input.metas),
    trains=list(snakemake.input.get("trains", [])), tokenizer_dir=snakemake.params.tokenizer_dir,
    max_length=snakemake.params.max_length, out_json=snakemake.output[0],
)

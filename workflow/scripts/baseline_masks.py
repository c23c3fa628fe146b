import pandas as pd

from merge2mix import baselines, jobs
from merge2mix.io import read_json


def main(best, similarity, out, candidates, random_seeds, constraints):
    checked = read_json(constraints) if constraints else {}  # select.constraints: the baselines pick within them too
    best = read_json(best)
    choice = baselines.choose(pd.read_csv(similarity[0]) if similarity else None, candidates, len(best["datasets"]),
                              random_seeds, checked.get("constraints"), checked.get("sizes"), pick=best["mask"])
    baselines.write_choice(choice, out)


jobs.run(main, snakemake.log[0], best=snakemake.input.best, similarity=list(snakemake.input.similarity),
         out=snakemake.output[0], candidates=snakemake.params.candidates, random_seeds=snakemake.params.random_seeds,
         constraints=snakemake.input.get("constraints"))

import json

import pandas as pd

from merge2mix import baselines, jobs


def main(best, similarity, out, candidates, random_seeds):
    with open(best) as fh:
        k = len(json.load(fh)["datasets"])
    choice = baselines.choose(pd.read_csv(similarity[0]) if similarity else None, candidates, k, random_seeds)
    baselines.write_choice(choice, out)


jobs.run(main, snakemake.log[0], best=snakemake.input.best, similarity=list(snakemake.input.similarity),
         out=snakemake.output[0], candidates=snakemake.params.candidates, random_seeds=snakemake.params.random_seeds)

import pandas as pd

from merge2mix import analysis, jobs, plots
from merge2mix.io import read_json


def main(inp, out, candidates, run_dir, oracle_on, oracle_masks):
    summary = read_json(inp.summary)
    mixtures = analysis.load_results([*inp.mixtures, *inp.get("baseline_mixtures", [])]).drop_duplicates("mask")
    choice = read_json(inp.choice) if inp.get("choice") else None
    calibration = read_json(inp.calibration) if inp.get("calibration") else None
    checked = read_json(inp.constraints) if inp.get("constraints") else None
    merges = analysis.load_results(inp.merges)
    bench = f"{run_dir}/benchmarks"

    def seconds(kind, name):
        if kind == "finetune":
            return analysis.bench_seconds(f"{bench}/finetune/{name}.tsv")
        if kind == "mixture":
            return analysis.bench_seconds(f"{bench}/mixture_finetune/{name}.tsv")
        if kind == "merges":
            return float(merges["wall_s"].sum())
        return analysis.bench_seconds(f"{bench}/{kind}.tsv")

    table = analysis.methods_table(summary=summary, mixtures=mixtures, candidates=candidates, choice=choice,
                                   oracle_on=oracle_on, seconds=seconds, calibration=calibration, merges=len(merges),
                                   oracle_masks=oracle_masks if oracle_on else None, checked=checked)
    analysis.write_methods(table, out.table)
    masks = pd.read_csv(inp.masks, dtype={"bitstring": str})
    plots.methods_bar(table, out.bars)
    plots.accuracy_vs_size(masks, mixtures if oracle_on else None, out.sizes)
    plots.transfer_heatmap(masks, mixtures, candidates, out.transfer)


jobs.run(main, snakemake.log[0], inp=snakemake.input, out=snakemake.output, candidates=snakemake.params.candidates,
         run_dir=snakemake.params.run_dir, oracle_on=snakemake.params.oracle, oracle_masks=snakemake.params.oracle_masks)

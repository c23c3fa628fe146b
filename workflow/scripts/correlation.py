import pandas as pd

from merge2mix import analysis, jobs, plots
from merge2mix.io import read_json


def main(inp, out, seed):
    masks = pd.read_csv(inp.masks, dtype={"bitstring": str})
    # masks.csv holds the masks select.constraints allow (budget included): the oracle's best, the regret
    # and the overlaps compare the pick with those only, never with a mixture the user ruled out
    oracle = analysis.load_results(inp.oracle)
    oracle = oracle[oracle["mask"].isin(masks["mask"])].reset_index(drop=True)
    picked = read_json(inp.best)["mask"]
    corr = analysis.correlation(masks, oracle, picked, seed=seed)
    # the prior-robust metrics beside accuracy (a one-class model scores well only in accuracy), and
    # loss, which the embedded default selects by
    corr["by_metric"] = {m: analysis.correlation_in(m, masks, oracle, picked, seed=seed)
                         for m in ("macro_f1", "balanced_accuracy", "loss") if m in masks and f"val_{m}" in oracle}
    calibrated = None
    if inp.get("calibration"):  # size calibration: its predictions against the fine-tunes, beside the raw scores
        cal = read_json(inp.calibration)
        corr["calibrated"] = analysis.calibrated_agreement(masks, oracle, cal["metric"], [a["mask"] for a in cal["anchors"]])
        calibrated = masks.merge(oracle[["mask", f"val_{cal['metric']}"]], on="mask").rename(
            columns={f"val_{cal['metric']}": "finetuned"})
    analysis.write_correlation(corr, out.json)
    plots.merged_vs_finetuned(masks.merge(oracle[["mask", "val_accuracy"]], on="mask"), picked, corr, out.scatter,
                              calibrated=calibrated)


jobs.run(main, snakemake.log[0], inp=snakemake.input, out=snakemake.output, seed=snakemake.params.seed)

"""causal_lm on a tiny random Llama: instruction data layouts, response-only loss, LoRA merged as
materialised deltas (and why not as averaged A and B), the three target metrics, whole workflow runs
with LoRA and with full fine-tuning, and the paper-language preset planned."""

import json
import os
import re
from dataclasses import replace

import pandas as pd
import pytest
import torch

from conftest import REPO, WORKFLOW_ENV, llama_config, snakemake, write_config
from merge2mix import config as config_mod
from merge2mix import engine, families
from merge2mix.data.instructions import to_examples
from merge2mix.data.prepare import prepare_dataset
from merge2mix.errors import DataError
from merge2mix.job import Job
from merge2mix.merge import average
from merge2mix.checkpoints import load_weights, save_weights
from merge2mix.train import finetune

FAM = families.get("causal_lm")
HP = {"lr": 0.01, "epochs": 1, "max_steps": 20, "batch_size": 8, "weight_decay": 0.0, "warmup_ratio": 0.1, "max_grad_norm": 1.0}
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def test_instruction_layouts_become_prompt_response_choices():
    pr = to_examples("a", pd.DataFrame({"instruction": ["say", "go"], "input": ["hi", ""], "output": ["hi", "went"]}),
                     {"prompt": ["instruction", "input"], "response": "output"})
    assert json.loads(pr["prompt"][0]) == [{"role": "user", "content": "say\n\nhi"}]
    assert json.loads(pr["prompt"][1])[0]["content"] == "go" and pr["response"].tolist() == ["hi", "went"]
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2"}, {"role": "assistant", "content": "4"}]
    ms = to_examples("m", pd.DataFrame({"messages": [chat]}), {})
    assert json.loads(ms["prompt"][0]) == chat[:2] and ms["response"][0] == "4"
    mc = to_examples("q", pd.DataFrame({"q": ["x", "y", "z"], "choices": [["a", "b"], ["a", "b"], ["a", "b"]],
                                        "answer": [1, "A", "b"]}), {"prompt": "q"})
    assert mc["label"].tolist() == ["1", "0", "1"] and mc["response"].tolist() == ["b", "a", "b"]
    assert json.loads(mc["choices"][0]) == ["a", "b"]
    with pytest.raises(DataError, match=r"dataset m: a 'messages' chat must end with an assistant message"):
        to_examples("m", pd.DataFrame({"messages": [chat[:2]]}), {})
    with pytest.raises(DataError, match=r"dataset q: answer 'cc' is neither an index, a letter nor one of the choices"):
        to_examples("q", pd.DataFrame({"q": ["x"], "choices": [["a", "b"]], "answer": ["cc"]}), {"prompt": "q"})
    with pytest.raises(DataError, match=r"dataset r: no column 'response' for response"):
        to_examples("r", pd.DataFrame({"prompt": ["x"]}), {})


@pytest.fixture(scope="module")
def world(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("llm")
    cfg = config_mod.validate(llama_config(tiny_llama, root))
    task = cfg["task"]
    FAM.init_base(str(tiny_llama), str(root / "base"), task, seed=0)
    paths = {}
    for name, ds in cfg["datasets"].items():
        out = {s: str(root / name / f"{s}.parquet") for s in ("train", "val", "test")} | {"meta": str(root / name / "meta.json")}
        prepare_dataset(name, ds, None, cfg["splits"], 0, out, "instruction")
        paths[name] = out
    return {"root": root, "base": str(root / "base"), "task": task, "paths": paths}


def test_loss_is_on_the_response_only(world):
    tok = FAM.load_processor(world["base"])
    enc = FAM.encode(tok, pd.read_parquet(world["paths"]["add"]["train"]), world["task"])
    b = enc.batch([0, 1])
    for i in range(2):
        kept = b["labels"][i][b["labels"][i] != -100].tolist()
        assert kept == enc.responses[i]  # the response tokens (+ eos), nothing of the prompt
    assert tok.decode(enc.responses[0][:-1]).strip() == pd.read_parquet(world["paths"]["add"]["train"])["response"][0]


def test_lora_finetune_changes_only_adapted_weights_and_learns(world, tmp_path):
    rec = finetune(Job(base_dir=world["base"], task={**world["task"], "lora": LORA}, hp=HP, device="cpu"),
                   {"add": world["paths"]["add"]["train"]}, str(tmp_path / "m.safetensors"), str(tmp_path / "t.json"))
    base, ft = load_weights(os.path.join(world["base"], "model.safetensors")), load_weights(tmp_path / "m.safetensors")
    assert base.keys() == ft.keys()  # theta_0's names: the adapter is materialised, not saved beside it
    changed = {k for k in base if not torch.equal(base[k], ft[k])}
    assert changed and all(re.search(r"\.(q_proj|v_proj)\.weight$", k) for k in changed)
    assert sum(rec["train_loss"][-5:]) < sum(rec["train_loss"][:5])


def test_lora_merge_averages_materialised_deltas_not_factors(world, tmp_path):
    """Two LoRA fine-tunes with random adapters: the merged file equals theta_0 + mean_i s*B_i@A_i
    exactly, and differs from merging the factors, theta_0 + s*mean(B)@mean(A)."""
    from peft import get_peft_model_state_dict

    task = {**world["task"], "lora": LORA}
    scale = LORA["alpha"] / LORA["r"]
    files, factors = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = FAM.for_training(FAM.load_model(world["base"]), task)
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.data.normal_(0, 0.05)
        factors.append({k: v.clone() for k, v in get_peft_model_state_dict(model).items()})
        files.append(str(tmp_path / f"ft{seed}.safetensors"))
        save_weights(FAM.trained_state(model), files[-1])
    merged = average([load_weights(f) for f in files])
    base = load_weights(os.path.join(world["base"], "model.safetensors"))
    key = "model.layers.0.self_attn.q_proj.weight"
    ab = [(f[key.replace(".weight", ".lora_A.weight").replace("model.layers", "base_model.model.model.layers")],
           f[key.replace(".weight", ".lora_B.weight").replace("model.layers", "base_model.model.model.layers")]) for f in factors]
    deltas = torch.stack([scale * b @ a for a, b in ab]).mean(0)
    assert torch.allclose(merged[key], base[key] + deltas, atol=1e-6)
    factored = scale * torch.stack([b for _, b in ab]).mean(0) @ torch.stack([a for a, _ in ab]).mean(0)
    assert not torch.allclose(merged[key], base[key] + factored, atol=1e-4)
    assert torch.equal(merged["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])


def test_full_finetune_and_the_three_target_metrics(world, tmp_path):
    task = {**world["task"], "lora": None}
    job = Job(base_dir=world["base"], task=task, hp=HP, device="cpu", batch_size=4)
    finetune(job, {"add": world["paths"]["add"]["train"]}, str(tmp_path / "f.safetensors"), str(tmp_path / "f.json"))
    base, ft = load_weights(os.path.join(world["base"], "model.safetensors")), load_weights(tmp_path / "f.safetensors")
    assert sum(not torch.equal(base[k], ft[k]) for k in base) > len(base) // 2  # every weight trains
    ck, val = {"f": str(tmp_path / "f.safetensors")}, world["paths"]["target"]["val"]
    scores = {}
    for metric in ("choice_accuracy", "exact_match", "response_loss"):
        engine.clear_cache()
        scores[metric] = engine.score(replace(job, task={**task, "metric": metric}), ck, val)
        assert scores[metric]["n"] == 10 and 0 <= scores[metric]["accuracy"] <= 1 and scores[metric]["metric"] == metric
    assert scores["choice_accuracy"]["loss"] == pytest.approx(scores["response_loss"]["loss"])
    # choice_accuracy by hand: the choice with the highest summed log-likelihood after the prompt.
    model = FAM.load_model(world["base"])
    model.load_state_dict(ft)
    model.eval()
    enc = FAM.encode(FAM.load_processor(world["base"]), pd.read_parquet(val), task)
    right = 0
    with torch.no_grad():
        for i in range(len(enc)):
            lls = []
            for c in enc.choices[i]:
                ids = torch.tensor([enc.prompts[i] + c])
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
                lls.append(sum(float(logp[len(enc.prompts[i]) - 1 + j, t]) for j, t in enumerate(c)))
            right += int(max(range(len(lls)), key=lls.__getitem__) == enc.answers[i])
    assert scores["choice_accuracy"]["accuracy"] == pytest.approx(right / len(enc))
    # response_loss by hand: every response token's loss and argmax, pooled over all tokens (not examples).
    loss_sum = tokens = hits = 0
    with torch.no_grad():
        for p, r in zip(enc.prompts, enc.responses):
            logp = torch.log_softmax(model(input_ids=torch.tensor([p + r])).logits[0, :-1].float(), -1)
            rows = logp[len(p) - 1 :]
            loss_sum -= sum(float(rows[j, t]) for j, t in enumerate(r))
            hits += sum(int(rows[j].argmax()) == t for j, t in enumerate(r))
            tokens += len(r)
    assert scores["response_loss"]["loss"] == pytest.approx(loss_sum / tokens, rel=1e-5)
    assert scores["response_loss"]["accuracy"] == pytest.approx(hits / tokens)
    # exact_match by hand: greedy decoding, one token at a time, compared after folding case and spaces.
    tok, same = enc.tokenizer, 0
    with torch.no_grad():
        for p, r in zip(enc.prompts, enc.responses):
            ids = list(p)
            for _ in range(task.get("max_new_tokens", 32)):
                nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                ids.append(nxt)
                if nxt == tok.eos_token_id:
                    break
            got = tok.decode(ids[len(p) :], skip_special_tokens=True)
            same += " ".join(got.lower().split()) == " ".join(tok.decode(r, skip_special_tokens=True).lower().split())
    assert scores["exact_match"]["accuracy"] == pytest.approx(same / len(enc))


@pytest.mark.slow
def test_lora_workflow_end_to_end(tiny_llama, tmp_path):
    cfg = write_config(llama_config(tiny_llama, tmp_path / "results"), tmp_path / "llm.yaml")
    r = snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg))
    assert r.returncode == 0, r.stderr[-4000:]
    run = tmp_path / "results" / "llm"
    masks = pd.read_csv(run / "masks.csv")
    assert len(masks) == 7 and (masks["n"] == 10).all()
    res = json.loads((run / "merge_eval" / "add+sub.json").read_text())
    assert res["metric"] == "choice_accuracy"
    base = load_weights(run / "base" / "model.safetensors")
    for name in ("add", "sub", "succ"):
        ft = load_weights(run / "finetune" / name / "model.safetensors")
        assert all(re.search(r"\.(q_proj|v_proj)\.weight$", k) for k in base if not torch.equal(base[k], ft[k]))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selected_mixture"] == json.loads((run / "best_mask.json").read_text())["datasets"]
    assert {"pretrained", "all_data", "merge_to_mix"} <= set(pd.read_csv(run / "methods.csv")["method"])


@pytest.mark.slow
def test_full_finetune_workflow_runs_to_selection(tiny_llama, tmp_path):
    """lora: null -> every weight is fine-tuned and merged (the stream/memory engine on whole models);
    scored by response loss (whose `accuracy` is the response tokens' next-token accuracy). Up to the
    selection only: deploy and the baselines are the same code as the LoRA run above."""
    cfg = llama_config(tiny_llama, tmp_path / "results", run="llm-full")
    cfg["task"] = {**cfg["task"], "lora": None, "metric": "response_loss"}
    r = snakemake(tmp_path, "--cores", "2", "--configfile", str(write_config(cfg, tmp_path / "full.yaml")),
                  "--until", "select_mixture")
    assert r.returncode == 0, r.stderr[-4000:]
    run = tmp_path / "results" / "llm-full"
    base = load_weights(run / "base" / "model.safetensors")
    fts = {n: load_weights(run / "finetune" / n / "model.safetensors") for n in ("add", "sub", "succ")}
    for ft in fts.values():  # not just attention projections: MLPs and embeddings moved too
        changed = {k for k in base if not torch.equal(base[k], ft[k])}
        assert any(".mlp." in k for k in changed) and any("embed_tokens" in k for k in changed), sorted(changed)[:5]
    masks = pd.read_csv(run / "masks.csv")
    assert len(masks) == 7 and (masks["n"] == 10).all()
    res = json.loads((run / "merge_eval" / "add+sub.json").read_text())
    assert res["metric"] == "response_loss" and res["loss"] > 0
    # the engine's merge is the plain average of the two full fine-tunes
    merged = engine._pool(FAM, str(run / "base"), torch.device("cpu"), "memory", ["add", "succ", "sub"], None)
    model = merged.merge({n: str(run / "finetune" / n / "model.safetensors") for n in ("add", "sub")})
    ref = average([fts["add"], fts["sub"]])
    got = model.state_dict()
    assert set(ref) <= set(got) and all(torch.equal(got[k], ref[k]) for k in ref)


def test_paper_language_preset_plans(tmp_path, monkeypatch):
    import yaml

    preset = yaml.safe_load((REPO / "configs" / "paper-language.yaml").read_text())
    preset["results_dir"] = str(tmp_path / "results")
    cfg = write_config(preset, tmp_path / "paper-language.yaml")
    env = {k: v for k, v in WORKFLOW_ENV.items() if k != "HF_HUB_OFFLINE"}
    r = snakemake(tmp_path, "-n", "--configfile", str(cfg), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M))
    assert counts["fetch_model"] == "1" and counts["fetch_dataset"] == "7" and counts["finetune"] == "6"
    assert counts["merge_eval"] == "63" and counts["deploy"] == "1"
    plan = config_mod.load(cfg)
    assert plan["task"]["lora"]["r"] == 16 and plan["task"]["metric"] == "choice_accuracy"


def test_hf_instruction_source_reads_like_a_local_one(tmp_path):
    """An `hf:` instruction dataset (here the offline `json` builder) gives the same examples as the file."""
    from conftest import INSTRUCTIONS
    from merge2mix.data.prepare import read_source_classes

    hf, _ = read_source_classes("sub", {"hf": {"path": "json", "data_files": str(INSTRUCTIONS / "sub.jsonl")}}, "instruction")
    local, _ = read_source_classes("sub", {"local": {"path": str(INSTRUCTIONS / "sub.jsonl")}}, "instruction")
    pd.testing.assert_frame_equal(hf, local)
    assert json.loads(hf["prompt"][0])[0]["role"] == "user" and len(hf) == 40

"""The one fine-tuning loop, used for every fine-tune (per candidate dataset and the deployment mixture).

Deterministic on CPU for a fixed seed: seeded init (theta_0 is a file), a seeded torch.Generator for
the shuffle, seeded dropout, deterministic algorithms.
"""

from __future__ import annotations

import math
import os
import time

import pandas as pd
import torch
from tqdm import tqdm

from . import families, resume, runtime, store, task_types
from .errors import Merge2MixError
from .io import atomic_write_json
from .job import Job
from .masks import mask_key
from .mixtures import allocate, epoch_order
from .checkpoints import file_sha256, save_weights

log = runtime.log


def mixture_frame(train_paths: dict[str, str]) -> pd.DataFrame:
    """The union of the given datasets' train splits, concatenated in sorted-name order (the
    epoch shuffle then mixes them; each example is seen once per epoch, so larger datasets weigh more)."""
    frames = [pd.read_parquet(train_paths[n]).assign(source=n) for n in sorted(train_paths)]
    return pd.concat(frames, ignore_index=True)


def training_seed(job: Job) -> int:
    """The seed of a fine-tune's shuffles, dropout and weighted draws: the config's `train.seed` when
    set, else the run's `seed` (which also draws the splits and theta_0's head). Setting only
    `train.seed` refits every fine-tune on the same splits from the same theta_0: how repeatable the
    fine-tuned scores are, the ceiling on how well any surrogate can predict them."""
    return (job.hp or {}).get("seed", job.seed)


def finetune(job: Job, train_paths: dict[str, str], out_weights: str, out_json: str, *, data_meta: dict | None = None,
             work_dir: str | None = None, weights: dict[str, float] | None = None, budget: int | None = None) -> dict:
    """Fine-tune theta_0 (job.base_dir) on the union of `train_paths` with job.hp and the training seed
    (`training_seed`: hp's `seed`, else job.seed). With
    `work_dir` and job.checkpoint_every, the full training state is saved every that many steps and a
    rerun resumes from it, ending bit-identical (on CPU) to an uninterrupted run. For families with
    per-dataset heads (clip, text_label_description), each example is scored with its own dataset's
    head (job.heads; others there are ignored).
    `weights` (a mixture on the simplex over train_paths' datasets): each epoch is `budget` examples
    (default: the union's size) drawn per dataset in proportion to the weights (mixtures.epoch_order)
    instead of one pass over the union."""
    base_dir, task, hp, seed, heads = job.base_dir, job.task, job.hp, training_seed(job), job.only(train_paths).heads
    t0 = time.time()
    runtime.failpoint("finetune.start")
    dev = runtime.setup(job.threads, job.device, seed)
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True)
    fam = families.get(task["type"])
    df = mixture_frame(train_paths)
    model = fam.load_model(base_dir, dev)
    adapters = task_types.get(task["type"]).adapters
    if adapters:  # causal_lm with task.lora: PEFT adapters over a frozen theta_0
        model = fam.for_training(model, task)
    data = fam.encode(fam.load_processor(base_dir), df, task, heads)

    if weights is not None and set(weights) != set(train_paths):
        raise Merge2MixError(f"fine-tune: weights on {sorted(weights)}, data of {sorted(train_paths)}")
    sizes = df["source"].value_counts().to_dict()
    epoch = (budget or len(data)) if weights else len(data)
    bs = hp["batch_size"]
    steps_per_epoch = math.ceil(epoch / bs)
    total = hp["max_steps"] or max(1, math.ceil(hp["epochs"] * steps_per_epoch))
    trained = [p for p in model.parameters() if p.requires_grad]  # a family may freeze some (clip: the text tower)
    decay = [p for p in trained if p.ndim >= 2]
    no_decay = [p for p in trained if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hp["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}], lr=hp["lr"]
    )
    warm = int(hp["warmup_ratio"] * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )
    gen = torch.Generator().manual_seed(seed)
    losses, step, order, pos, resumed = [], 0, None, 0, None
    fingerprint = {"datasets": sorted(train_paths), "data": data_meta or {}, "hp": hp, "seed": seed, "task": task,
                   "base": os.path.getsize(os.path.join(base_dir, "model.safetensors")), "device": dev.type}
    if weights:
        fingerprint["mixture"] = {"weights": weights, "budget": epoch}
    if heads:  # a changed head (e.g. its templates) must not resume a state trained against the old one
        fingerprint["heads"] = {n: file_sha256(p) for n, p in heads.items()}
    trainer = resume.Trainer(model, opt, sched, gen)
    state = resume.load(work_dir, fingerprint, dev) if work_dir else None
    if state:
        at = resume.restore(state, trainer, dev)
        losses, step, order, pos = at.losses, at.step, at.order, at.pos
        resumed = step
        log.info("resuming from the state saved at step %d of %d (%s)", step, total, work_dir)
    fam.train_mode(model)
    name = mask_key(train_paths)
    log.info("fine-tune on %s: %d examples, %d steps, device %s", ",".join(sorted(train_paths)), len(data), total, dev)
    with tqdm(total=total, initial=step, desc=f"finetune {name}", unit="step", mininterval=2) as bar:
        while step < total:
            if runtime.STOP.is_set():  # Ctrl-C while training in Snakemake's process (runtime.STOP)
                raise Merge2MixError(f"fine-tune {name}: interrupted at step {step} of {total}; a rerun resumes "
                                     "from its last saved state (checkpoint_every_steps)")
            if order is None or pos >= steps_per_epoch:  # a new epoch: a fresh seeded shuffle (or weighted draw)
                order = epoch_order(sizes, weights, epoch, gen) if weights else torch.randperm(len(data), generator=gen)
                pos = 0
            b = data.batch(order[pos * bs : (pos + 1) * bs].tolist(), dev)
            pos += 1
            loss, _ = fam.forward(model, b)
            value = float(loss.detach())  # one device sync a step, for the check and the log alike
            if not math.isfinite(value):
                raise Merge2MixError(f"fine-tune {name}: loss became {value} at step {step} (lower train.lr?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, hp["max_grad_norm"])
            opt.step()
            sched.step()
            losses.append(round(value, 6))
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if work_dir and job.checkpoint_every and step % job.checkpoint_every == 0 and step < total:
                resume.save(work_dir, trainer, resume.Position(step, order, pos, losses), fingerprint)
                runtime.failpoint("finetune.checkpoint_saved")
    state = fam.trained_state(model) if adapters else model.state_dict()  # LoRA: materialised
    sha = save_weights(state, out_weights, {"datasets": sorted(train_paths), "seed": seed})
    record = {
        "datasets": sorted(train_paths),
        "examples": len(data),
        "examples_per_dataset": dict(sorted(sizes.items())),
        **({"mixture_weights": weights, "examples_per_epoch": epoch, "drawn_per_epoch": allocate(weights, epoch)} if weights else {}),
        "hyperparameters": hp,
        "seed": seed,
        "steps": total,
        "device": str(dev),
        "threads": job.threads,
        "data_sha256": data_meta or {},
        "weights_sha256": sha,
        "train_loss": losses,
        "final_loss_mean_last10": sum(losses[-10:]) / len(losses[-10:]),
        "wall_time_s": round(time.time() - t0, 2),
        "resumed_from_step": resumed,
    }
    atomic_write_json(record, out_json)
    if work_dir:
        resume.clear(work_dir)
    log.info("done in %.1fs, mean loss of last 10 steps %.4f", record["wall_time_s"], record["final_loss_mean_last10"])
    return record


def finetune_stored(store_dir: str | None, job: Job, train_paths: dict[str, str], out_weights: str, out_json: str,
                    **kw) -> dict:
    """`finetune` (its keyword options in `kw`), but reused from the content-addressed store when the
    same fine-tune exists there."""
    if not store_dir:
        return finetune(job, train_paths, out_weights, out_json, **kw)
    k = store.key(base_weights=os.path.join(job.base_dir, "model.safetensors"), data_sha256=kw.get("data_meta") or {},
                  hp=job.hp, seed=training_seed(job), task=job.task, heads=job.only(train_paths).heads)
    hit = store.fetch(store_dir, k, out_weights, out_json)
    if hit:
        return hit
    record = finetune(job, train_paths, out_weights, out_json, **kw)
    store.put(store_dir, k, out_weights, record)
    return record

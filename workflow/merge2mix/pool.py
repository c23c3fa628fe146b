"""The pool: theta_0's model plus the fine-tunes merged into it, one mask after another.

Two ways to merge, chosen automatically from the memory the pool needs (and logged):
- "memory": every fine-tune is held as one flat fp32 vector; the model's merged tensors are views into
  one flat buffer, and running sums of sorted-name prefixes are kept (LRU), so a mask whose prefix was
  seen costs one vector add plus one divide written straight into the model. The additions happen in
  the same order as the naive average (first + second + ... in sorted-name order, fp32), so the result
  is bit-for-bit `merge.average`'s. Task arithmetic takes the same path over task vectors
  (theta_i - theta_0, held instead of theta_i): one add, one scale and one add of theta_0 per mask,
  the same fp32 operations as `merge.op_task_arithmetic`, so again bit-for-bit.
- "stream": nothing but the model is held; each tensor is read member by member from the safetensors
  files (`safe_open`, file closed after each read) and accumulated, so peak memory stays near one model.
Any other operator (merge.OPERATORS) is applied tensor by tensor over the same views.
"""

from __future__ import annotations

import mmap
import os
from collections import OrderedDict

import torch
from safetensors import safe_open

from . import runtime
from .errors import CheckpointError
from .io import read_json
from .merge import OPERATORS, op_weighted, size_scale
from .checkpoints import check_compatible, file_sha256, load_weights

log = runtime.log
MODES = ("auto", "memory", "stream")
_VERIFIED: set = set()  # file identities whose sha256 matched their train.json
HUGE_PAGES_FROM = 1 << 20  # elements (4 MB): smaller buffers gain nothing from 2 MB pages


def clear_verified() -> None:
    """Forget which files were verified (engine.clear_cache: the next merge checks them again)."""
    _VERIFIED.clear()


def file_id(path) -> tuple:
    """A file's identity for caches: real path, size and mtime (a changed file is read again)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: file not found") from None
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns)


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux; physical pages elsewhere)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fp32_buffer(numel: int, device) -> torch.Tensor:
    """An uninitialised fp32 vector. On a CPU under Linux its memory is asked to be backed by
    transparent huge pages (madvise), so the first touch of a fresh buffer faults once per 2 MB, not
    once per 4 KB: a prefix sum written into a fresh 91 MB buffer then costs about 1.5 adds instead
    of 4 (measured side by side, docs/performance.md). Elsewhere, or where the kernel refuses, it is
    torch.empty's."""
    if torch.device(device).type != "cpu" or not hasattr(mmap, "MADV_HUGEPAGE") or numel < HUGE_PAGES_FROM:
        return torch.empty(numel, dtype=torch.float32, device=device)
    area = mmap.mmap(-1, numel * 4, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        area.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # THP disabled ("never") or not built in: plain pages, still correct
        pass
    return torch.frombuffer(area, dtype=torch.float32)  # keeps `area` alive as long as the tensor


def verify_checkpoint(path: str) -> None:
    """A fine-tune's train.json (written next to it) records its sha256: check it before merging, so
    a file changed or damaged after training is never averaged in. Cached per file identity."""
    fid = file_id(path)
    if fid in _VERIFIED:
        return
    record = os.path.join(os.path.dirname(path), "train.json")
    if os.path.isfile(record):
        want = read_json(record).get("weights_sha256")
        if want and file_sha256(path) != want:
            raise CheckpointError(f"checkpoint {path}: sha256 differs from the one recorded at training in {record} "
                                  "(changed or damaged since; delete it to retrain)")
    _VERIFIED.add(fid)


class Pool:
    """theta_0's model plus the fine-tunes merged into it (see the module docstring)."""

    def __init__(self, fam, base_dir: str, device, mode: str = "auto", pool: list[str] | None = None,
                 budget_bytes: int | None = None):
        if mode not in MODES:
            raise ValueError(f"merge mode '{mode}' (one of {', '.join(MODES)})")
        self.fam, self.device = fam, torch.device(device)
        pool_size = len(pool) if pool else 1
        self.last_member = max(pool) if pool else None  # in sorted-name order
        self.model = fam.load_model(base_dir, self.device)
        self.base_path = os.path.join(base_dir, "model.safetensors")
        live = self.model.state_dict(keep_vars=True)
        self.live = live
        self.shapes = {k: tuple(t.shape) for k, t in live.items()}
        self.keys = [k for k, t in live.items() if fam.is_merged(k, t)]
        self.unmerged = {k: t.detach() for k, t in live.items() if k not in self.keys}  # int buffers
        self.numel = sum(live[k].numel() for k in self.keys)
        self.direct = all(live[k].dtype == torch.float32 for k in self.keys)
        vec = self.numel * 4
        budget = budget_bytes if budget_bytes is not None else available_memory() // 2
        # memory mode needs the N fine-tunes, the model's flat buffer and >= N running sums
        need = (2 * pool_size + 1) * vec
        requested = mode
        if mode == "auto":
            mode = "memory" if need <= budget else "stream"
        self.mode = mode
        # Running sums of sorted-name prefixes, least recently used evicted and their buffers reused.
        # At most 2N of them, even when the budget allows every prefix: a fresh buffer's first touch
        # (page faults) costs more than the adds a cached prefix saves (measured side by side on 2 CPU
        # cores, docs/performance.md: the 63 masks of N = 6 in random order, 12.5-21.8 ms a mask with
        # all 31 prefixes kept against 8.7 ms with 12; N = 12, 1,500 masks: 44 against 36 ms).
        n_prefixes = 2 ** (pool_size - 1) - 1  # masks of >= 2 members not ending in the last member
        self.max_sums = max(pool_size, min(n_prefixes, 2 * pool_size, (budget - (pool_size + 1) * vec) // vec))
        self.rows: dict = {}
        self.row_file: dict = {}  # name -> the file identity its cached row holds
        self.sums: OrderedDict = OrderedDict()
        self.free: list = []  # buffers of evicted sums, reused: fresh pages cost page faults
        if mode == "memory":
            # The merged tensors become views into one flat fp32 buffer (for fp32 models), so a
            # merge is written into the model by the final divide, with no further copy.
            self.flat = fp32_buffer(self.numel, self.device)
            self.views, self.spans, off = {}, {}, 0
            for k in self.keys:
                t, n = live[k], live[k].numel()
                view = self.flat[off : off + n].view(t.shape)
                view.copy_(t.detach())
                if t.dtype == torch.float32:
                    t.data = view
                self.views[k], self.spans[k] = view, (off, off + n)
                off += n
        log.info("merge mode %s (%s): %d fine-tunes x %.1f MB fp32; memory mode needs %.2f GB, budget %.2f GB%s",
                 mode, "picked automatically" if requested == "auto" else "set in the config", pool_size, vec / 1e6, need / 1e9, budget / 1e9,
                 f"; up to {self.max_sums} prefix sums cached" if mode == "memory" else "")

    # -- memory mode ------------------------------------------------------------------------
    def _row(self, name: str, path: str) -> torch.Tensor:
        fid = file_id(path)
        old = self.row_file.get(name)
        if old is not None and old != fid:  # the name's file changed (rewritten, or another file under a
            self.rows.pop(old, None)         # one-off name such as a single's "mixture"): its old row goes,
            self.rows.pop(("tau", old), None)  # so a pool holds one row per name, as its memory plan counts
        self.row_file[name] = fid
        if fid not in self.rows:
            verify_checkpoint(path)
            sd = load_weights(path)
            check_compatible(self.shapes, {k: tuple(v.shape) for k, v in sd.items()}, f"{name} ({path})")
            self._check_unmerged(sd, name, path)
            self.rows[fid] = torch.cat([sd[k].reshape(-1).to(self.device, torch.float32) for k in self.keys])
        return self.rows[fid]

    def _tau(self, name: str, path: str) -> torch.Tensor:
        """theta_i - theta_0 as one fp32 vector (the theta_i row is dropped: one row per fine-tune)."""
        fid = file_id(path)
        if ("tau", fid) not in self.rows:
            theta = self._row(name, path)
            self.rows[("tau", fid)] = theta - self._row("theta_0", self.base_path)
            if path != self.base_path:
                del self.rows[fid]
        return self.rows[("tau", fid)]

    def _sum_into_flat(self, members: list[tuple[str, str]], scale: float | None = None) -> None:
        """Without `scale`: flat = (sum of the members' vectors, added in sorted-name order) / k; with
        it (task arithmetic): flat = theta_0 + scale * (sum of the members' task vectors). Cached prefix
        sums are reused ((r1 + r2) + r3 ...: the same fp32 operations as merge.op_average /
        op_task_arithmetic, so bit-identical). A mask ending in the last pool member can never be
        another mask's prefix: its final add goes straight into the model's buffer; other masks'
        sums are cached for their extensions."""
        k, kind = len(members), "theta" if scale is None else "tau"
        row_of = self._row if scale is None else self._tau
        ids = (kind, *(file_id(p) for _, p in members))
        start = k
        while start > 1 and ids[: start + 1] not in self.sums:
            start -= 1
        acc = self.sums[ids[: start + 1]] if start > 1 else row_of(*members[0])
        for i in range(max(start, 1), k):
            row = row_of(*members[i])
            if i == k - 1 and members[-1][0] == self.last_member:
                acc = torch.add(acc, row, out=self.flat)
                break
            buf = self.free.pop() if self.free else fp32_buffer(self.numel, self.device)
            acc = torch.add(acc, row, out=buf)
            self.sums[ids[: i + 2]] = acc
        else:
            if k > 1:
                self.sums.move_to_end(ids)
        if scale is None:
            torch.div(acc, k, out=self.flat)
        else:  # theta_0 + scale * sum: the reference's two fp32 ops (a + b == b + a exactly)
            torch.mul(acc, scale, out=self.flat)
            self.flat.add_(self._row("theta_0", self.base_path))
        while len(self.sums) > self.max_sums:  # evict least recently used; their buffers are reused
            self.free.append(self.sums.popitem(last=False)[1])

    # -- stream mode ------------------------------------------------------------------------
    def _stream_check(self, members: list[tuple[str, str]]) -> None:
        for name, path in members:
            verify_checkpoint(path)
            try:
                with safe_open(path, framework="pt") as f:
                    shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
                    check_compatible(self.shapes, shapes, f"{name} ({path})")
                    self._check_unmerged({k: f.get_tensor(k) for k in self.unmerged}, name, path)
            except FileNotFoundError:
                raise CheckpointError(f"checkpoint {path}: file not found") from None
            except CheckpointError:
                raise
            except Exception as e:
                raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({e})") from None

    def _read(self, path: str, k: str) -> torch.Tensor:
        with safe_open(path, framework="pt") as f:  # closed right away: no mmap kept resident
            t = f.get_tensor(k)
        if not torch.isfinite(t).all():
            raise CheckpointError(f"checkpoint {path}: tensor '{k}' contains NaN or inf")
        return t.to(self.device, torch.float32)

    def _stream(self, members: list[tuple[str, str]]) -> None:
        """Tensor by tensor: read each member's tensor, accumulate into the model's own tensor."""
        self._stream_check(members)
        for k in self.keys:
            target = self.live[k].data
            acc = target if target.dtype == torch.float32 else None
            for i, (name, path) in enumerate(members):
                t = self._read(path, k)
                if i == 0:
                    acc = t if acc is None else acc.copy_(t)
                else:
                    acc.add_(t)
                del t
            acc.div_(len(members))
            if acc is not target:
                target.copy_(acc)

    def _operate(self, members: list[tuple[str, str]], op, params: dict) -> None:
        """Any operator function (merge.OPERATORS, merge.op_weighted), tensor by tensor over views of
        the cached flat vectors (memory mode) or over tensors read from the files (stream mode): the
        same fp32 inputs in the same order as merge.merge_state, so the result is bit-for-bit the
        reference's."""
        base = ("theta_0", self.base_path)  # theta_0's file is read like a member's
        if self.mode == "memory":
            rows = [self._row(*base)] + [self._row(n, p) for n, p in members]
            for k in self.keys:
                a, b = self.spans[k]
                parts = [r[a:b].view(self.views[k].shape) for r in rows]
                self.views[k].copy_(op(parts[0], parts[1:], **params))
            return
        self._stream_check([base, *members])
        for k in self.keys:
            self.live[k].data.copy_(op(self._read(self.base_path, k), [self._read(p, k) for _, p in members], **params))

    def _check_unmerged(self, sd: dict, name: str, path: str) -> None:
        for k, t in self.unmerged.items():
            if not torch.equal(sd[k].to(t.device), t):
                raise CheckpointError(f"checkpoint {name} ({path}): non-mergeable tensor '{k}' differs from the base model")

    def merge(self, checkpoints: dict[str, str], method: str = "average", params: dict | None = None):
        """Load the merge of `checkpoints` (name -> safetensors path) into the model; return it.
        `method`: a merge.OPERATORS name; the average takes the prefix-sum path (memory mode)."""
        if not checkpoints:
            raise CheckpointError("merge: a mask over zero datasets has no average")
        if method not in OPERATORS:
            raise CheckpointError(f"merge.method '{method}' is not one of {', '.join(OPERATORS)}")
        members = [(n, checkpoints[n]) for n in sorted(checkpoints)]
        if method == "task_arithmetic" and self.mode == "memory":
            p = params or {}
            self._sum_into_flat(members, size_scale(len(members), p.get("lam", 1.0), p.get("power", 0.0)))
        elif method != "average":
            self._operate(members, OPERATORS[method], params or {})
        elif self.mode == "stream":
            self._stream(members)
        else:
            self._sum_into_flat(members)
        return self._published()

    def _published(self):
        if self.mode == "memory" and not self.direct:  # fp16/bf16 models: cast the fp32 merge into the parameters
            for k in self.keys:
                self.live[k].data.copy_(self.views[k])
        return self.model

    def merge_weighted(self, checkpoints: dict[str, str], weights: dict[str, float], operator: dict):
        """Load theta_0 + s(w) * sum_i w_i tau_i (merge2mix.mixtures) into the model; return it. Equal
        weights are the mask: its own merge (and prefix sums), bit for bit."""
        from .mixtures import is_mask, scale

        if set(weights) != set(checkpoints):
            raise CheckpointError(f"merge: weights on {sorted(weights)}, checkpoints of {sorted(checkpoints)}")
        if is_mask(weights):
            return self.merge(checkpoints, operator["method"], operator.get("params"))
        members = [(n, checkpoints[n]) for n in sorted(checkpoints)]
        self._operate(members, op_weighted, {"weights": [weights[n] for n, _ in members], "scale": scale(operator, weights)})
        return self._published()

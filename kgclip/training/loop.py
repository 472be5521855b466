"""The training loop: one code path for one process, torchrun (DDP) and other launchers."""

import copy
import csv
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from kgclip.config import to_dict
from kgclip.errors import ConfigError, KgclipError
from kgclip.graph import KnowledgeGraph
from kgclip.losses import KnowledgeClipLoss
from kgclip.model.knowledge_clip import KnowledgeCLIP
from kgclip.model.optim import parameter_groups
from kgclip.progress import bar
from kgclip.sampling import EntityContent, TripletLoader
from kgclip.store import KnowledgeStore
from kgclip.training.checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint, rng_state, save_checkpoint, set_rng_state
from kgclip.training.config import RunConfig
from kgclip.training.distributed import DistEnv, gather_with_grad, init_distributed

log = logging.getLogger("kgclip.training")


class TrainingError(KgclipError):
    """Training cannot go on (a non-finite loss, an incompatible checkpoint)."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    last_checkpoint: Path | None
    metrics: dict[str, float]
    triplets_per_second: float
    data_wait_share: float


def cosine_with_warmup(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine down to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def relation_tokens(model: KnowledgeCLIP, store: KnowledgeStore) -> torch.Tensor:
    return model.tokenizer(store.relations["text"].tolist())


def pair_relation_ids(store: KnowledgeStore, names: tuple[str, ...] | list[str]) -> torch.Tensor:
    r = store.relations
    sel = r["key"].isin(list(names)) | r["text"].isin(list(names))
    return torch.tensor(r.loc[sel, "relation_id"].tolist(), dtype=torch.long)


def build_model(config: RunConfig, num_relations: int) -> KnowledgeCLIP:
    torch.manual_seed(config.seed)
    return KnowledgeCLIP(config.model, num_relations)


def _prepare_run_dir(config: RunConfig, env: DistEnv) -> Path:
    run_dir = Path(config.run_dir) / config.name
    if env.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"{run_dir}: run folder cannot be written ({exc.strerror or exc})") from None
    return run_dir


def _check_resume(ckpt: dict[str, Any], config: RunConfig, store: KnowledgeStore, force: bool, path: Path) -> None:
    if ckpt.get("store_fingerprint") != store.fingerprint() and not force:
        raise TrainingError(f"{path}: the store {store.path} changed since this checkpoint was written "
                            f"(fingerprint {ckpt.get('store_fingerprint')} vs {store.fingerprint()}); pass --force to resume anyway")
    saved = ckpt["config"].get("model", {})
    now = to_dict(config)["model"]
    diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v and k != "pretrained"}
    if diff:
        listed = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
        raise TrainingError(f"{path}: written with a different model config ({listed})")
    if ckpt.get("num_relations") != store.num_relations:
        raise TrainingError(f"{path}: {ckpt.get('num_relations')} relations in the checkpoint, {store.num_relations} in the store")


def _teacher_embeddings(teacher, inputs, n: int, dim: int, device) -> torch.Tensor:
    emb = torch.zeros(n, dim, device=device)
    with torch.no_grad():
        if inputs.images.numel():
            emb[inputs.image_pos] = teacher.encode_image(inputs.images).float()
        if inputs.texts.numel():
            emb[inputs.text_pos] = teacher.encode_text(inputs.texts).float()
    return emb


def _output_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _output_tensors(getattr(obj, f.name))


def _batches(loader: TripletLoader):
    while True:
        yield from loader


def train_loop(config: RunConfig, *, force: bool = False, quiet: bool = False) -> TrainResult:
    """Train as configured; see :class:`~kgclip.training.config.RunConfig`.

    Writes ``<run_dir>/<name>/``: config.yaml (resolved), metrics.csv, train.log, checkpoints/.
    """
    env = init_distributed(config.train.device)
    if config.data.uneven not in ("pad", "drop"):
        raise ConfigError(f"data.uneven must be 'pad' or 'drop', got {config.data.uneven!r}")
    if config.train.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"train.precision must be auto, fp32 or bf16, got {config.train.precision!r}")
    if config.train.teacher not in ("start", "none"):
        raise ConfigError(f"train.teacher must be 'start' or 'none', got {config.train.teacher!r}")
    if not config.data.store:
        raise ConfigError("data.store is not set")
    KnowledgeStore(config.data.store)  # a missing or broken store fails before a run folder is made
    run_dir = _prepare_run_dir(config, env)

    handlers: list[logging.Handler] = []
    logger = logging.getLogger("kgclip")
    if env.is_main:
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        console = logging.StreamHandler()
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handlers = [fh, console]
    old = (logger.level, logger.propagate)
    for h in handlers:
        logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        return _train(config, env, run_dir, force=force, quiet=quiet)
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old[0])
        logger.propagate = old[1]


def _train(config: RunConfig, env: DistEnv, run_dir: Path, *, force: bool, quiet: bool) -> TrainResult:
    seed_everything(config.seed)
    store = KnowledgeStore(config.data.store)
    graph = KnowledgeGraph.from_store(store, ("train",))
    model = build_model(config, store.num_relations).to(env.device)
    if config.train.lock_image:
        model.clip.lock_image_tower()
    if config.train.lock_text:
        model.clip.lock_text_tower()
    if config.train.grad_checkpointing:
        model.clip.set_grad_checkpointing(True)
    teacher = None
    if config.loss.kd and config.train.teacher == "start":
        # The starting CLIP: the towers as built (pretrained weights or the seeded random init),
        # copied before any checkpoint is loaded into the student.
        teacher = copy.deepcopy(model.clip).eval().requires_grad_(False)
    rel_tokens = relation_tokens(model, store).to(env.device)
    loss_fn = KnowledgeClipLoss(config.loss, pair_relation_ids(store, config.loss.pair_relations).to(env.device))
    content = EntityContent(store, model.preprocess_val, model.tokenizer, cache_size=config.data.cache_size)
    loader = TripletLoader(graph, config.data.batch_size, fanouts=config.data.fanouts, seed=config.seed, rank=env.rank,
                           world_size=env.world_size, uneven=config.data.uneven, content=content, num_workers=config.data.num_workers)
    o = config.optim
    optimizer = torch.optim.AdamW(parameter_groups(model, o.tower_lr, o.new_lr, o.weight_decay), betas=tuple(o.betas), eps=o.eps)
    total_steps = config.train.steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, o.warmup_steps, total_steps, o.min_lr_ratio))

    start_step = 0
    if config.train.resume:
        path = resolve_checkpoint(run_dir if config.train.resume == "latest" else config.train.resume)
        ckpt = load_checkpoint(path)
        _check_resume(ckpt, config, store, force, path)
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise TrainingError(f"{path}: model weights do not fit this model ({str(exc).splitlines()[0]})") from None
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        loader.load_state_dict(ckpt["loader"])
        set_rng_state(ckpt["rng"])
        start_step = int(ckpt["step"])
        log.info("resumed from %s at step %d", path, start_step)

    core = model
    if env.distributed:
        model = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None, find_unused_parameters=True)
    gather = gather_with_grad if env.distributed else (lambda x: (x, 0))
    need_fusion = bool(config.loss.e2e or config.loss.e2r or config.loss.g2e)
    bf16 = config.train.precision == "bf16" or (config.train.precision == "auto" and env.device.type == "cuda")

    if env.is_main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    metrics_path = run_dir / "metrics.csv"
    metric_fields = ["step", "epoch", "loss", "e2e", "e2r", "g2e", "kd", "clip", "lr_towers", "lr_new", "triplets_per_s", "data_wait_share", "skipped_triplets"]
    if env.is_main and (start_step == 0 or not metrics_path.exists()):
        with open(metrics_path, "w", newline="") as f:
            csv.writer(f).writerow(metric_fields)
    tb = None
    if env.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            tb = None

    def between_steps() -> dict:
        """Loader and RNG state as they are when no step is in flight (what a checkpoint must hold)."""
        return {"loader": loader.state_dict(), "rng": rng_state()}

    def checkpoint(step: int, state: dict) -> Path | None:
        if not env.is_main:
            return None
        payload = {
            "model": core.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": None,
            "step": step, "rng": state["rng"], "loader": state["loader"], "config": to_dict(config),
            "num_relations": store.num_relations, "entity_keys": store.entity_keys.tolist(), "relation_keys": store.relation_keys.tolist(),
            "store_fingerprint": store.fingerprint(), "store_path": str(store.path.resolve()),
        }
        return save_checkpoint(run_dir, step, payload, config.train.keep_last)

    model.train()
    batches = _batches(loader)
    last_ckpt = list_checkpoints(run_dir)[-1] if start_step else None
    window = {"wait": 0.0, "total": 0.0, "triplets": 0, "skipped": 0}
    all_wait = all_total = 0.0
    all_triplets = 0
    last_parts: dict[str, float] = {}
    step = start_step
    resume_state = between_steps()
    progress = bar(total=total_steps, initial=start_step, desc=f"train {config.name}", unit="step", disable=quiet or not env.is_main)
    try:
        while step < total_steps:
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            parts_sum: dict[str, float] = {}
            wait = 0.0
            n_trip = 0
            for _ in range(o.accum_steps):
                tw = time.perf_counter()
                batch = next(batches)
                wait += time.perf_counter() - tw
                window["skipped"] += batch.dropped
                batch = batch.to(env.device)
                n_trip += len(batch)
                with torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=bf16):
                    out = model(batch, rel_tokens, need_fusion)
                    t_emb = t_scale = None
                    if teacher is not None:
                        t_emb = _teacher_embeddings(teacher, batch.inputs, batch.entities.numel(), out.entities.embedding.shape[1], env.device)
                        t_scale = teacher.logit_scale.exp()
                    total, parts = loss_fn(out, batch, t_scale, t_emb, gather=gather)
                    if env.distributed:  # DDP needs every output in the loss, even those of switched-off parts
                        total = total + 0.0 * sum(t.float().sum() for t in _output_tensors(out) if t.requires_grad)
                bad = [k for k, v in parts.items() if not torch.isfinite(v)]
                if bad or not torch.isfinite(total):
                    raise TrainingError(f"non-finite loss at step {step + 1} in part(s) {', '.join(bad) or 'total'} "
                                        f"({', '.join(f'{k}={v.item():.4g}' for k, v in parts.items())}); "
                                        f"the last good checkpoint is {last_ckpt or 'none (no checkpoint yet)'}")
                (total / o.accum_steps).backward()
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v.item() / o.accum_steps
                parts_sum["loss"] = parts_sum.get("loss", 0.0) + total.item() / o.accum_steps
            if env.distributed:  # log the global batch's mean, not this rank's
                keys = sorted(parts_sum)
                vals = torch.tensor([parts_sum[k] for k in keys], dtype=torch.float64, device=env.device)
                torch.distributed.all_reduce(vals)
                parts_sum = dict(zip(keys, (vals / env.world_size).tolist(), strict=True))
            if o.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(core.parameters(), o.grad_clip)
            lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}  # the rates this step used
            optimizer.step()
            scheduler.step()
            step += 1
            resume_state = between_steps()  # an interrupt in the next step resumes from here
            dt = time.perf_counter() - t0
            window["wait"] += wait
            window["total"] += dt
            window["triplets"] += n_trip * env.world_size
            all_wait += wait
            all_total += dt
            all_triplets += n_trip * env.world_size
            last_parts = parts_sum
            progress.update(1)
            progress.set_postfix(loss=f"{parts_sum['loss']:.3f}", tps=f"{window['triplets'] / max(window['total'], 1e-9):.0f}")
            if env.is_main and (step % config.train.log_every == 0 or step == total_steps):
                rowd = {"step": step, "epoch": loader.epoch, **{k: f"{v:.6g}" for k, v in parts_sum.items()},
                        "lr_towers": f"{lrs.get('towers', lrs.get('towers_no_decay', 0)):.3g}", "lr_new": f"{lrs.get('new', 0):.3g}",
                        "triplets_per_s": f"{window['triplets'] / max(window['total'], 1e-9):.1f}",
                        "data_wait_share": f"{window['wait'] / max(window['total'], 1e-9):.3f}", "skipped_triplets": window["skipped"]}
                with open(metrics_path, "a", newline="") as f:
                    csv.writer(f).writerow([rowd.get(k, "") for k in metric_fields])
                if tb is not None:
                    for k, v in parts_sum.items():
                        tb.add_scalar(f"loss/{k}", v, step)
                log.info("step %d %s", step, json.dumps({k: round(v, 5) for k, v in parts_sum.items()}))
                window = {"wait": 0.0, "total": 0.0, "triplets": 0, "skipped": 0}
            if step % config.train.checkpoint_every == 0 and step < total_steps:
                last_ckpt = checkpoint(step, resume_state) or last_ckpt
        last_ckpt = checkpoint(step, resume_state) or last_ckpt
    except KeyboardInterrupt:
        # The step in flight is dropped: the checkpoint holds the state after the last finished
        # step, so resuming redoes that step exactly.
        path = checkpoint(step, resume_state)
        log.warning("interrupted at step %d; checkpoint %s", step, path)
        raise
    finally:
        progress.close()
        if tb is not None:
            tb.close()
    if env.is_main and content.failures:
        log.warning("images that failed to load: %d entities (%s)", len(content.failures), ", ".join(list(content.failures)[:5]))
    result = TrainResult(run_dir=run_dir, steps=step, last_checkpoint=last_ckpt, metrics=last_parts,
                         triplets_per_second=all_triplets / max(all_total, 1e-9), data_wait_share=all_wait / max(all_total, 1e-9))
    log.info("done: %d steps, %.1f triplets/s, data wait %.1f%%", step, result.triplets_per_second, 100 * result.data_wait_share)
    return result


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

"""Knowledge-CLIP training as a :class:`~kgclip.training.trainer.TrainTask`.

The store is opened (and validated) once, when the task is made: the graph, the entity content,
the relation texts, the id maps and the fingerprint saved in checkpoints all come from it.
"""

import copy
import logging
from typing import Any

import torch
from torch import Tensor, nn

from kgclip.config import field_defaults, to_dict
from kgclip.errors import ConfigError
from kgclip.graph import KnowledgeGraph
from kgclip.losses import KnowledgeClipLoss
from kgclip.model.knowledge_clip import KnowledgeCLIP
from kgclip.model.optim import parameter_groups
from kgclip.sampling import EntityContent, TripletBatch, TripletLoader
from kgclip.store import KnowledgeStore
from kgclip.store.validate import open_valid
from kgclip.training.config import RunConfig, uses_fusion
from kgclip.training.distributed import DistEnv, gather_with_grad
from kgclip.training.trainer import TrainingError
from kgclip.vocabulary import relation_ids

log = logging.getLogger("kgclip.training")


def pair_relation_ids(store: KnowledgeStore, names: tuple[str, ...] | list[str]) -> Tensor:
    """Ids of the relations named (by key or text) in ``names``: the image-caption pair relations."""
    return torch.tensor(relation_ids(store, names), dtype=torch.long)


def teacher_embeddings(teacher: nn.Module, inputs, n: int, dim: int, device: torch.device) -> Tensor:
    """[n, dim] the frozen teacher's CLIP embedding of each entity of a batch (image or text tower)."""
    emb = torch.zeros(n, dim, device=device)
    with torch.no_grad():
        if inputs.images.numel():
            emb[inputs.image_pos] = teacher.encode_image(inputs.images).float()
        if inputs.texts.numel():
            emb[inputs.text_pos] = teacher.encode_text(inputs.texts).float()
    return emb


class KnowledgeTask:
    """Knowledge-CLIP: the student (:class:`KnowledgeCLIP`), the frozen starting CLIP as KD teacher,
    the weighted E2E / E2R / G2E / KD / CLIP loss, and :class:`TripletLoader` over the store's
    training triplets.

    Args:
        config: the run config.

    Raises:
        ConfigError: no store configured. StoreError: the store is missing or invalid (checked
        here, before the Trainer makes a run folder).
    """

    loss_parts = ("e2e", "e2r", "g2e", "kd", "clip", "e2e_hard")

    def __init__(self, config: RunConfig) -> None:
        if not config.data.store:
            raise ConfigError("data.store is not set")
        self.config = config
        self.store = open_valid(config.data.store)
        self.fingerprint = self.store.fingerprint()
        self.need_fusion = uses_fusion(config)
        self.model: KnowledgeCLIP | None = None
        self.teacher: nn.Module | None = None
        self.content: EntityContent | None = None
        self._relation_tokens: Tensor | None = None
        self._pairs = pair_relation_ids(self.store, config.loss.pair_relations)
        self._loss_fn: KnowledgeClipLoss | None = None
        self._device: torch.device | None = None

    def build_model(self) -> KnowledgeCLIP:
        """The student, seeded; and, if KD is on, the teacher: a frozen copy of the towers as built
        (pretrained weights or the seeded random init), made before any checkpoint is loaded."""
        c = self.config
        torch.manual_seed(c.seed)
        model = KnowledgeCLIP(c.model, self.store.num_relations)
        if c.train.lock_image:
            model.clip.lock_image_tower()
        if c.train.lock_text:
            model.clip.lock_text_tower()
        if c.train.grad_checkpointing:
            model.clip.set_grad_checkpointing(True)
        if c.loss.kd and c.train.teacher == "start":
            self.teacher = copy.deepcopy(model.clip).eval().requires_grad_(False)
        self._relation_tokens = model.tokenizer(self.store.relations["text"].tolist())
        self._loss_fn = KnowledgeClipLoss(c.loss, self._pairs)
        self.model = model
        return model

    def parameter_groups(self, model: KnowledgeCLIP) -> list[dict[str, Any]]:
        """Towers at ``optim.tower_lr``, new modules at ``optim.new_lr``, each with and without decay."""
        o = self.config.optim
        return parameter_groups(model, o.tower_lr, o.new_lr, o.weight_decay)

    def loader(self, env: DistEnv) -> TripletLoader:
        """This rank's shard of the training triplets, with entity content loaded in the workers."""
        assert self.model is not None, "build_model() first"
        d = self.config.data
        graph = KnowledgeGraph.from_store(self.store, ("train",))
        self.content = EntityContent(self.store, self.model.preprocess_val, self.model.tokenizer, cache_size=d.cache_size,
                                     image_cache=d.image_cache)
        return TripletLoader(graph, d.batch_size, fanouts=d.fanouts, seed=self.config.seed, rank=env.rank, world_size=env.world_size,
                             uneven=d.uneven, views=d.views, source_weights=d.source_weights, content=self.content, num_workers=d.num_workers,
                             negatives=self.config.loss.hard_negatives, negative_mode="hard")

    def _to(self, device: torch.device) -> None:
        if device != self._device:
            self._relation_tokens = self._relation_tokens.to(device)
            self._loss_fn.pair_relation_ids = self._loss_fn.pair_relation_ids.to(device)
            if self.teacher is not None:
                self.teacher.to(device)
            self._device = device

    def loss(self, model: nn.Module, batch: TripletBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted loss of one batch (contrastive parts over the global batch on several ranks)."""
        device = batch.relation.device
        self._to(device)
        out = model(batch, self._relation_tokens, self.need_fusion)
        t_emb = t_scale = None
        if self.teacher is not None:
            t_emb = teacher_embeddings(self.teacher, batch.inputs, batch.entities.numel(), out.entities.embedding.shape[1], device)
            t_scale = self.teacher.logit_scale.exp()
        return self._loss_fn(out, batch, t_scale, t_emb, gather=gather_with_grad)

    def checkpoint_extra(self) -> dict[str, Any]:
        """The id maps (PyKEEN style) and the store's fingerprint and path."""
        s = self.store
        return {"num_relations": s.num_relations, "entity_keys": s.entity_keys.tolist(), "relation_keys": s.relation_keys.tolist(),
                "store_fingerprint": self.fingerprint, "store_path": str(s.path.resolve())}

    def check_resume(self, ckpt: dict[str, Any], force: bool) -> None:
        """Refuse a checkpoint of a changed store (unless ``force``), another model config or relation count.

        The store is changed when its fingerprint differs from the checkpoint's (a rewritten manifest,
        a file added, removed or resized) or when a data file's content no longer matches the SHA-256
        the manifest recorded at writing (an edit in place to the same size): every data file is
        read once here, on resume only, by the main rank only (the Trainer shares the verdict). A
        store written before manifests held the files' hashes is only fingerprinted (a warning
        says so).
        """
        if not force:
            if ckpt.get("store_fingerprint") != self.fingerprint:
                raise TrainingError(f"the store {self.store.path} changed since this checkpoint was written "
                                    f"(fingerprint {ckpt.get('store_fingerprint')} vs {self.fingerprint}); pass --force to resume anyway")
            changed = self.store.file_problems(hashes=True)
            if changed:
                more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
                raise TrainingError(f"the store {self.store.path} changed since it was written: {changed[0]}{more}; "
                                    f"pass --force to resume anyway")
        saved = ckpt["config"].get("model", {})
        now = to_dict(self.config)["model"]
        # a field added to the model config after the checkpoint was written had its default then
        defaults = field_defaults(type(self.config.model))
        diff = {k: (saved.get(k, defaults.get(k)), v) for k, v in now.items()
                if saved.get(k, defaults.get(k)) != v and k != "pretrained"}
        if diff:
            listed = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
            raise TrainingError(f"written with a different model config ({listed})")
        if ckpt.get("num_relations") != self.store.num_relations:
            raise TrainingError(f"{ckpt.get('num_relations')} relations in the checkpoint, {self.store.num_relations} in the store")

    def report(self) -> None:
        """Warn about the entities whose images failed to load during training."""
        if self.content is not None and self.content.failures:
            f = self.content.failures
            log.warning("images that failed to load: %d entities (%s)", len(f), ", ".join(list(f)[:5]))

"""`kgclip prepare cache-images STORE --size 224`: decode, crop and resize every image entity once.

Writes the store's pre-resized image cache (see :mod:`kgclip.sampling.image_cache`) inside the
store folder; training and evaluation then read the crops without decoding, to the same values.
"""

import argparse
import os

import open_clip

from kgclip.errors import ConfigError
from kgclip.sampling.image_cache import human_bytes, plan_image_cache, write_image_cache
from kgclip.sampling.images import split_transform
from kgclip.store import KnowledgeStore


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Register the verb under ``kgclip prepare``."""
    p = verbs.add_parser("cache-images", help="write the store's pre-resized image cache (every image crop decoded once)")
    p.add_argument("store", help="the knowledge store folder (the cache goes into STORE/image_cache/)")
    p.add_argument("--size", type=int, default=224, help="the model's image size (224 for ViT-B/32 and ViT-L/14, 64 for kgclip-tiny)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes (default: every core)")
    p.add_argument("--max-bad-fraction", type=float, default=0.01, help="write nothing when more images than this fail to load")
    p.add_argument("--dry-run", action="store_true", help="print the cache's size and stop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.size < 1 or args.workers < 1:
        raise ConfigError(f"--size and --workers must be at least 1, got {args.size} and {args.workers}")
    store = KnowledgeStore(args.store)
    # open_clip's evaluation transform at this size: the one KnowledgeCLIP's loader applies.
    stages = split_transform(open_clip.image_transform(args.size, is_train=False))
    assert stages is not None  # a Compose with ToTensor
    plan = plan_image_cache(store, stages)
    print(f"image cache {plan.folder}: {plan.rows:,} image entities at {plan.size[1]}x{plan.size[0]} px, "
          f"{human_bytes(plan.bytes + 8 * store.num_entities)} in {plan.shards} shard(s)")
    if args.dry_run or plan.rows == 0:
        if plan.rows == 0:
            print("the store has no image entities: nothing to cache")
        return 0
    summary = write_image_cache(store, stages, plan, workers=args.workers, max_bad_fraction=args.max_bad_fraction)
    print(f"wrote {summary.folder}: {summary.written:,} crops; {len(summary.failures)} image(s) could not be loaded"
          + ("" if not summary.failures else " (left to the loader, which reports them): " + "; ".join(f"{k}: {v}" for k, v in list(summary.failures.items())[:5])))
    return 0

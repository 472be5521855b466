"""`kgclip export CHECKPOINT --out FILE.pt`: the trained towers as an open_clip checkpoint."""

import argparse

from kgclip.model import export_open_clip
from kgclip.training.restore import load_trained


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the trained CLIP towers as an open_clip state dict")
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("--out", required=True, help="output .pt file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model, config, _ = load_trained(args.checkpoint)
    path = export_open_clip(model, args.out)
    print(f"wrote {path}: load it with open_clip.create_model_and_transforms({config.model.clip_model!r}, pretrained={str(path)!r})")
    return 0

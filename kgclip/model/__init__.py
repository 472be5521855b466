"""The Knowledge-CLIP model: CLIP towers with token outputs, fusion encoder, E2R and G2E heads."""

from kgclip.model.clip import ClipBundle, create_clip, encode_image_tokens, encode_text_tokens
from kgclip.model.export import export_open_clip
from kgclip.model.fusion import FusionEncoder
from kgclip.model.heads import G2EGraphNetwork, RelationClassifier
from kgclip.model.knowledge_clip import KnowledgeCLIP, KnowledgeOutput, ModelConfig
from kgclip.model.optim import parameter_groups

__all__ = ["ClipBundle", "FusionEncoder", "G2EGraphNetwork", "KnowledgeCLIP", "KnowledgeOutput", "ModelConfig", "RelationClassifier",
           "create_clip", "encode_image_tokens", "encode_text_tokens", "export_open_clip", "parameter_groups"]

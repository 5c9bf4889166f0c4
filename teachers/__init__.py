"""Frozen vision-language teachers: text, image, region and dense embeddings behind one interface."""
from .openclip import OpenCLIPTeacher
from .pamr import PAMR_DILATIONS, pamr
from .refine import key_smoothing, prompt_denoise, refine_logits
from .templates import IMAGENET_TEMPLATES, SCENE_TEMPLATES, SIMPLE_TEMPLATES, TEMPLATE_SETS

__all__ = [
    "OpenCLIPTeacher",
    "IMAGENET_TEMPLATES",
    "SCENE_TEMPLATES",
    "SIMPLE_TEMPLATES",
    "TEMPLATE_SETS",
    "key_smoothing",
    "prompt_denoise",
    "refine_logits",
    "pamr",
    "PAMR_DILATIONS",
]

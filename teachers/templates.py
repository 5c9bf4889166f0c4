"""Prompt template sets used to embed class names with a teacher's text tower.

Templates are plain ``str.format`` patterns with one ``{}`` slot for the class name.
The 80 CLIP ImageNet templates are taken from open_clip's own metadata (the same list
OpenAI published), so they stay in sync with the library the teachers are built on.
"""
from __future__ import annotations

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

#: The 80 prompt templates of CLIP's ImageNet zero-shot evaluation.
IMAGENET_TEMPLATES: tuple[str, ...] = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)

#: Scene-level templates used by ViLD / MaskCLIP for dense prediction on scene images.
SCENE_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
    "a photo of the {} in the scene.",
    "a photo of one {} in the scene.",
)

#: A single template, the cheapest option (and the default for tests and the synthetic world).
SIMPLE_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "imagenet": IMAGENET_TEMPLATES,
    "scene": SCENE_TEMPLATES,
    "imagenet+scene": IMAGENET_TEMPLATES + SCENE_TEMPLATES,
    "simple": SIMPLE_TEMPLATES,
}


def resolve_templates(templates: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Turn a set name, a list of patterns or ``None`` (= ``simple``) into a tuple of patterns."""
    if templates is None:
        return SIMPLE_TEMPLATES
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            return TEMPLATE_SETS[templates]
        if "{}" in templates:
            return (templates,)
        raise ValueError(
            f"templates={templates!r} is neither a template set ({sorted(TEMPLATE_SETS)}) "
            "nor a pattern containing '{}'"
        )
    templates = tuple(templates)
    if not templates:
        raise ValueError("templates is an empty list; give at least one pattern such as 'a photo of a {}.'")
    for t in templates:
        if not isinstance(t, str) or "{}" not in t:
            raise ValueError(f"template {t!r} must be a string containing one '{{}}' slot for the class name")
    return templates

"""Building a frozen open_clip model for a teacher: architecture lookup (or an inline config), weights from a
pretrained tag or a local file (``weights_only``), the QuickGELU fix for OpenAI weights, tokenizers, and the
checks that refuse what the teacher cannot handle (sequence-first blocks, missing HF tokenizers)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import open_clip
from torch import nn

PRECISIONS = ("fp32", "fp16", "bf16")


def register_model_cfg(model_name: str, model_cfg: dict) -> None:
    """Declare ``model_cfg`` to open_clip under ``model_name`` through its public ``add_model_config``."""
    if not isinstance(model_cfg, dict) or "vision_cfg" not in model_cfg or "text_cfg" not in model_cfg:
        raise ValueError(
            f"model_cfg for {model_name!r} must be an open_clip model config dict with 'embed_dim', "
            f"'vision_cfg' and 'text_cfg', got keys {sorted(model_cfg) if isinstance(model_cfg, dict) else model_cfg}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{model_name}.json"
        path.write_text(json.dumps(model_cfg))
        open_clip.add_model_config(path)


def _file_fingerprint(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 (12 hex digits) over a module's state: names and values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def _needs_quick_gelu(model_name: str, tag: str) -> bool:
    """OpenAI's (and a few other) weights were trained with QuickGELU; open_clip's plain ``ViT-B-16`` /
    ``RN50`` configs use GELU and only warn. Fix the known mismatch: build the tower with QuickGELU."""
    tag_quick = bool(open_clip.get_pretrained_cfg(model_name, tag).get("quick_gelu", False))
    model_quick = bool((open_clip.get_model_config(model_name) or {}).get("quick_gelu", False))
    if tag_quick and not model_quick:
        warnings.warn(
            f"{model_name!r} weights {tag!r} were trained with QuickGELU: building the model with QuickGELU "
            f"(name it {model_name + '-quickgelu'!r} to say so explicitly)",
            stacklevel=4,
        )
        return True
    return False


def load_tokenizer(model_name: str):
    """open_clip's tokenizer for the model; towers with a Hugging Face tokenizer (SigLIP, ...) say what they need."""
    hf_name = ((open_clip.get_model_config(model_name) or {}).get("text_cfg") or {}).get("hf_tokenizer_name")
    try:
        return open_clip.get_tokenizer(model_name)
    except (ImportError, OSError, ValueError) as err:
        if not hf_name:
            raise
        raise RuntimeError(
            f"{model_name!r} tokenizes text with the Hugging Face tokenizer {hf_name!r}: it needs `pip install transformers` "
            "and the tokenizer files, from the hub or from the local HF cache (HF_HUB_OFFLINE=1 to use only the cache). "
            f"Cause: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err


def check_open_clip_layout(model: nn.Module, model_name: str) -> None:
    """The dense paths index tokens batch-first; open_clip releases with sequence-first ViT blocks would
    silently mix the images of a batch, so they are refused."""
    transformer = getattr(getattr(model, "visual", None), "transformer", None)
    if transformer is not None and not getattr(transformer, "batch_first", False):
        raise RuntimeError(
            f"open_clip_torch {open_clip.__version__} builds {model_name!r} with sequence-first transformer blocks; "
            f"ovdistill needs batch-first blocks (open_clip_torch >= 3.0): pip install -U open_clip_torch"
        )


def _create(model_name: str, pretrained: str | None, precision: str, device) -> nn.Module:
    if model_name not in open_clip.list_models():
        known = ", ".join(open_clip.list_models()[:12])
        raise ValueError(
            f"unknown open_clip model_name {model_name!r}; use an open_clip architecture "
            f"(e.g. {known}, ...) or declare a new one with model_cfg"
        )
    if pretrained is None:
        warnings.warn(
            f"OpenCLIPTeacher({model_name!r}, pretrained=None): weights are randomly initialised; "
            "this is only meaningful in tests",
            stacklevel=3,
        )
        return open_clip.create_model(model_name, pretrained=None, precision=precision, device=device)
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained in tags:
        quick = _needs_quick_gelu(model_name, pretrained)
        try:
            return open_clip.create_model(model_name, pretrained=pretrained, precision=precision, device=device, force_quick_gelu=quick)
        except RuntimeError as err:
            raise RuntimeError(
                f"could not load open_clip weights {model_name!r}/{pretrained!r}: {err}. Tags are fetched from a "
                "model hub or its local cache; without network, download the checkpoint elsewhere and pass its "
                "file path as pretrained="
            ) from err
    path = os.path.expanduser(pretrained)
    looks_like_path = os.sep in pretrained or Path(pretrained).suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
    if not os.path.isfile(path):
        if looks_like_path:
            raise FileNotFoundError(f"teacher checkpoint file not found: {pretrained!r}")
        raise ValueError(
            f"pretrained={pretrained!r} is neither an open_clip tag of {model_name!r} "
            f"(known tags: {tags or 'none'}) nor an existing checkpoint file"
        )
    try:
        return open_clip.create_model(model_name, pretrained=path, precision=precision, device=device, weights_only=True)
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint {pretrained!r} does not fit architecture {model_name!r}: {str(err).splitlines()[0]} ..."
        ) from err
    except Exception as err:
        raise ValueError(f"could not read checkpoint {pretrained!r} for {model_name!r}: {err}") from err

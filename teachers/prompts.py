"""Learned prompts (CoOp): M context vectors in the teacher's token-embedding space replace a hand-written template.

A prompt is ``[ctx_1 .. ctx_M] {class name} .`` (``position="end"``) or ``[ctx_1 .. ctx_M/2] {name}
[ctx_M/2+1 .. ctx_M] .`` (``"middle"``). The placeholders are written as the word ``X``, tokenised by the
teacher's own tokenizer, and their token embeddings are swapped for the context vectors by a forward hook
on the tower's token-embedding layer; everything after it (positional embedding, transformer, final norm,
EOT pooling, projection) is the frozen teacher's. So it works for any open_clip text tower with a token
embedding (the CLIP transformer, ``CustomTextCLIP`` towers, HF towers), and gradients reach only the context.

``unified`` context (one set for all classes) embeds any class name, seen in training or not;
``class_specific`` context (CoOp's CSC) has one set per training class and embeds those names only.
Prompt files are safetensors (never pickle) tied to the teacher's name (architecture + weights fingerprint).
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PLACEHOLDER = "X"


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The token-embedding layer of an open_clip text tower."""
    for owner in (model, getattr(model, "text", None)):
        emb = getattr(owner, "token_embedding", None)
        if isinstance(emb, nn.Embedding):
            return emb
    hf = getattr(getattr(getattr(model, "text", None), "transformer", None), "get_input_embeddings", None)
    if hf is not None:
        return hf()
    raise NotImplementedError(f"{type(model).__name__} has no token embedding layer to attach learned context to")


class PromptLearner(nn.Module):
    """Context vectors for ``teacher``'s text tower; ``forward(class_names)`` gives ``[K, D]`` normalised embeddings.

    Args:
        teacher: an ``OpenCLIPTeacher`` (kept out of this module's parameters and state dict).
        n_ctx: number of context vectors M (CoOp: 16); ignored when ``init`` gives a phrase.
        init: a phrase (``"a photo of a"``) whose token embeddings initialise the context; ``None``: N(0, 0.02).
        class_names: with ``class_specific``, the classes that get their own context.
        position: the class token at the ``end`` or in the ``middle`` of the context.
    """

    def __init__(self, teacher, n_ctx: int = 16, init: str | None = None, class_specific: bool = False,
                 class_names: list[str] | None = None, position: Literal["end", "middle"] = "end", seed: int = 0):
        super().__init__()
        if position not in ("end", "middle"):
            raise ValueError(f"position must be 'end' or 'middle', got {position!r}")
        if class_specific and not class_names:
            raise ValueError("class-specific context needs the class_names it is learned for")
        object.__setattr__(self, "teacher", teacher)  # not a submodule: frozen, and not saved with the prompt
        self.position, self.class_specific, self.init = position, class_specific, init
        self._token_cache: dict[tuple[str, ...], tuple[Tensor, Tensor]] = {}
        self.class_names = list(class_names) if class_names else None
        emb = token_embedding(teacher.model)
        if init:
            tokens = teacher.tokenizer([init]).to(emb.weight.device)
            ids = tokens[0][tokens[0] != 0][1:-1] if (tokens[0] == 0).any() else tokens[0][1:-1]
            base = emb(ids).detach().float()
            n_ctx = len(base)
        else:
            g = torch.Generator().manual_seed(seed)
            base = torch.randn(n_ctx, emb.embedding_dim, generator=g) * 0.02
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be at least 1, got {n_ctx}")
        self.n_ctx = n_ctx
        ctx = base.unsqueeze(0).repeat(len(self.class_names), 1, 1) if class_specific else base
        self.ctx = nn.Parameter(ctx.clone())

    def _prompts(self, class_names: list[str]) -> list[str]:
        xs = [PLACEHOLDER] * self.n_ctx
        if self.position == "end":
            return [" ".join([*xs, name]) + "." for name in class_names]
        half = self.n_ctx // 2
        return [" ".join([*xs[:half], name, *xs[half:]]) + "." for name in class_names]

    def _context(self, class_names: list[str]) -> Tensor:
        """``[K, M, W]`` context per requested class."""
        if not self.class_specific:
            return self.ctx.unsqueeze(0).expand(len(class_names), -1, -1)
        unknown = [n for n in class_names if n not in self.class_names]
        if unknown:
            raise ValueError(f"class-specific context was learned for {self.class_names}, not for {unknown}; use unified context")
        return self.ctx[[self.class_names.index(n) for n in class_names]]

    def _slots(self, class_names: list[str]) -> tuple[Tensor, Tensor]:
        """(tokens, context-slot mask) of the prompts, tokenised once per class list (the training loop asks
        for the same list every step)."""
        key = tuple(class_names)
        if key not in self._token_cache:
            t = self.teacher
            tokens = t.tokenizer(self._prompts(class_names))
            slots = tokens == int(t.tokenizer([PLACEHOLDER])[0][1])
            counts = slots.sum(1)
            if (counts != self.n_ctx).any():
                bad = class_names[int((counts != self.n_ctx).nonzero()[0])]
                raise ValueError(f"the prompt for {bad!r} does not hold {self.n_ctx} context slots (a name containing the word "
                                 f"{PLACEHOLDER!r}, or longer than the tower's context length)")
            self._token_cache[key] = (tokens, slots)
        return self._token_cache[key]

    def forward(self, class_names: list[str]) -> Tensor:
        if isinstance(class_names, str) or not class_names:
            raise ValueError(f"class_names must be a non-empty list of strings, got {class_names!r}")
        emb_layer = token_embedding(self.teacher.model)
        tokens, slots = (x.to(emb_layer.weight.device) for x in self._slots(list(class_names)))
        with self._swap(emb_layer, slots, self._context(class_names)):
            out = self.teacher.model.encode_text(tokens)
        return F.normalize(out.float(), dim=-1)

    @contextmanager
    def _swap(self, layer: nn.Module, slots: Tensor, ctx: Tensor):
        def hook(_module, _inputs, output):
            output = output.clone()
            output[slots] = ctx.reshape(-1, ctx.shape[-1]).to(output.dtype)
            return output

        handle = layer.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the context and its record (teacher, options) as safetensors, atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"teacher": self.teacher.name, "n_ctx": self.n_ctx, "position": self.position, "class_specific": self.class_specific,
                "class_names": self.class_names, "init": self.init}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file({"ctx": self.ctx.detach().cpu().contiguous()}, tmp, metadata={"ovdistill_prompt": json.dumps(meta)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, teacher) -> PromptLearner:
        """A prompt file for ``teacher``; a file learned with another teacher is refused, naming both."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {path} does not exist (write one with `ovdistill prompts`)")
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = json.loads((fh.metadata() or {}).get("ovdistill_prompt", "null"))
                ctx = fh.get_tensor("ctx")
        except Exception as err:  # safetensors raises its own error types for a foreign or cut file
            raise ValueError(f"{path} is not a readable prompt file: {err}") from None
        if not meta:
            raise ValueError(f"{path} holds no ovdistill prompt record; write it with `ovdistill prompts`")
        if meta["teacher"] != teacher.name:
            raise ValueError(f"prompt file {path} was learned for teacher {meta['teacher']}, not {teacher.name}: its context "
                             "lives in that teacher's token space")
        learner = cls(teacher, meta["n_ctx"], None, meta["class_specific"], meta["class_names"], meta["position"])
        learner.init = meta["init"]
        with torch.no_grad():
            learner.ctx.copy_(ctx)
        return learner


def text_embeddings(teacher, class_names: list[str], templates: str | list[str] | None = None, prompts: str | Path | None = None) -> Tensor:
    """``[K, D]`` class embeddings: the template ensemble, or a learned prompt file when ``prompts`` is given."""
    if prompts is None:
        return teacher.encode_text(class_names, templates)
    with torch.no_grad():
        return PromptLearner.load(prompts, teacher).to(teacher.device)(list(class_names))

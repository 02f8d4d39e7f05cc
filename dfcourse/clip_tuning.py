"""Parameter-efficient fine-tuning of CLIP beyond heads on frozen features.

* **Learned prompt context** (CoOp; Zhou et al., *Learning to Prompt for Vision-Language
  Models*, IJCV 2022): the words before each class name ("a photo of a ...") become
  ``n_ctx`` learned vectors, fed through CLIP's *frozen* text encoder; the classifier is the
  cosine similarity of the image feature with the two resulting text features. Only the
  context vectors train, and image features can stay cached.
* **LoRA** (Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR 2022) on
  the vision tower: every attention projection (the packed q/k/v ``in_proj_weight`` and
  ``out_proj``) and both MLP projections get ``W + (alpha / r) B A`` with rank-``r``
  matrices ``A``, ``B`` (``B`` starts at zero, so training starts from CLIP itself); the
  base weights stay frozen, and :func:`merge_lora` folds the update back into them.
  Written as a ``torch.nn.utils.parametrize`` parametrization rather than with the
  ``peft`` library: peft would add transformers and accelerate to the course's install,
  and it wraps ``nn.MultiheadAttention`` — whose q, k and v weights open_clip keeps in one
  packed parameter — only experimentally; a parametrization covers any weight in a few lines.
  LoRA changes the image features, so they cannot be cached: every epoch runs the ViT.
Used in notebook 03, which trains both through :mod:`dfcourse.recipes`.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

LORA_TARGETS = ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


class PromptLearner(nn.Module):
    """``n_ctx`` learned context vectors + fixed class-name tokens -> CLIP's frozen text
    encoder -> one L2-normalised text feature per class. CLIP itself is not a submodule
    (it is neither trained nor saved with the prompts)."""

    def __init__(self, clip, tokenizer, classnames=("real", "fake"), n_ctx: int = 4, suffix: str = "face."):
        super().__init__()
        self._clip = [clip]  # a list: not registered, not in state_dict
        for p in clip.parameters():
            p.requires_grad = False  # the text encoder stays frozen
        tokens = tokenizer([" ".join(["X"] * n_ctx) + f" {c} {suffix}" for c in classnames])
        with torch.no_grad():
            emb = clip.token_embedding(tokens)
        self.register_buffer("tokens", tokens)
        self.register_buffer("prefix", emb[:, :1].clone())  # start-of-text
        self.register_buffer("suffix", emb[:, 1 + n_ctx:].clone())  # class name, '.', end, padding
        self.ctx = nn.Parameter(torch.randn(n_ctx, emb.shape[-1]) * 0.02)
        self.n_ctx, self.classnames = n_ctx, tuple(classnames)

    def forward(self) -> torch.Tensor:
        clip = self._clip[0]
        n = len(self.classnames)
        x = torch.cat([self.prefix, self.ctx.unsqueeze(0).expand(n, -1, -1), self.suffix], dim=1)
        x = x + clip.positional_embedding
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
        from open_clip.transformer import text_global_pool  # imported on first use (see clip_peft._open_clip)

        x = text_global_pool(x, self.tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
        x = clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection
        return nn.functional.normalize(x.float(), dim=-1)


class CoOpHead(nn.Module):
    """Cached, normalised image features -> logit for *fake*: CLIP's temperature (100)
    times (similarity to the learned 'fake' prompt - similarity to the 'real' one). Only
    the prompt context trains."""

    arch = "coop"

    def __init__(self, clip, tokenizer, n_ctx: int = 4):
        super().__init__()
        self.prompts = PromptLearner(clip, tokenizer, n_ctx=n_ctx)
        self.register_buffer("scale", torch.tensor(100.0))

    def forward(self, f):
        sims = nn.functional.normalize(f.float(), dim=-1) @ self.prompts().T  # (B, 2): [real, fake]
        return self.scale * (sims[:, 1:] - sims[:, :1])


class LoRA(nn.Module):
    """Parametrization ``W -> W + (alpha / r) B A``; ``B`` starts at zero."""

    def __init__(self, weight: torch.Tensor, r: int = 4, alpha: float = 8.0):
        super().__init__()
        out_features, in_features = weight.shape
        self.A = nn.Parameter(torch.empty(r, in_features))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(out_features, r))
        self.scale = alpha / r

    def forward(self, weight):
        return weight + self.scale * (self.B @ self.A).to(weight.dtype)


def _targets(visual, targets=LORA_TARGETS):
    for block in visual.transformer.resblocks:
        for target in targets:
            path, name = target.rsplit(".", 1)
            yield block.get_submodule(path), name


def add_lora(visual, r: int = 4, alpha: float = 8.0, targets=LORA_TARGETS) -> list[nn.Parameter]:
    """Freeze the vision tower and add LoRA to ``targets`` in every block. Returns the
    LoRA parameters (the only ones that train)."""
    for p in visual.parameters():
        p.requires_grad = False
    params = []
    for module, name in _targets(visual, targets):
        lora = LoRA(getattr(module, name), r, alpha)
        parametrize.register_parametrization(module, name, lora)
        params += [lora.A, lora.B]
    return params


def merge_lora(visual, targets=LORA_TARGETS) -> None:
    """Fold every LoRA update into its base weight and remove the parametrization: the
    result is a plain CLIP vision tower computing the same function."""
    for module, name in _targets(visual, targets):
        if parametrize.is_parametrized(module, name):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
            getattr(module, name).requires_grad_(False)

"""Test-side references for the OpenAI layout, written here independently of `fgclip.weights`.

`OpenAIStyleCLIP` is a small CLIP with the `clip` package's module and parameter names and computation
(nn.MultiheadAttention with a fused in_proj, sequence-first blocks, QuickGELU, ln_final, argmax pooling,
`x @ proj`), so its features are the truth an OpenAI-layout loader must reproduce. `clipmodel_to_openai` is
the inverse mapping, spelled out by hand from the layout (not derived from the loader's tables), for a
transformers CLIPModel's state dict.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TEXT_WIDTH, VISION_WIDTH, EMBED = 64, 128, 16  # heads = width / 64: 1 and 2
TEXT_LAYERS, VISION_LAYERS = 2, 3
VOCAB, CONTEXT, PATCH, IMAGE = 100, 77, 8, 32


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, width // 64)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = Mlp(width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # x (L, N, C)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int):
        super().__init__()
        self.resblocks = nn.ModuleList([Block(width) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class Visual(nn.Module):
    def __init__(self):
        super().__init__()
        grid = IMAGE // PATCH
        self.conv1 = nn.Conv2d(3, VISION_WIDTH, PATCH, PATCH, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(VISION_WIDTH) * 0.1)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, VISION_WIDTH) * 0.1)
        self.ln_pre = nn.LayerNorm(VISION_WIDTH)
        self.transformer = Transformer(VISION_WIDTH, VISION_LAYERS)
        self.ln_post = nn.LayerNorm(VISION_WIDTH)
        self.proj = nn.Parameter(torch.randn(VISION_WIDTH, EMBED) * VISION_WIDTH**-0.5)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels).flatten(2).transpose(1, 2)  # (N, P, C)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)  # (N, 1, C)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)  # (N, 1 + P, C)
        return self.ln_post(x[:, 0]) @ self.proj


class OpenAIStyleCLIP(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = Visual()
        self.transformer = Transformer(TEXT_WIDTH, TEXT_LAYERS)
        self.token_embedding = nn.Embedding(VOCAB, TEXT_WIDTH)
        self.positional_embedding = nn.Parameter(torch.randn(CONTEXT, TEXT_WIDTH) * 0.1)
        self.ln_final = nn.LayerNorm(TEXT_WIDTH)
        self.text_projection = nn.Parameter(torch.randn(TEXT_WIDTH, EMBED) * TEXT_WIDTH**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(100.0)))
        # the clip package's archives carry these three in their state dict
        self.register_buffer("input_resolution", torch.tensor(IMAGE))
        self.register_buffer("context_length", torch.tensor(CONTEXT))
        self.register_buffer("vocab_size", torch.tensor(VOCAB))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:length]  # (N, L, C)
        mask = torch.full((length, length), float("-inf")).triu(1)
        x = self.transformer(x.transpose(0, 1), mask).transpose(0, 1)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ self.text_projection

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(pixels), self.encode_text(ids)


def reference_model(seed: int = 0) -> OpenAIStyleCLIP:
    """Every weight perturbed away from its default (norms too), so a wrong mapping cannot pass."""
    torch.manual_seed(seed)
    model = OpenAIStyleCLIP()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "logit_scale":
                p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def clipmodel_to_openai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIPModel state dict in the `clip` package's layout (q, k, v stacked into in_proj)."""
    out = {
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
        "text_projection": state["text_projection.weight"].t().contiguous(),
        "logit_scale": state["logit_scale"],
        "visual.conv1.weight": state["vision_model.embeddings.patch_embedding.weight"],
        "visual.class_embedding": state["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": state["vision_model.embeddings.position_embedding.weight"],
        "visual.ln_pre.weight": state["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": state["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": state["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": state["vision_model.post_layernorm.bias"],
        "visual.proj": state["visual_projection.weight"].t().contiguous(),
    }
    for ours, theirs in (("text_model", "transformer"), ("vision_model", "visual.transformer")):
        i = 0
        while f"{ours}.encoder.layers.{i}.layer_norm1.weight" in state:
            o, t = f"{ours}.encoder.layers.{i}.", f"{theirs}.resblocks.{i}."
            for kind in ("weight", "bias"):
                qkv = [state[f"{o}self_attn.{p}_proj.{kind}"] for p in "qkv"]
                out[f"{t}attn.in_proj_{kind}"] = torch.cat(qkv, dim=0)
                out[f"{t}attn.out_proj.{kind}"] = state[f"{o}self_attn.out_proj.{kind}"]
                out[f"{t}ln_1.{kind}"] = state[f"{o}layer_norm1.{kind}"]
                out[f"{t}ln_2.{kind}"] = state[f"{o}layer_norm2.{kind}"]
                out[f"{t}mlp.c_fc.{kind}"] = state[f"{o}mlp.fc1.{kind}"]
                out[f"{t}mlp.c_proj.{kind}"] = state[f"{o}mlp.fc2.{kind}"]
            i += 1
    return {k: v.clone() for k, v in out.items()}


def text_ids(n: int, length: int, seed: int) -> torch.Tensor:
    """Token ids with bos = VOCAB - 2 first and eos = VOCAB - 1 (the largest id) after a random length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB - 2, (n, length), generator=g)
    ids[:, 0] = VOCAB - 2
    for row, end in enumerate(torch.randint(2, length, (n,), generator=g).tolist()):
        ids[row, end:] = VOCAB - 1
    return ids

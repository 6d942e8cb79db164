"""CTransPath's convolutional stem (Wang et al. 2022), the patch embedding of its Swin-T.

CTransPath is timm's ``swin_tiny_patch4_window7_224`` with the 4x4 patchify convolution replaced by
this stem: two 3x3 stride-2 convolutions (3 -> 12 -> 24 channels, BatchNorm + ReLU each) and a 1x1
convolution to the 96-d embedding, so an image (B, 3, 224, 224) becomes (B, 56, 56, 96) tokens
(timm's Swin works channels-last). Parameter names (``proj.0``, ``proj.1``, ...) are those of the
released ``CHIEF_CTransPath.pth``. Plain PyTorch; only the Swin around it needs timm.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvStem"]


class ConvStem(nn.Module):
    """``forward(x (B, 3, H, W)) -> (B, H/4, W/4, embed_dim)`` (``output_fmt='NHWC'``, timm's Swin) or
    (B, H/4 * W/4, embed_dim) when ``flatten`` and ``output_fmt='NCHW'`` (the timm 0.5 layout)."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, embed_dim=96, norm_layer=None, flatten=True,
                 output_fmt="NHWC", **_):
        super().__init__()
        if patch_size != 4 or embed_dim % 8:
            raise ValueError(f"CTransPath's stem makes 4-px patches of a width divisible by 8, not {patch_size} px / {embed_dim}")
        size = img_size if isinstance(img_size, (tuple, list)) else (img_size, img_size)
        self.img_size = tuple(size)
        self.patch_size = (4, 4)
        self.grid_size = (size[0] // 4, size[1] // 4)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten, self.output_fmt = flatten, str(output_fmt)
        layers, cin, cout = [], in_chans, embed_dim // 8
        for _ in range(2):  # each halves H and W: 4x in all
            layers += [nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin, cout = cout, cout * 2
        layers.append(nn.Conv2d(cin, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, C, H/4, W/4)
        if self.output_fmt == "NHWC":
            return self.norm(x.permute(0, 2, 3, 1))
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)
        return self.norm(x)

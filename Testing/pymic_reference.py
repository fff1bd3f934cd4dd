"""Independent reference implementations of PyMIC's FMUNet and MIS-FM's PCT-Net for the tests
and the benchmark: plain functions over a state dict (``torch.nn.functional`` only), written
from PyMIC's / MIS-FM's public code as it composes its layers, with every tensor looked up by
its PyMIC name. Attention is the textbook softmax(q k^T * scale + bias [+ mask]) v on windows
cut with view/permute, the shift mask built region by region, and the relative-position index
recomputed from PCT-Net's formula pair by pair (numpy broadcasting).

Nothing here is used by the product; it exists to prove the product's networks right.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------- helpers


class Tracked(dict):
    """A state dict that remembers which names were read (to prove the layout is covered)."""

    def __init__(self, state: dict) -> None:
        super().__init__(state)
        self.read = set()

    def __getitem__(self, name):
        self.read.add(name)
        return super().__getitem__(name)


def conv(state, name, x, stride=1):
    weight = state[name + ".weight"]
    padding = tuple(k // 2 for k in weight.shape[2:])
    return F.conv3d(x, weight, state[name + ".bias"], stride=stride, padding=padding)


# ---------------------------------------------------------------------------- FMUNet


def _instance_lrelu(state, name, x):
    x = F.instance_norm(x, weight=state[name + ".weight"], bias=state[name + ".bias"], eps=1e-5)
    return F.leaky_relu(x, 0.01)


def _residual(state, name, x, depth, rate=0.0, training=False):
    for n in range(depth):
        # Sequential: 0 InstanceNorm3d, 1 LeakyReLU, 2 Dropout, 3 Conv3d
        h = F.dropout(_instance_lrelu(state, f"{name}.conv_list.{n}.0", x), rate, training)
        x = x + conv(state, f"{name}.conv_list.{n}.3", h)
    return x


def fmunet_reference(state, config: dict, x: torch.Tensor, training: bool = False) -> list:
    """[full, 1/2, 1/4, 1/8] logits of PyMIC's FMUNet (``training``: dropout on, in levels 2-4)."""
    depth = config.get("depth", 2)
    rates = [0.0, 0.0] + [config.get("dropout", 0.2)] * 3
    res_mode = config.get("res_mode", 0)
    flat = {0: 0, 1: 1, 2: 2}[res_mode]  # how many of the first levels are in-plane only
    steps = [(1, 2, 2) if level < flat else (2, 2, 2) for level in range(4)]
    x = conv(state, "project", x)
    skips = []
    for level in range(5):
        if level:
            h = _instance_lrelu(state, f"encoder.down{level - 1}.down.0", x)
            x = conv(state, f"encoder.down{level - 1}.down.2", h, stride=steps[level - 1])
        x = _residual(state, f"encoder.en_conv{level}", x, depth, rates[level], training)
        skips.append(x)
    x = _residual(state, "decoder.de_conv4", skips[4], depth, rates[4], training)
    decoded = [None] * 4
    for level in (3, 2, 1, 0):
        up = conv(state, f"decoder.upcat{level}.up.2", _instance_lrelu(state, f"decoder.upcat{level}.up.0", x))
        up = F.interpolate(up, scale_factor=steps[level], mode="trilinear", align_corners=True)
        joined = torch.cat([skips[level], up], dim=1)
        x = conv(state, f"decoder.upcat{level}.conv.2", _instance_lrelu(state, f"decoder.upcat{level}.conv.0", joined))
        x = _residual(state, f"decoder.de_conv{level}", x, depth, rates[level], training)
        decoded[level] = x
    return [conv(state, f"out_layers.{i}.2", _instance_lrelu(state, f"out_layers.{i}.0", decoded[i])) for i in range(4)]


# ---------------------------------------------------------------------------- PCT-Net


TRAINING = {"on": False}  # PCT-Net's reference in training mode: batch statistics, dropout, drop path


def _bn_prelu(state, bn, act, x):
    x = F.batch_norm(
        x,
        state[bn + ".running_mean"].clone(),
        state[bn + ".running_var"].clone(),
        state[bn + ".weight"],
        state[bn + ".bias"],
        training=TRAINING["on"],
        eps=1e-5,
    )
    return F.prelu(x, state[act + ".weight"])


def _drop(x, rate):
    return F.dropout(x, rate, TRAINING["on"])


def _drop_path(x, rate=0.2):
    if not TRAINING["on"]:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


def _conv_block(state, name, x, rate=0.0):
    # conv_conv: 0 BN, 1 PReLU, 2 conv, 3 BN, 4 PReLU, 5 Dropout, 6 conv
    x = conv(state, f"{name}.conv_conv.2", _bn_prelu(state, f"{name}.conv_conv.0", f"{name}.conv_conv.1", x))
    x = _drop(_bn_prelu(state, f"{name}.conv_conv.3", f"{name}.conv_conv.4", x), rate)
    return conv(state, f"{name}.conv_conv.6", x)


def _pre_conv(state, name, x):
    """[BN, PReLU, conv] as ``name.0/1/2``."""
    return conv(state, f"{name}.2", _bn_prelu(state, f"{name}.0", f"{name}.1", x))


def _down(state, name, x, in_plane):
    x = F.max_pool3d(x, (1, 2, 2) if in_plane else 2)
    return _pre_conv(state, f"{name}.conv", x)


def _up_cat(state, name, fine, coarse):
    h = _bn_prelu(state, f"{name}.up.0", f"{name}.up.1", coarse)
    weight = state[f"{name}.up.2.weight"]
    up = F.conv_transpose3d(h, weight, state[f"{name}.up.2.bias"], stride=tuple(weight.shape[2:]))
    return _pre_conv(state, f"{name}.conv", torch.cat([fine, up], dim=1))


def pct_position_index(window):
    """PCT-Net's relative-position index, pair by pair with numpy."""
    w0, w1, w2 = window
    coords = np.array([(s, h, w) for s in range(w0) for h in range(w1) for w in range(w2)])
    d = coords[:, None, :] - coords[None, :, :]
    return (d[..., 0] + w0 - 1) * (3 * w1 - 1) + (d[..., 1] + w1 - 1) * (2 * w1 - 1) + (d[..., 2] + w2 - 1)


def _windows(x, w):
    b, s, h, ww, c = x.shape
    x = x.view(b, s // w, w, h // w, w, ww // w, w, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(-1, w * w * w, c)


def _unwindows(windows, w, s, h, ww):
    b = windows.shape[0] // ((s // w) * (h // w) * (ww // w))
    x = windows.view(b, s // w, h // w, ww // w, w, w, w, -1).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, s, h, ww, -1)


def _region_mask(sp, hp, wp, w, shift):
    marks = torch.zeros(1, sp, hp, wp, 1)
    count = 0
    for a in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
        for b in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
            for c in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
                marks[:, a, b, c, :] = count
                count += 1
    ids = _windows(marks, w).squeeze(-1)
    mask = ids.unsqueeze(1) - ids.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def _swin_block(state, name, x, size, heads, window, shift, mask, rate=0.0):
    b, length, c = x.shape
    s, h, w = size
    shortcut = x
    x = F.layer_norm(x, (c,), state[f"{name}.norm1.weight"], state[f"{name}.norm1.bias"], 1e-5).view(b, s, h, w, c)
    ps, ph, pw = ((window - n % window) % window for n in (s, h, w))
    x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, ps))
    sp, hp, wp = x.shape[1:4]
    if shift:
        x = torch.roll(x, (-shift, -shift, -shift), dims=(1, 2, 3))
    win = _windows(x, window)
    n = window**3
    qkv = F.linear(win, state[f"{name}.attn.qkv.weight"], state[f"{name}.attn.qkv.bias"])
    qkv = qkv.reshape(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
    scores = q @ k.transpose(-2, -1)
    index = state[f"{name}.attn.relative_position_index"]
    bias = state[f"{name}.attn.relative_position_bias_table"][index.reshape(-1)].view(n, n, -1).permute(2, 0, 1)
    scores = scores + bias.unsqueeze(0)
    if shift:
        nw = mask.shape[0]
        scores = (scores.view(-1, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, n, n)
    attended = (_drop(scores.softmax(-1), rate) @ v).transpose(1, 2).reshape(-1, n, c)
    attended = _drop(F.linear(attended, state[f"{name}.attn.proj.weight"], state[f"{name}.attn.proj.bias"]), rate)
    x = _unwindows(attended, window, sp, hp, wp)
    if shift:
        x = torch.roll(x, (shift, shift, shift), dims=(1, 2, 3))
    x = shortcut + _drop_path(x[:, :s, :h, :w, :].reshape(b, length, c))
    y = F.layer_norm(x, (c,), state[f"{name}.norm2.weight"], state[f"{name}.norm2.bias"], 1e-5)
    y = _drop(F.gelu(F.linear(y, state[f"{name}.mlp.fc1.weight"], state[f"{name}.mlp.fc1.bias"])), rate)
    return x + _drop_path(_drop(F.linear(y, state[f"{name}.mlp.fc2.weight"], state[f"{name}.mlp.fc2.bias"]), rate))


def _conv_trans(state, name, x, depth, heads, window, rate=0.0):
    b, c, s, h, w = x.shape
    tokens = _drop(x.flatten(2).transpose(1, 2), rate)
    layer_shift = window // 2
    mask = None
    if min(s, h, w) > window and layer_shift:
        pad = [-(-n // window) * window for n in (s, h, w)]
        mask = _region_mask(*pad, window, layer_shift)
    for i in range(depth):
        block_window, block_shift = window, (0 if i % 2 == 0 else layer_shift)
        if min(s, h, w) <= window:
            block_window, block_shift = min(s, h, w), 0
        tokens = _swin_block(state, f"{name}.trans.blocks.{i}", tokens, (s, h, w), heads, block_window, block_shift, mask, rate)
    return _conv_block(state, f"{name}.conv", x, rate) + tokens.reshape(b, s, h, w, c).permute(0, 4, 1, 2, 3)


def pctnet_reference(state, config: dict, x: torch.Tensor, training: bool = False) -> list:
    """[full, 1/2, 1/4, 1/8] logits of MIS-FM's PCT-Net (``training``: batch statistics, dropout
    and drop path, as MIS-FM trains it; the running statistics are not updated)."""
    TRAINING["on"] = training
    try:
        return _pctnet(state, config, x)
    finally:
        TRAINING["on"] = False


def _pctnet(state, config, x):
    mode = config.get("resolution_mode", 0)
    rates = config.get("dropout", [0, 0, 0.2, 0.2, 0.2])
    depths = config.get("depths", [2, 2, 2])
    heads = config.get("num_heads", [4, 8, 16])
    windows = config.get("window_sizes", [6, 6, 6])
    in_plane = {0: (False, False), 1: (True, False), 2: (True, True)}[mode]
    stem = f"embeddings.{mode}"
    x0 = _conv_block(state, f"{stem}.conv0", conv(state, f"{stem}.proj", x), rates[0])
    x1 = _conv_block(state, f"{stem}.conv1", _down(state, f"{stem}.down1", x0, in_plane[0]), rates[1])
    x2 = _down(state, f"{stem}.down2", x1, in_plane[1])
    p = "pyramid_ct"
    e2 = _conv_trans(state, f"{p}.convtrans_e2", x2, depths[0], heads[0], windows[0], rates[2])
    e3 = _conv_trans(state, f"{p}.convtrans_e3", _down(state, f"{p}.down3", e2, False), depths[1], heads[1], windows[1], rates[3])
    e4 = _conv_trans(state, f"{p}.convtrans_e4", _down(state, f"{p}.down4", e3, False), depths[2], heads[2], windows[2], rates[4])
    d3 = _conv_trans(state, f"{p}.convtrans_d3", _up_cat(state, f"{p}.up4", e3, e4), depths[1], heads[1], windows[1], rates[3])
    d2 = _conv_trans(state, f"{p}.convtrans_d2", _up_cat(state, f"{p}.up3", e2, d3), depths[0], heads[0], windows[0], rates[2])
    head = f"pred_heads.{mode}"
    d1 = _conv_block(state, f"{head}.conv1", _up_cat(state, f"{head}.up2", x1, d2), rates[1])
    d0 = _conv_block(state, f"{head}.conv0", _up_cat(state, f"{head}.up1", x0, d1), rates[0])
    return [
        _pre_conv(state, f"{head}.out_conv0.conv", d0),
        _pre_conv(state, f"{head}.out_conv1.conv", d1),
        _pre_conv(state, f"{p}.out_conv2.conv", d2),
        _pre_conv(state, f"{p}.out_conv3.conv", d3),
    ]

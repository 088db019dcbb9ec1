"""Independent float64 NumPy forwards of Torch7 nn layers (from the layers' definitions, not from torch).

Arguments follow Torch7: kernel (kW, kH), stride (dW, dH), padding (padW, padH); arrays are N x C x H x W.
"""
import math

import numpy as np


def conv2d(x, w, b, kw, kh, dw, dh, pw, ph):
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (h + 2 * ph - kh) // dh + 1
    wo = (wd + 2 * pw - kw) // dw + 1
    out = np.zeros((n, w.shape[0], ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + dh * (ho - 1) + 1:dh, j:j + dw * (wo - 1) + 1:dw]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out if b is None else out + b[None, :, None, None]


def full_conv2d(x, w, b, kw, kh, dw, dh, pw, ph, aw, ah):
    """Transposed convolution: every input pixel scatters its kernel-weighted copy into the output."""
    n, c, h, wd = x.shape
    big = np.zeros((n, w.shape[1], (h - 1) * dh + kh + ah, (wd - 1) * dw + kw + aw))
    for i in range(kh):
        for j in range(kw):
            big[:, :, i:i + dh * (h - 1) + 1:dh, j:j + dw * (wd - 1) + 1:dw] += np.einsum("nchw,co->nohw", x, w[:, :, i, j])
    ho = (h - 1) * dh - 2 * ph + kh + ah
    wo = (wd - 1) * dw - 2 * pw + kw + aw
    out = big[:, :, ph:ph + ho, pw:pw + wo]
    return out if b is None else out + b[None, :, None, None]


def _pool_size(size, k, d, p, ceil):
    if ceil:
        o = int(math.ceil((size + 2 * p - k) / d)) + 1
        if (o - 1) * d >= size + p:
            o -= 1
    else:
        o = (size + 2 * p - k) // d + 1
    return o


def max_pool(x, kw, kh, dw, dh, pw=0, ph=0, ceil=False):
    n, c, h, w = x.shape
    ho, wo = _pool_size(h, kh, dh, ph, ceil), _pool_size(w, kw, dw, pw, ceil)
    out = np.empty((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            h0, w0 = i * dh - ph, j * dw - pw
            win = x[:, :, max(h0, 0):min(h0 + kh, h), max(w0, 0):min(w0 + kw, w)]
            out[:, :, i, j] = win.max(axis=(2, 3))
    return out


def avg_pool(x, kw, kh, dw, dh, pw=0, ph=0, ceil=False, count_include_pad=True):
    n, c, h, w = x.shape
    ho, wo = _pool_size(h, kh, dh, ph, ceil), _pool_size(w, kw, dw, pw, ceil)
    out = np.empty((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            h0, w0 = i * dh - ph, j * dw - pw
            h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, w + pw)
            pool = (h1 - h0) * (w1 - w0)
            hs, ws, he, we = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            s = x[:, :, hs:he, ws:we].sum(axis=(2, 3))
            out[:, :, i, j] = s / (pool if count_include_pad else (he - hs) * (we - ws))
    return out


def batch_norm(x, mean, var, eps, weight=None, bias=None):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        y = y * weight.reshape(shape) + bias.reshape(shape)
    return y


def lrn(x, size, alpha, beta, k):
    c = x.shape[1]
    sq = x ** 2
    out = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c, ch + (size - 1) // 2 + 1)
        scale = k + alpha / size * sq[:, lo:hi].sum(axis=1)
        out[:, ch] = x[:, ch] * scale ** -beta
    return out


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def linear(x, w, b):
    y = x @ w.T
    return y if b is None else y + b


def prelu(x, w):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return np.where(x > 0, x, x * w.reshape(shape))


def elu(x, alpha):
    return np.where(x > 0, x, alpha * (np.exp(x) - 1))


def upsample_nearest(x, s):
    return x.repeat(s, axis=2).repeat(s, axis=3)


def pad(x, l, r, t, b, mode):
    """mode: 'constant' (zeros; negative = crop), 'reflect', 'edge'."""
    if mode == "constant":
        x = x[:, :, max(-t, 0):x.shape[2] - max(-b, 0), max(-l, 0):x.shape[3] - max(-r, 0)]
        return np.pad(x, ((0, 0), (0, 0), (max(t, 0), max(b, 0)), (max(l, 0), max(r, 0))))
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), mode=mode)


def bilinear_align_corners(x, ho, wo):
    """Bilinear resampling with corner pixels aligned (Torch7's SpatialUpSamplingBilinear)."""
    n, c, h, w = x.shape

    def coords(o, i):
        src = np.arange(o) * ((i - 1) / (o - 1) if o > 1 else 0.0)
        lo = np.minimum(np.floor(src).astype(int), i - 1)
        hi = np.minimum(lo + 1, i - 1)
        return lo, hi, src - lo

    y0, y1, fy = coords(ho, h)
    x0, x1, fx = coords(wo, w)
    top = x[:, :, y0][:, :, :, x0] * (1 - fx) + x[:, :, y0][:, :, :, x1] * fx
    bot = x[:, :, y1][:, :, :, x0] * (1 - fx) + x[:, :, y1][:, :, :, x1] * fx
    return top * (1 - fy)[:, None] + bot * fy[:, None]


def instance_norm(x, weight, bias, eps):
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight[None, :, None, None] + bias[None, :, None, None]

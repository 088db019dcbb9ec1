"""The loss weight C of a layer from the network's geometry, not from its layer names.

Mahendran & Vedaldi give C for AlexNet and VGG-M by name: 300 up to relu3, 100 up to relu4, 20 up to relu5,
1 beyond. Read through the networks' receptive fields (``Model.receptive_fields``: size and stride per
value), that schedule is a statement about resolution stages:

* every layer finer than the last-but-one stage (stride below 16 in both nets) gets 300;
* in the last-but-one stage (stride 16: pool2 ... relu5), C falls with the receptive field's growth
  through the stage, f = (size - smallest size in the stage) / (largest - smallest): 300 while
  f <= 1/3 (pool2, conv3), 100 while f <= 2/3 (conv4), 20 beyond (conv5);
* the coarsest stage (stride 32: pool5) and every global layer (fc) get 1.

A stage is the set of non-global layers sharing one stride; the coarsest stride is the largest among
non-global layers. The rule uses sizes and strides only, so it reads any converted model (a ResNet's
res4 blocks fall in thirds of its stride-16 stage: 300, 300, 100, 100, 20, 20; res5 and the pooled
descriptor get 1). A model with a single stride (no last-but-one stage) uses the same thirds over all its
non-global layers. Without geometry (a plain callable) the name-based reading decides
(:func:`presets.mahendran_C`).
"""
PAPER_C = (300.0, 100.0, 20.0, 1.0)
_EPS = 1e-6


def _stride(entry):
    return max(entry["stride"])


def _size(entry):
    return max(entry["size"]) if entry.get("size") else None


def _spatial(rf):
    """The non-global entries with a stride and a size (the input's own entry, stride 1 size 1, included)."""
    return {k: v for k, v in rf.items() if v.get("stride") and _size(v) is not None and not v.get("global")}


def stage_C(f, schedule=PAPER_C):
    """C at fraction ``f`` of the last-but-one stage's receptive-field growth: thirds of 300, 100, 20."""
    if f <= 1 / 3 + _EPS:
        return schedule[0]
    return schedule[1] if f <= 2 / 3 + _EPS else schedule[2]


def geometry_C(layer, receptive_fields, schedule=PAPER_C):
    """C of ``layer`` from ``receptive_fields`` ({value: {"size", "stride", "global"}}); None when the
    geometry does not describe ``layer``."""
    entry = (receptive_fields or {}).get(layer)
    if not entry or not entry.get("stride"):
        return None
    if entry.get("global"):
        return schedule[3]
    spatial = {k: v for k, v in _spatial(receptive_fields).items() if _size(v) > 1}  # not the input itself
    strides = sorted({_stride(v) for v in spatial.values()})
    s = _stride(entry)
    if len(strides) > 1:
        coarsest, last_but_one = strides[-1], strides[-2]
        if s >= coarsest:
            return schedule[3]
        if s < last_but_one:
            return schedule[0]
        stage = [_size(v) for v in spatial.values() if _stride(v) == last_but_one]
    else:
        stage = [_size(v) for v in spatial.values()]
    lo, hi = min(stage), max(stage)
    f = 1.0 if hi <= lo else (_size(entry) - lo) / (hi - lo)
    return stage_C(f, schedule)


def describe(receptive_fields, layers):
    """[(layer, stride, size, C)] for ``layers``: what the rule sees and decides (for docs and reports)."""
    out = []
    for layer in layers:
        e = (receptive_fields or {}).get(layer) or {}
        out.append((layer, _stride(e) if e.get("stride") else None, _size(e) if e else None,
                    geometry_C(layer, receptive_fields)))
    return out

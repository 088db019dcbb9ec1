"""CUDA-graph capture of the network's forward and backward in the inversion step (``--cuda-graphs``).

Each step runs the same network on a batch of the same shape, so its forward and backward can be
recorded once as CUDA graphs and replayed: one launch instead of one per kernel, which is what a small
batch on a large GPU waits on. torch's ``make_graphed_callables`` does the recording (warm-up on a side
stream, capture, autograd-compatible replay); this module only adapts the features callable
(x -> {layer: tensor}) to it, keeps one graph per input shape (the last batch of a run may be smaller),
and falls back to the plain forward where capture is not possible:

- not on CUDA (the CPU has no graphs: a warning, once);
- under autocast (``--precision``), whose weight-cast cache does not survive a replay;
- when capture fails (a model that synchronises with the host in its forward, for example): a warning
  naming the error, and the run goes on without graphs.

The regularizers, the jitter and the optimiser step stay outside the graph; they are a few small
kernels against the network's hundreds.
"""
import warnings

import torch


class _Outputs(torch.nn.Module):
    """features as a module returning a tuple in a fixed order (what graph capture takes)."""

    def __init__(self, features, keys):
        super().__init__()
        self.features, self.keys = features, keys

    def forward(self, x):
        out = self.features(x)
        return tuple(out[k] for k in self.keys)


class GraphedFeatures:
    """``features`` with its forward and backward replayed from CUDA graphs, one per input shape.

    ``maker``: the capture function (default ``torch.cuda.make_graphed_callables``); the tests pass a
    stand-in, since the CPU cannot capture."""

    def __init__(self, features, maker=None):
        self.features = features
        self.maker = maker or torch.cuda.make_graphed_callables
        self.graphs = {}   # (shape, dtype, device) -> (replayable callable, output keys), or None: failed
        self.captured = 0

    def __call__(self, x):
        if not x.requires_grad or torch.is_autocast_enabled(x.device.type):
            return self.features(x)
        key = (tuple(x.shape), x.dtype, str(x.device))
        if key not in self.graphs:
            self.graphs[key] = self._capture(x)
        entry = self.graphs[key]
        if entry is None:
            return self.features(x)
        fn, keys = entry
        return dict(zip(keys, fn(x)))

    def _capture(self, x):
        try:
            with torch.no_grad():
                keys = list(self.features(x.detach()).keys())
            sample = x.detach().clone().requires_grad_(True)
            fn = self.maker(_Outputs(self.features, keys), (sample,))
        except Exception as e:  # noqa: BLE001 - any capture failure means: run without graphs
            warnings.warn(f"CUDA graph capture failed for inputs of shape {tuple(x.shape)} "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); running without graphs",
                          RuntimeWarning, stacklevel=3)
            return None
        self.captured += 1
        return fn, keys


def graphed(features, device, enabled):
    """``features`` wrapped in :class:`GraphedFeatures` when ``enabled`` and ``device`` is CUDA; otherwise
    ``features`` itself (with a warning when graphs were asked for off CUDA)."""
    if not enabled:
        return features
    if torch.device(device).type != "cuda":
        warnings.warn(f"--cuda-graphs needs a CUDA device (running on {device}); running without graphs",
                      RuntimeWarning, stacklevel=2)
        return features
    return GraphedFeatures(features)

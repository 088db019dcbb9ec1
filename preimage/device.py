"""``--device cpu|cuda|auto`` -> a torch.device, shared by every part that runs torch."""
import torch

from .errors import PreimageError


def resolve_device(device):
    """``None``/``"auto"`` -> CUDA when torch sees a GPU, else CPU; ``"cuda"`` without a GPU is a clear error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):  # torch's message lists every backend it was built with
        raise PreimageError(f"expected cpu, cuda, cuda:N or auto, got {device!r}", where="--device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PreimageError("--device cuda asked for, but torch sees no CUDA device (use --device cpu or auto)")
    return device

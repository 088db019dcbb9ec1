"""``--device cpu|cuda|auto`` -> a torch.device, shared by every part that runs torch."""
import torch

from .errors import PreimageError


def resolve_device(device):
    """``None``/``"auto"`` -> CUDA when torch sees a GPU, else CPU; ``"cuda"`` without a GPU is a clear error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PreimageError("--device cuda asked for, but torch sees no CUDA device (use --device cpu or auto)")
    return device

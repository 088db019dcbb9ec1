"""FLOPs of one forward pass (multiply-adds x 2) of a net's Conv2d and Linear layers, for the floor figures."""
import torch


def forward_flops(net, x, **forward_kwargs):
    """FLOPs per image: ``net`` runs once on ``x[:1]`` with forward hooks on its Conv2d and Linear modules."""
    total = []

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            total.append(2 * out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, torch.nn.Linear):
            total.append(2 * m.in_features * m.out_features)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            net(x[:1], **forward_kwargs)
    finally:
        for h in handles:
            h.remove()
    return sum(total)

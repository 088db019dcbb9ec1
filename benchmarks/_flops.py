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


def gemm_gflops(device="cpu", n=2048, reps=5, tries=3):
    """This machine's float32 GEMM rate (GFLOP/s) on torch's current threads: the best of ``tries`` timings
    of ``reps`` n x n products. The floor figures are taken from it, measured in the same run as the
    figures they judge (a fixed rate would make the ratio depend on which machine ran it)."""
    import time

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = 0.0
    for _ in range(tries):
        _sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()

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


def gemm_gflops(device="cpu", n=2048, reps=5, tries=3, clock=None):
    """This machine's float32 GEMM rate (GFLOP/s) on torch's current threads: the best of ``tries`` timings
    of ``reps`` n x n products. The floor figures are taken from it, measured in the same run as the
    figures they judge (a fixed rate would make the ratio depend on which machine ran it). ``clock``:
    ``time.perf_counter`` (default) or ``time.process_time`` (CPU time of this process)."""
    import time

    clock = clock or time.perf_counter
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = 0.0
    for _ in range(tries):
        _sync(device)
        t = clock()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n ** 3 * reps / max(1e-9, clock() - t) / 1e9)
    return best


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def conv_gflops(device="cpu", reps=3, tries=3, clock=None):
    """float32 rate (GFLOP/s) of a direct convolution: AlexNet conv1's forward (8 x 3 x 227 x 227, 96 filters
    of 11 x 11, stride 4; no Winograd or FFT shortcut applies, so the FLOPs counted are the FLOPs done),
    channels-last on CPU. On some CPUs (AMD's, with MKL) torch.matmul reaches only half of what oneDNN's
    convolutions reach, so a floor from the GEMM rate alone would be too lenient."""
    import time

    clock = clock or time.perf_counter
    fmt = torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format
    x = torch.randn(8, 3, 227, 227, device=device).contiguous(memory_format=fmt)
    w = torch.randn(96, 3, 11, 11, device=device)
    flops = 2 * 8 * 96 * 55 * 55 * 3 * 11 * 11
    torch.nn.functional.conv2d(x, w, stride=4)
    best = 0.0
    for _ in range(tries):
        _sync(device)
        t = clock()
        for _ in range(reps):
            torch.nn.functional.conv2d(x, w, stride=4)
        _sync(device)
        best = max(best, flops * reps / max(1e-9, clock() - t) / 1e9)
    return best


def dense_gflops(device="cpu", clock=None):
    """{"gemm": rate, "conv": rate}: the two probes of this machine's float32 dense rate (the floor uses the
    larger)."""
    return {"gemm": gemm_gflops(device, clock=clock), "conv": conv_gflops(device, clock=clock)}

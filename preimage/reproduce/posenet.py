"""The PoseNet-inversion study's hyperparameter searches (Thatte, Sitzmann & Ruban, section 5.2): first
learning rates alone (regularisers off), then learning rate and regularisation weights jointly; the
winner is compared with the posenet2016 preset (their Table 1) on the same images."""
import os

from .. import plots
from .common import img, register, table_html, write_index, write_table

SEARCH1 = ["lr=log:1e-10:1e4"]
# the paper does not give the second search's ranges; these bracket its Table 1 winner by decades
SEARCH2 = ["lr=log:1e-1:1e3", "weight.sqrt_tv=log:1e-8:1e-3", "weight.l6=log:1e-20:1e-10", "clip_percentile=lin:0:50"]
PAPER = {"search 1 (lr)": {"best relative loss": 0.08},
         "search 2 (lr + weights)": {"lr": 26.6, "weight.sqrt_tv": 4e-6, "weight.l6": 1.95e-15, "clip_percentile": 21.4}}


def _layer(ctx):
    if ctx.layers:
        return list(ctx.layers)
    from .common import model_layers

    names = model_layers(ctx.model)
    return ["conv4"] if "conv4" in names else names[len(names) // 2:len(names) // 2 + 1]


@register("posenet-search", "The PoseNet study's two random searches: learning rate alone in [1e-10, 1e4] with the "
          "regularisers off (paper: 1500 trials), then learning rate + lambda_TV + lambda_L6 + clipping percentile "
          "(paper: 2500), relative loss at conv4, against the posenet2016 preset. Sizes: --trials N1,N2. Quick: "
          "6 + 6 trials, 1 image, 5 iterations.")
def search(ctx):
    from ..invert import api
    from ..sweep import Target, parse_space, sweep_inversion

    n1, n2 = ctx.options.get("trials") or ((6, 6) if ctx.quick else (1500, 2500))
    batch = int(ctx.options.get("batch") or (6 if ctx.quick else 50))
    layers = _layer(ctx)
    iters, overrides = ctx.schedule()
    images = ctx.image_list()
    seed = ctx.options.get("seed")

    def target(extra):
        return Target("invert", ctx.model, layers, images=images, preset="posenet2016", seeds=ctx.seeds or 1,
                      iters=iters, overrides={**overrides, **extra}, device=ctx.device, score="relative_loss")

    s1 = sweep_inversion(target({"weight.l6": "0", "weight.sqrt_tv": "0"}), parse_space(SEARCH1),
                         os.path.join(ctx.out, "search1"), n_trials=n1, batch=batch, seed=seed, progress=ctx.progress)
    s2 = sweep_inversion(target({}), parse_space(SEARCH2), os.path.join(ctx.out, "search2"), n_trials=n2, batch=batch,
                         seed=None if seed is None else seed + 1, progress=ctx.progress)
    base = api.invert(ctx.model, layers, images, preset="posenet2016", seeds=ctx.seeds or 1, iters=iters,
                      overrides=overrides, device=ctx.device, progress=ctx.progress)
    preset_loss = sum(r["relative_loss"] for r in base.results) / len(base.results)
    rows = []
    for name, s in (("search 1 (lr)", s1), ("search 2 (lr + weights)", s2)):
        row = {"search": name, "trials": s.complete, "best relative loss": s.best_value, "paper best relative loss":
               PAPER["search 1 (lr)"]["best relative loss"] if name.startswith("search 1") else None}
        row.update({k: v for k, v in (s.best_params or {}).items()})
        rows.append(row)
    rows.append({"search": "posenet2016 preset (paper Table 1)", "trials": 1, "best relative loss": preset_loss,
                 **PAPER["search 2 (lr + weights)"]})
    columns = ["search", "trials", "best relative loss", "paper best relative loss", "lr", "weight.sqrt_tv",
               "weight.l6", "clip_percentile"]
    caption = (f"Relative loss ||Phi(x) - Phi(x0)|| / (||Phi(x)|| + ||Phi(x0)||) at {', '.join(layers)}, mean over "
               f"{len(images)} image(s); random sampling; the preset row is Table 1's setting run here.")
    write_table(ctx.out, "searches", columns, rows, caption)
    plot = plots.bars(os.path.join(ctx.out, "best.png"), [r["search"].split(" (")[0] for r in rows],
                      {"relative loss": [r["best relative loss"] for r in rows]}, xlabel="search",
                      ylabel="best relative loss (dimensionless)", title="best found against the preset")
    links = "".join(f'<li><a href="{d}/index.html">{d}</a>: every trial with its pictures and plots</li>'
                    for d in ("search1", "search2"))
    return write_index(ctx.out, "PoseNet inversion: hyperparameter searches", [
        ("Results", f"<p>{caption}</p>" + table_html(columns, rows) + f"<ul>{links}</ul>"),
        ("Best against the preset", img(plot, ctx.out)),
        ("Search 1: objective against lr", img(os.path.join(ctx.out, "search1", "plots", "param-lr.png"), ctx.out)),
        ("Search 2: parallel coordinates", img(os.path.join(ctx.out, "search2", "plots", "parallel.png"), ctx.out))])

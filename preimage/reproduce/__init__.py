"""One command per published table or figure: ``preimage reproduce NAME`` regenerates it on the user's
model and images with the paper's settings. Each reproduction is one registered function::

    @register("mahendran-table5", "Table 5 of Mahendran & Vedaldi (2016): ...")
    def table5(ctx): ...        # ctx: a Context; writes into ctx.out and returns the index.html path

    from preimage.reproduce import reproduce
    reproduce("mahendran-table5", model="alexnet.onnx", out="t5", quick=True)
"""
from .common import REPRODUCTIONS, Context, describe, register, reproduce
from . import mahendran, posenet, dosovitskiy  # noqa: F401  (register the reproductions)

__all__ = ["REPRODUCTIONS", "Context", "describe", "register", "reproduce"]

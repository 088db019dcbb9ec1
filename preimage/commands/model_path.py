"""The ``--model`` check shared by the commands that run a converted model.

Users often pass the file that holds the weights (``.caffemodel``) or the unconverted Torch7 file where
a converted model is expected; the loaders would read such a file as an empty ONNX graph and then say
that no layer has the requested name. This callback names the mistake and the file to pass instead.
"""
import os

from ..errors import PreimageError


def model_path(ctx, param, value):
    """click callback: refuse a weights-only or unconverted file (a missing file is the loaders' to report)."""
    if value is None:
        return value
    from ..models.representations import is_spec

    if is_spec(value):  # hog, hogb:cell=8, dsift, lbp: a representation, not a file
        return value
    stem, ext = os.path.splitext(value)
    ext = ext.lower()
    if ext == ".caffemodel":
        proto = stem + ".prototxt"
        hint = f" {os.path.basename(proto)}" if os.path.isfile(proto) else ""
        raise PreimageError(f"a .caffemodel holds only the weights: pass the deploy .prototxt{hint} (the "
                            ".caffemodel beside it is used) or the .onnx from 'preimage convert caffe'", path=value)
    if ext == ".t7":
        raise PreimageError("a Torch7 file must be converted first: preimage convert torch7 "
                            f"{os.path.basename(value)} --input-shape N,C,H,W, then pass the .onnx", path=value)
    if ext in (".pt", ".pth"):
        raise PreimageError("commands take the model as ONNX: convert the .t7 with 'preimage convert torch7 "
                            "NET.t7 --input-shape N,C,H,W' (in Python, the API also takes a torch module)", path=value)
    return value

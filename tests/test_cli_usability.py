"""Mistakes users really make get one clear line and exit status 2 (no traceback, no half-written output)."""
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cli import cli
from preimage.errors import PreimageError
from preimage.models import samples


@pytest.fixture
def tiny(tiny_posenet):
    """The shared quarter-width PoseNet folder (tests/conftest.py)."""
    return tiny_posenet


def _fails(args, *needles):
    """The command exits 2 with a one-line 'Error: ...' holding every needle, and no traceback."""
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit), r.exception  # click's usage/user error, not a crash
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, r.output
    for n in needles:
        assert n in lines[0], r.output
    return lines[0]


@pytest.mark.parametrize("cmd", [
    ["invert", "-l", "fc5"],
    ["validate", "-r", "blobs.npz"],
    ["decoder", "extract", "-l", "fc5", "-i", ".", "-o", "feats"],
])
def test_caffemodel_given_as_model_names_the_prototxt(tiny, cmd, tmp_path):
    # before: "no layer or blob named 'fc5'; available: " (an empty list): the weights file read as ONNX
    args = cmd[:1] if cmd[0] != "decoder" else cmd[:2]
    args = args + ["-m", tiny / "posenet.caffemodel"] + cmd[len(args):]
    _fails(args, "posenet.caffemodel", "holds only the weights", "posenet.prototxt")
    assert not (tmp_path / "feats").exists()


@pytest.mark.parametrize("name", ["net.t7", "net.pt"])
def test_torch7_file_given_as_model_says_convert_to_onnx(tiny, name):
    _fails(["invert", "-m", tiny / name, "-l", "fc5"], name, "preimage convert torch7")


def test_misspelt_device_is_one_line(tiny, tmp_path):
    # before: torch's RuntimeError traceback listing two dozen backends
    _fails(["invert", "-m", tiny / "posenet.onnx", "-l", "fc5", "--device", "gpu", "-o", tmp_path / "o"],
           "--device", "'gpu'")
    assert not (tmp_path / "o").exists()


def test_resolve_device_rejects_a_bad_string():
    from preimage.device import resolve_device

    with pytest.raises(PreimageError, match="expected cpu, cuda"):
        resolve_device("gpu")


@pytest.mark.parametrize("opt", [["--seeds", "0"], ["--iters", "-3"], ["--batch-size", "0"]])
def test_invert_rejects_nonsense_counts(tiny, opt, tmp_path):
    # before: --seeds 0 was a ZeroDivision-style ValueError, --iters -3 an IndexError, both tracebacks
    _fails(["invert", "-m", tiny / "posenet.onnx", "-l", "fc5", "-o", tmp_path / "o"] + opt, opt[0])
    assert not (tmp_path / "o").exists()


def test_invert_size_the_model_cannot_take(tiny, tmp_path):
    # before: "mat1 and mat2 shapes cannot be multiplied" traceback from the fc layer
    _fails(["invert", "-m", tiny / "posenet.onnx", "-l", "fc5", "--size", "33", "33", "--iters", "1", "-q",
            "-o", tmp_path / "o", samples.paths()[0]], "--size", "33x33")
    assert not (tmp_path / "o").exists()


def test_extract_size_the_model_cannot_take_writes_nothing(tiny, tmp_path):
    # before: a traceback, and an output folder holding only sources.txt
    img = tmp_path / "imgs"
    img.mkdir()
    for p in samples.paths()[:1]:
        (img / os.path.basename(p)).write_bytes(open(p, "rb").read())
    _fails(["decoder", "extract", "-m", tiny / "posenet.onnx", "-l", "fc5", "-i", img, "--size", "33", "33",
            "--device", "cpu", "-o", tmp_path / "feats"], "--size", "33x33", "61x61")
    assert not (tmp_path / "feats").exists()


def _decoder(feature_shape, size):
    from preimage.decoders.apply import Decoder

    n = int(np.prod(feature_shape))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n, 3 * size * size),
                              torch.nn.Unflatten(1, (3, size, size)))
    return Decoder(net, feature_shape, (3, size, size), {"input_size": [size, size]})


def test_apply_decoder_of_another_layer(tiny, tmp_path):
    from preimage.decoders.apply import apply_decoder

    with pytest.raises(PreimageError, match="the decoder takes 7"):
        apply_decoder(_decoder((7,), 61), samples.paths()[:1], tmp_path / "out", model=str(tiny / "posenet.onnx"),
                      layer="fc5")
    assert not (tmp_path / "out").exists()


def test_apply_decoder_of_another_models_image_size(tiny, tmp_path):
    from preimage.decoders.apply import apply_decoder

    # before: the encoder's fc layer raised a shape traceback at the decoder's 40x40 image size
    with pytest.raises(PreimageError, match="does not run on 40x40"):
        apply_decoder(_decoder((7,), 40), samples.paths()[:1], tmp_path / "out", model=str(tiny / "posenet.onnx"),
                      layer="fc5")
    assert not (tmp_path / "out").exists()


def test_validate_image_as_reference(tiny):
    # before: numpy's "contains pickled (object) data ... allow_pickle" advice
    _fails(["validate", "-m", tiny / "posenet.onnx", "-r", samples.paths()[0]], "--reference) expects arrays",
           ".jpg")


def test_caffe_file_given_to_torch7_commands(tiny):
    _fails(["inspect", tiny / "posenet.prototxt"], "posenet.prototxt", "preimage convert caffe")
    _fails(["convert", "torch7", tiny / "posenet.caffemodel", "-o", tiny / "x.pt"], "preimage convert caffe")
    assert not (tiny / "x.pt").exists()


def test_torch7_non_model_is_reported_before_asking_for_a_shape(torch7_corpus, tmp_path):
    # before: "ONNX export needs --input-shape" for a file that holds no nn module at all
    line = _fails(["convert", "torch7", torch7_corpus / "real" / "function.t7", "-o", tmp_path / "f.onnx"],
                  "function.t7", "expected an nn module")
    assert "--input-shape" not in line
    assert not (tmp_path / "f.onnx").exists()


@pytest.mark.parametrize("args, needle", [
    (["--device", "gpu"], "--device"),
    (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "gpu"], "--device"),
    (["NOTHERE.jpg"], "NOTHERE.jpg"),
    (["--seeds", "0"], "--seeds"),
])
def test_demo_checks_its_arguments_before_working(args, needle, tmp_path):
    # before: the device and the images were looked at only after models were written and validated
    _fails(["demo", "--quick", "-q", "-o", tmp_path / "d"] + args, needle)
    assert not (tmp_path / "d").exists()


def test_convert_group_help_has_examples():
    r = CliRunner().invoke(cli, ["convert", "--help"])
    assert r.exit_code == 0 and "preimage convert caffe" in r.output and "preimage convert torch7" in r.output


def test_maximize_prints_what_each_unit_reached(tiny, tmp_path):
    r = CliRunner().invoke(cli, ["maximize", "-m", str(tiny / "posenet.onnx"), "-l", "fc5", "-u", "3", "-u", "4",
                                 "--iters", "1", "--set", "fine_iters=0", "-q", "-o", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "fc5 unit 3 seed 0: activation" in r.output and "fc5 unit 4 seed 0: activation" in r.output


def test_outputs_are_readable_by_others_as_the_umask_says(tmp_path):
    # before: every output (ONNX, checkpoints, PNGs, reports) kept mkstemp's private 0600 mode
    from preimage.fileio import write_bytes_atomic

    umask = os.umask(0o022)
    os.umask(umask)
    write_bytes_atomic(tmp_path / "out.bin", b"x")
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o666 & ~umask


def test_unwritable_output_is_one_line(tiny, tmp_path):
    # before: FileNotFoundError/NotADirectoryError tracebacks naming a hidden '.x.onnx.XXXX.part' file
    blocker = tmp_path / "afile"
    blocker.write_text("")
    _fails(["convert", "caffe", tiny / "posenet.prototxt", "-o", blocker / "x.onnx"], "afile", "folder is needed")
    assert ".part" not in CliRunner().invoke(cli, ["convert", "caffe", str(tiny / "posenet.prototxt"), "-o",
                                                   str(blocker / "x.onnx")]).output


def test_invert_checks_its_output_folder_before_optimising(tiny, tmp_path):
    # before: the whole optimisation ran, then writing the results failed with a traceback
    blocker = tmp_path / "afile"
    blocker.write_text("")
    _fails(["invert", "-m", tiny / "posenet.onnx", "-l", "fc5", "--iters", "1", "-q", "-o", blocker / "inv"],
           "--out", "afile")


def test_validate_hints_at_keys_when_the_reference_is_layer_keyed(caffe_corpus, tmp_path):
    # the corpus' layers.npz validated with the default --keys blobs: relu* names match nothing
    d = caffe_corpus / "u_norm_act"
    r = CliRunner().invoke(cli, ["validate", "-m", str(d / "net.prototxt"), "-r", str(d / "layers.npz")])
    assert r.exit_code == 1
    assert "pass --keys layers" in r.output
    r = CliRunner().invoke(cli, ["validate", "-m", str(d / "net.prototxt"), "-r", str(d / "layers.npz"),
                                 "--keys", "layers"])
    assert r.exit_code == 0, r.output
    assert "hint" not in r.output


def test_input_shape_typo_is_not_silently_dropped(tiny, tmp_path):
    # before: "1,3,x" became the shape (1, 3) (the x, read as a separator, left an empty part that was skipped)
    r = CliRunner().invoke(cli, ["convert", "caffe", str(tiny / "posenet.prototxt"), "--input-shape", "data=1,3,x",
                                 "-o", str(tmp_path / "q.onnx")])
    assert r.exit_code == 2 and "data=1,3,x" in r.output and not (tmp_path / "q.onnx").exists()
    from preimage.commands.options import shape_callback as _shape

    with pytest.raises(Exception, match="1,3,x"):
        _shape(None, None, "1,3,x")
    assert _shape(None, None, "1x3x8x8") == (1, 3, 8, 8) and _shape(None, None, " 2, 5") == (2, 5)


def test_torch7_output_type_is_checked_before_reading(tmp_path):
    bogus = tmp_path / "net.t7"
    bogus.write_bytes(b"\xff\xff")  # never read: the output type is wrong first
    _fails(["convert", "torch7", bogus, "-o", tmp_path / "net.txt"], "net.txt", "use .onnx or .pt")


def test_invert_warns_about_a_model_from_elsewhere(tiny, tmp_path):
    # an ONNX not written by preimage has no preprocessing metadata: say what the images were fed as
    import onnx

    m = onnx.load(str(tiny / "posenet.onnx"))
    del m.metadata_props[:]
    onnx.save(m, str(tmp_path / "foreign.onnx"))
    args = ["-l", "fc5", "--iters", "1", "--set", "fine_iters=0", "-q", samples.paths()[0]]
    r = CliRunner().invoke(cli, ["invert", "-m", str(tmp_path / "foreign.onnx"), "-o", str(tmp_path / "a")] + args)
    assert r.exit_code == 0, r.output
    assert "not converted by preimage" in r.output and "preprocess=" in r.output
    r = CliRunner().invoke(cli, ["invert", "-m", str(tiny / "posenet.onnx"), "-o", str(tmp_path / "b")] + args)
    assert r.exit_code == 0 and "warning" not in r.output


def test_layers_header_shows_the_free_batch_as_the_rows_do(tiny):
    # before: "inputs: data 1x3x61x61" above rows reading "Nx...", as if the model took one image only
    r = CliRunner().invoke(cli, ["layers", str(tiny / "posenet.onnx")])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "inputs: data Nx3x61x61"


@pytest.mark.parametrize("opt", [["--batch", "0"], ["--iters", "-1"], ["--lr", "0"], ["--val-every", "0"]])
def test_decoder_train_rejects_nonsense_numbers(opt, tmp_path):
    # before: --batch 0 crashed with a traceback after creating the run folder; --iters -1 "finished" at 0
    (tmp_path / "feats").mkdir()
    _fails(["decoder", "train", tmp_path / "feats", "-o", tmp_path / "run"] + opt, opt[0])
    assert not (tmp_path / "run").exists()


def test_decoder_extract_rejects_a_zero_batch(tiny, tmp_path):
    _fails(["decoder", "extract", "-m", tiny / "posenet.onnx", "-l", "fc5", "-i", tmp_path, "-o", tmp_path / "f",
            "--batch", "0"], "--batch")


def test_api_accepts_one_image_path_as_a_string(tiny, tmp_path):
    # before: a notebook's api.invert(model, "fc5", "cat.jpg") read "c", "a", "t", ... as image paths
    from preimage.decoders.apply import apply_decoder
    from preimage.invert import api

    img = samples.paths()[0]
    run = api.invert(str(tiny / "posenet.onnx"), "fc5", img, iters=1, overrides={"fine_iters": 0}, progress=False)
    assert run.images == [os.path.splitext(os.path.basename(img))[0]]
    r = apply_decoder(_decoder((125,), 61), img, tmp_path / "out",  # fc5 of the quarter-width PoseNet: 125
                      model=str(tiny / "posenet.onnx"), layer="fc5")
    assert r["labels"] == [os.path.basename(img)]


def test_validate_with_another_models_input_is_one_line(tiny, tmp_path):
    # before: "mat1 and mat2 shapes cannot be multiplied" traceback from the fc layer
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 33, 33), np.float32))
    np.savez(tmp_path / "ref.npz", fc5=np.zeros((1, 125), np.float32))
    line = _fails(["validate", "-m", tiny / "posenet.onnx", "-r", tmp_path / "ref.npz", "--input", tmp_path / "x.npy"],
                  "x.npy", "does not run on this input")
    assert "hint" not in line


@pytest.mark.parametrize("setting, needle", [("weight.tv=abc", "expected a number"),
                                             ("jitter=maybe", "expected true or false"),
                                             ("iters=1.5", "expected an integer"),
                                             ("T=two", "expected an integer")])
def test_set_values_are_checked(setting, needle):
    # before: weight.tv=abc was a ValueError traceback; jitter=maybe silently meant false
    from preimage.invert.presets import Config, coerce

    key, text = setting.split("=")
    with pytest.raises(PreimageError, match=needle):
        coerce(Config(), key, text)
    assert coerce(Config(), "jitter", "off").jitter is False and coerce(Config(), "weight.tv", "0.5").weights["tv"] == 0.5


def test_layers_shows_a_free_spatial_size_as_question_mark():
    # before: "Nx3xNxN", as if height and width were the batch
    from preimage.commands.layers import _fmt_shape

    assert _fmt_shape([None, 3, None, None]) == "Nx3x?x?" and _fmt_shape([1, 500]) == "1x500"


def test_validate_folder_holding_npz_points_to_the_file(tiny, tmp_path):
    # before: "none of the reference's 1 names match the model: input" (only input.npy was read)
    np.savez(tmp_path / "blobs.npz", fc5=np.zeros((1, 125), np.float32))
    np.save(tmp_path / "input.npy", np.zeros((1, 3, 61, 61), np.float32))
    _fails(["validate", "-m", tiny / "posenet.onnx", "-r", tmp_path], "blobs.npz", "pass the file")


def test_every_option_of_validate_and_invert_says_what_it_does():
    for cmd in (["validate"], ["invert"], ["convert", "caffe"], ["decoder", "extract"]):
        r = CliRunner().invoke(cli, cmd + ["--help"])
        assert r.exit_code == 0 and "Example" in r.output, cmd
    r = CliRunner().invoke(cli, ["validate", "--help"])
    assert "What runs the model" in r.output and "Where torch runs" in r.output


def test_decoder_apply_says_1_image(monkeypatch, tmp_path):
    import preimage.decoders.apply as A

    monkeypatch.setattr(A, "load_decoder", lambda *a, **k: None)
    monkeypatch.setattr(A, "apply_decoder", lambda *a, **k: {"files": ["x.png"], "grid": "g.png"})
    img = samples.paths()[0]
    dec = tmp_path / "c.pt"
    dec.write_bytes(b"")
    r = CliRunner().invoke(cli, ["decoder", "apply", "-d", str(dec), img, "-o", str(tmp_path / "o"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("1 image -> ")


def _random_store(path, seed):
    from preimage.decoders.extract import write_store

    rng = np.random.default_rng(seed)
    write_store(path, rng.standard_normal((4, 32)).astype(np.float32), rng.integers(0, 255, (4, 3, 32, 32), np.uint8),
                layer="fc", split=(1, 0, 0))
    return path


def test_decoder_train_refuses_a_run_trained_on_another_store(tmp_path):
    # before: the run folder was silently resumed on the other store's features
    a, b = _random_store(tmp_path / "a", 0), _random_store(tmp_path / "b", 1)
    common = ["decoder", "train", "--batch", "2", "--iters", "2", "--no-tensorboard", "--device", "cpu",
              "--arch", "alexnet_fc8", "--width", "0.1", "-o", tmp_path / "run"]
    r = CliRunner().invoke(cli, [str(x) for x in ["decoder", "train", a] + common[2:]])
    assert r.exit_code == 0, r.output
    line = _fails(["decoder", "train", b] + common[2:] + ["--iters", "3"], "feature store",
                  os.path.abspath(a), os.path.abspath(b), "--other-store")
    assert "run" in line
    r = CliRunner().invoke(cli, [str(x) for x in ["decoder", "train", b] + common[2:] + ["--iters", "3", "--other-store"]])
    assert r.exit_code == 0 and "iteration 3" in r.output, r.output


def test_decoder_apply_refuses_a_value_for_binarize(tmp_path):
    # before: -e binarize=3 decoded as plain binarize, the 3 silently ignored
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"x")  # refused before the decoder is read
    _fails(["decoder", "apply", "-d", ckpt, "-e", "binarize=3", "-o", tmp_path / "out"], "binarize", "takes no value")
    assert not (tmp_path / "out").exists()


def test_layers_shows_a_global_pool_of_a_free_size_input_as_global(tmp_path):
    # before: the global average pool showed the conv's "3 / 1"
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    path = tmp_path / "gap.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}})
    r = CliRunner().invoke(cli, ["layers", str(path)])
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line for line in r.output.splitlines() if line.startswith("/")}
    assert rows["/0/Conv"].rstrip().endswith("3 / 1")
    for name in ("/2/GlobalAveragePool", "/3/Flatten", "/4/Gemm"):
        assert rows[name].rstrip().endswith("global / 1"), r.output


def test_non_onnx_file_named_onnx_is_refused_by_layers_and_invert(tiny, tmp_path):
    # before: a caffemodel renamed .onnx parsed as an empty graph ("no layer or blob named 'fc5'; available: ")
    fake = tmp_path / "weights.onnx"
    fake.write_bytes((tiny / "posenet.caffemodel").read_bytes())
    _fails(["layers", fake], "weights.onnx", "not an ONNX model")
    _fails(["invert", "-m", fake, "-l", "fc5", "-o", tmp_path / "out"], "weights.onnx", "not an ONNX model")


def test_invert_takes_a_node_name_of_a_foreign_model(tmp_path):
    # before: only the value name '/0/Conv_output_0' worked, though 'preimage layers' lists '/0/Conv'
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    path = tmp_path / "foreign.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), dynamo=False)
    r = CliRunner().invoke(cli, ["invert", "-m", str(path), "-l", "/0/Conv", "--iters", "1", "--set", "fine_iters=0",
                                 "--device", "cpu", "-o", str(tmp_path / "out"), samples.paths()[0]])
    assert r.exit_code == 0, r.output
    assert "/0/Conv" in r.output and (tmp_path / "out" / "index.html").exists()

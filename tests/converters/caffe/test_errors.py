"""Bad input gets a one-line PreimageError naming the file and the place, and never a partial output."""
import os

import pytest
from click.testing import CliRunner

from preimage.cli import cli
from preimage.converters.caffe import convert_caffe
from preimage.converters.caffe.writer import write_caffemodel
from preimage.errors import PreimageError

NET = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 5 } }
"""


@pytest.fixture
def tiny(tmp_path):
    proto = tmp_path / "tiny.prototxt"
    proto.write_text(NET)
    model = tmp_path / "tiny.caffemodel"
    write_caffemodel(model, proto, seed=1)
    return proto, model


def one_line_error(excinfo, *parts):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


def test_syntax_error_has_line_and_column(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text(NET.replace('convolution_param { num_output: 4', 'convolution_param { num_outptu: 4'))
    with pytest.raises(PreimageError) as e:
        convert_caffe(bad, random_weights=True)
    one_line_error(e, str(bad) + ":4:23:", "num_outptu")


def test_unbalanced_brace_reported_with_place(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text(NET + "layer { name: \"x\" type: \"ReLU\"\n")
    with pytest.raises(PreimageError) as e:
        convert_caffe(bad, random_weights=True)
    one_line_error(e, str(bad) + ":")


def test_unknown_layer_type_names_layer_type_and_supported(tmp_path):
    bad = tmp_path / "u.prototxt"
    bad.write_text(NET + 'layer { name: "odd" type: "FancyNorm" bottom: "fc" top: "odd" }\n')
    with pytest.raises(PreimageError) as e:  # without strict the layer is left out (test_tolerant.py)
        convert_caffe(bad, random_weights=True, strict=True)
    one_line_error(e, str(bad), "layer 'odd'", "FancyNorm", "supported:", "Convolution", "LRN")


def test_bottom_nothing_produces(tmp_path):
    bad = tmp_path / "b.prototxt"
    bad.write_text(NET + 'layer { name: "r" type: "ReLU" bottom: "nowhere" top: "r" }\n')
    with pytest.raises(PreimageError) as e:
        convert_caffe(bad, random_weights=True)
    one_line_error(e, str(bad), "layer 'r'", "'nowhere'")


def test_missing_weights_for_a_layer(tiny, tmp_path):
    proto, _ = tiny
    other = tmp_path / "other.prototxt"
    other.write_text(NET.replace('"fc"', '"fc_new"'))
    with pytest.raises(PreimageError) as e:
        convert_caffe(other, tiny[1])
    one_line_error(e, str(other), "layer 'fc_new'", "no weights", "tiny.caffemodel", "[5, 144]")


def test_wrong_weight_shape_expected_vs_found(tiny, tmp_path):
    proto, model = tiny
    wider = tmp_path / "wider.prototxt"
    wider.write_text(NET.replace("num_output: 4", "num_output: 6"))
    with pytest.raises(PreimageError) as e:
        convert_caffe(wider, model)
    one_line_error(e, str(wider), "layer 'conv1'", "expected [6, 3, 3, 3]", "found [4, 3, 3, 3]")


def test_truncated_caffemodel(tiny, tmp_path):
    proto, model = tiny
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(model.read_bytes()[:-37])
    with pytest.raises(PreimageError) as e:
        convert_caffe(proto, cut)
    one_line_error(e, str(cut), "truncated")


@pytest.mark.parametrize("content", [b"name: \"not binary\"\nlayer {}\n", bytes(range(256)) * 4, b""])
def test_not_a_caffemodel(tiny, tmp_path, content):
    proto, _ = tiny
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(content)
    with pytest.raises(PreimageError) as e:
        convert_caffe(proto, junk)
    one_line_error(e, str(junk))


def test_huge_input_refused_before_allocating(tmp_path):
    huge = tmp_path / "huge.prototxt"
    huge.write_text(NET.replace("dim: 8 dim: 8", "dim: 200000 dim: 200000"))
    with pytest.raises(PreimageError) as e:
        convert_caffe(huge, random_weights=True)  # random weights would have to be allocated
    one_line_error(e, str(huge), "'data'", "GiB")


def test_huge_weights_refused_before_allocating(tmp_path):
    huge = tmp_path / "huge.prototxt"
    huge.write_text(NET.replace("num_output: 5", "num_output: 4000000000"))
    with pytest.raises(PreimageError) as e:
        convert_caffe(huge, random_weights=True)
    one_line_error(e, str(huge), "layer 'fc'", "GiB")


def test_no_caffemodel_beside_prototxt(tmp_path):
    proto = tmp_path / "lonely.prototxt"
    proto.write_text(NET)
    with pytest.raises(PreimageError) as e:
        convert_caffe(proto)
    one_line_error(e, str(proto), "lonely.caffemodel", "--random-weights")


def test_cli_errors_are_one_line_and_leave_no_output(tiny, tmp_path):
    proto, model = tiny
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(model.read_bytes()[: len(model.read_bytes()) // 2])
    out = tmp_path / "out.onnx"
    r = CliRunner().invoke(cli, ["convert", "caffe", str(proto), "--weights", str(cut), "-o", str(out)])
    assert r.exit_code == 2, r.output
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "truncated" in lines[0] and "Traceback" not in r.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.onnx")] == []


def test_cli_failure_keeps_an_existing_output_intact(tiny, tmp_path):
    proto, model = tiny
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous result")
    bad = tmp_path / "bad.prototxt"
    bad.write_text(NET.replace("num_output: 4", "num_output: 6"))
    r = CliRunner().invoke(cli, ["convert", "caffe", str(bad), "--weights", str(model), "-o", str(out)])
    assert r.exit_code == 2 and "expected [6, 3, 3, 3]" in r.output
    assert out.read_bytes() == b"previous result"
    assert sorted(os.listdir(tmp_path)) == sorted(["bad.prototxt", "out.onnx", "tiny.caffemodel", "tiny.prototxt"])


def test_cli_missing_caffemodel_says_so(tmp_path):
    proto = tmp_path / "net.prototxt"
    proto.write_text(NET)
    r = CliRunner().invoke(cli, ["convert", "caffe", str(proto)])
    assert r.exit_code == 2 and "net.caffemodel not found" in r.output
    assert not (tmp_path / "net.onnx").exists()


def test_caffemodel_rewritten_in_place_between_conversions(tiny, tmp_path):
    """The caffemodel is memory-mapped while converting; a file rewritten in place afterwards (good or
    truncated, possibly right after a failed conversion) must not upset the next conversion."""
    proto, model = tiny
    good = model.read_bytes()
    path = tmp_path / "same.caffemodel"
    for i in range(12):
        with open(path, "wb") as f:  # in place: same inode, truncated first
            f.write(good if i % 2 == 0 else good[: len(good) * i // 13])
        if i % 2 == 0:
            assert len(convert_caffe(proto, path).graph.initializer)
        else:
            with pytest.raises(PreimageError):
                convert_caffe(proto, path)


def test_blob_count_must_match_like_caffe(tiny, tmp_path):
    proto, model = tiny
    nobias = tmp_path / "nobias.prototxt"
    nobias.write_text(NET.replace("num_output: 4 kernel_size: 3", "num_output: 4 kernel_size: 3 bias_term: false"))
    with pytest.raises(PreimageError) as e:
        convert_caffe(nobias, model)
    one_line_error(e, str(nobias), "layer 'conv1'", "holds 2 blob(s)", "has 1")


def test_caffemodel_passed_as_prototxt(tiny):
    proto, model = tiny
    with pytest.raises(PreimageError) as e:
        convert_caffe(model, model)
    one_line_error(e, str(model), "binary")


def test_bom_crlf_and_latin1_comments_are_read(tmp_path):
    p = tmp_path / "old.prototxt"
    p.write_bytes(b"\xef\xbb\xbf# Gr\xfc\xdfe\r\n" + NET.replace("\n", "\r\n").encode())
    assert convert_caffe(p, random_weights=True).graph.node

"""Every command declares --device, --model and --size through preimage/commands/options.py."""
import click
import pytest
from click.testing import CliRunner

from preimage.cli import cli
from preimage.commands import options


def _commands(group=cli, ctx=None, prefix=()):
    ctx = ctx or click.Context(cli)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, ctx, prefix + (name,))
        else:
            yield " ".join(prefix + (name,)), cmd


def _param(cmd, name):
    return next((p for p in cmd.params if p.name == name), None)


def test_shared_options_are_declared_once():
    seen = {"device": 0, "model": 0, "size": 0}
    for name, cmd in _commands():
        device, model, size = _param(cmd, "device"), _param(cmd, "model"), _param(cmd, "size")
        if device is not None:
            seen["device"] += 1
            assert isinstance(device.type, options.DeviceType), name
        if isinstance(model, click.Option):  # 'layers' and the torch7 commands take MODEL as an argument
            seen["model"] += 1
            assert model.callback is options.model_path and model.opts == ["--model", "-m"], name
        if size is not None:
            seen["size"] += 1
            assert size.nargs == 2 and size.metavar == "H W", name
    # invert x3, demo, validate, decoder x3; sweep invert/maximize/caricature/decoder, reproduce
    assert seen == {"device": 14, "model": 13, "size": 8}, seen


@pytest.mark.parametrize("text, shape", [("1,3,224,224", (1, 3, 224, 224)), ("1x3x8x8", (1, 3, 8, 8)),
                                         (" 4096", (4096,))])
def test_one_shape_parser(text, shape):
    assert options.parse_shape(text) == shape


@pytest.mark.parametrize("text", ["1,3,x", "", "1,0,2", "-1,3"])
def test_shape_parser_refuses_what_is_not_a_shape(text):
    with pytest.raises(click.BadParameter, match="expected"):
        options.parse_shape(text)


def test_feature_shape_uses_the_shared_parser(tmp_path):
    dec = tmp_path / "d.pt"
    dec.write_bytes(b"")
    r = CliRunner().invoke(cli, ["decoder", "apply", "-d", str(dec), "--feature-shape", "256,6,x", "-o",
                                 str(tmp_path / "o"), "--device", "cpu"])
    assert r.exit_code == 2 and "--feature-shape" in r.output and "256,6,x" in r.output, r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cmd", [["validate", "-m", "m.onnx", "-r", "r.npz"], ["decoder", "extract", "-m", "m.onnx",
                                 "-l", "fc8", "-i", ".", "-o", "feats"], ["invert", "-m", "m.onnx", "-l", "fc8"]])
def test_device_is_checked_the_same_way_everywhere(cmd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, cmd + ["--device", "gpu"])
    assert r.exit_code == 2 and "Invalid value for '--device'" in r.output and "'gpu'" in r.output, r.output

from click.testing import CliRunner

from preimage.cli import cli


def test_help_lists_every_command():
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    for name in ("convert", "layers", "validate", "invert", "maximize", "caricature", "demo", "decoder", "inspect"):
        assert name in r.output


def test_unknown_command_is_a_usage_error():
    r = CliRunner().invoke(cli, ["no-such-command"])
    assert r.exit_code == 2

"""The folders the commands write by default into the current folder are ignored by git (issue 12)."""
import shutil
import subprocess
from pathlib import Path

import pytest

from preimage.commands.decoder import decoder
from preimage.commands.demo import demo

ROOT = Path(__file__).resolve().parents[1]


def _default(command, option):
    return next(p.default for p in command.params if p.name == option)


def test_default_output_folders_are_ignored():
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(ROOT), "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout (or no git): nothing to ignore")
    apply = decoder.commands["apply"]
    folders = [_default(demo, "out"), _default(apply, "output"), "invert-alexnet", "maximize-posenet",
               "caricature-alexnet"]  # invert/maximize/caricature: KIND-MODEL (commands/invert.py)
    paths = [f"{f}/index.html" for f in folders]
    r = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *paths], capture_output=True, text=True)
    assert sorted(r.stdout.split()) == sorted(paths), r.stdout + r.stderr
    kept = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", "preimage/commands/invert.py"],
                          capture_output=True, text=True)
    assert kept.stdout == ""

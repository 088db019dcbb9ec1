"""Atomic writes: a write that fails leaves nothing, and the temporaries a killed writer leaves behind
(kill -9 runs no cleanup) are removed once their target is written again or dropped."""
import os

import pytest

from preimage.fileio import atomic_path, remove_stale_temporaries
from preimage.invert.engine import Checkpoint


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_stale_temporaries_of_one_target_are_removed(tmp_path):
    target = tmp_path / "a.pt"
    orphan = tmp_path / ".a.pt.kk9mevxl.part"  # what atomic_path names a temporary
    other = tmp_path / ".b.pt.x1.part"         # another target's: kept
    for p in (orphan, other):
        p.write_bytes(b"half-written")
    remove_stale_temporaries(target)
    assert sorted(os.listdir(tmp_path)) == [".b.pt.x1.part"]


def test_a_finished_checkpoint_takes_a_killed_writers_temporary_with_it(tmp_path):
    ck = Checkpoint(str(tmp_path / "checkpoints" / "h.pt"), every=5)
    ck.save({"step": 5})
    (tmp_path / "checkpoints" / ".h.pt.abc123.part").write_bytes(b"killed mid-write")
    assert ck.load() == {"step": 5}
    ck.remove()
    assert os.listdir(tmp_path / "checkpoints") == []

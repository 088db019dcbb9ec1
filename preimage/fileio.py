"""Writing outputs safely: never leave a half-written file behind."""
import contextlib
import hashlib
import os
import tempfile

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, at import: mkstemp's files are 0600, outputs should get the usual 0666 & ~umask


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Use it for anything a user will read (ONNX models, checkpoints, images, reports)::

        with atomic_path(out) as tmp:
            onnx.save(model, tmp)
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix or ".part", dir=folder)
    os.close(fd)
    try:
        yield tmp
        if os.path.isfile(tmp):
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(path):
    """Remove the temporaries :func:`atomic_path` left beside ``path`` when a writer was killed (kill -9
    cannot run its cleanup). Call it only where no other process may be writing ``path`` at the time."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    prefix = "." + name + "."
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(folder):
            if entry.startswith(prefix) and entry.endswith(".part"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, entry))


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text_atomic(path, text):
    write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path):
    """Hex sha256 of a file, read in 4 MiB chunks (for the ``preimage.source`` metadata)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()

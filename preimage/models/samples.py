"""The sample photographs bundled with preimage (public domain / CC0, see samples/ATTRIBUTION.txt).

    >>> from preimage.models import samples
    >>> samples.names()
    ['astronaut', 'chelsea', 'coffee']
    >>> samples.paths()          # absolute file paths, sorted by name
"""
import os

from ..errors import PreimageError

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")
SUFFIXES = (".jpg", ".jpeg", ".png")


def names():
    """Names (file stems) of the bundled sample photographs, sorted."""
    return [os.path.splitext(f)[0] for f in _files()]


def paths(which=None):
    """Absolute paths of the bundled photographs; ``which`` selects some by name."""
    files = {os.path.splitext(f)[0]: os.path.join(FOLDER, f) for f in _files()}
    if which is None:
        return [files[k] for k in sorted(files)]
    missing = [w for w in which if w not in files]
    if missing:
        raise PreimageError(f"no bundled sample named {missing[0]!r}; available: {', '.join(sorted(files))}")
    return [files[w] for w in which]


def _files():
    if not os.path.isdir(FOLDER):
        return []
    return sorted(f for f in os.listdir(FOLDER) if f.lower().endswith(SUFFIXES))

"""Low-level readers for Torch7's two file modes, with every count checked against what is left.

Torch7's ``DiskFile`` writes numbers either as native little-endian binary (int 4 bytes, long 8 or 4,
double 8, ...) or, in ASCII mode, as decimal text: the elements of one write separated by spaces and
followed by a newline. Chars and bytes are raw in both modes. A reader of ASCII skips white space
before each number and eats one newline after each write ("auto-spacing").
"""
import re
import struct

import numpy as np

from ...errors import FormatError

_TOKEN = re.compile(rb"\S+")


class _Stream:
    def __init__(self, data, path, long_size):
        self.data = data
        self.path = path
        self.long_size = long_size
        self.pos = 0
        self.size = len(data)

    @property
    def remaining(self):
        return self.size - self.pos

    def fail(self, message, pos=None):
        raise FormatError(message, path=self.path, where=self.where(self.pos if pos is None else pos))

    def check_count(self, n, unit, what):
        """Refuse a count that cannot fit in the rest of the file (before allocating anything)."""
        if n < 0:
            self.fail(f"negative {what} ({n})")
        if n * unit > self.remaining:
            self.fail(f"{what} of {n} needs at least {n * unit} bytes but only {self.remaining} are left "
                      f"(truncated or damaged file, or wrong long size)")


class BinaryStream(_Stream):
    """Binary mode over a bytes-like buffer (an mmap for big files: arrays are views, not copies)."""

    binary = True
    min_number_bytes = 4

    def __init__(self, data, path=None, long_size=8):
        super().__init__(data, path, long_size)
        self._long = struct.Struct("<q" if long_size == 8 else "<i")

    def where(self, pos):
        return f"byte {pos}"

    def _take(self, n, what):
        if n > self.remaining:
            self.fail(f"file ends inside {what}: needs {n} bytes, {self.remaining} left (truncated file?)")
        p = self.pos
        self.pos += n
        return p

    def read_int(self, what="int"):
        return struct.unpack_from("<i", self.data, self._take(4, what))[0]

    def read_long(self, what="long"):
        return self._long.unpack_from(self.data, self._take(self.long_size, what))[0]

    def read_longs(self, n, what="longs"):
        self.check_count(n, self.long_size, what)
        p = self._take(n * self.long_size, what)
        return list(struct.unpack_from(f"<{n}{self._long.format[1]}", self.data, p))

    def read_double(self, what="number"):
        return struct.unpack_from("<d", self.data, self._take(8, what))[0]

    def read_chars(self, n, what="string"):
        self.check_count(n, 1, what)
        p = self._take(n, what)
        return bytes(self.data[p:p + n])

    def read_array(self, code, n, what="storage"):
        dtype = np.dtype("<i8" if code == "long" and self.long_size == 8 else "<i4" if code == "long" else "<" + code)
        self.check_count(n, dtype.itemsize, what)
        p = self._take(n * dtype.itemsize, what)
        arr = np.frombuffer(self.data, dtype=dtype, count=n, offset=p)  # a view: no copy of big storages
        if code == "long" and self.long_size == 4:
            arr = arr.astype(np.int64)
        return arr


class AsciiStream(_Stream):
    """ASCII mode (``torch.save(f, obj, 'ascii')``): decimal numbers, raw chars, newline auto-spacing."""

    binary = False
    min_number_bytes = 2  # a digit and a separator

    def where(self, pos):
        line = self.data.count(b"\n", 0, pos) + 1
        col = pos - (self.data.rfind(b"\n", 0, pos) + 1) + 1
        return f"{line}:{col}"

    def _eat_newline(self):
        if self.pos < self.size and self.data[self.pos:self.pos + 1] == b"\n":
            self.pos += 1

    def _tokens(self, n, what):
        if n < 0:
            self.fail(f"negative count of {what} ({n})")
        if n > self.remaining:
            self.fail(f"file ends inside {what}: expected {n} numbers but only {self.remaining} bytes are left "
                      "(truncated file?)")
        if n > 16:  # fast path: Torch7 writes the n numbers of one write on one line
            end = self.data.find(b"\n", self.pos)
            if end >= 0:
                line = self.data[self.pos:end]
                toks = line.split()
                if len(toks) == n:
                    self.pos = end + 1
                    return [(t, self.pos) for t in toks]
        out = []
        pos = self.pos
        for _ in range(n):
            m = _TOKEN.search(self.data, pos)
            if m is None:
                self.fail(f"file ends inside {what}: expected {n} numbers, found {len(out)} (truncated file?)", pos)
            out.append((m.group(), m.start()))
            pos = m.end()
        self.pos = pos
        if n:
            self._eat_newline()
        return out

    def _int(self, tok, start, what):
        try:
            return int(tok)
        except ValueError:
            self.fail(f"expected an integer ({what}), found {tok[:20]!r}", start)

    def read_int(self, what="int"):
        (tok, start), = self._tokens(1, what)
        v = self._int(tok, start, what)
        if not -2**31 <= v < 2**31:
            self.fail(f"{what} {v} does not fit in a 32-bit int", start)
        return v

    def read_long(self, what="long"):
        return self.read_longs(1, what)[0]

    def read_longs(self, n, what="longs"):
        out = []
        lim = 2 ** (8 * self.long_size - 1)
        for tok, start in self._tokens(n, what):
            v = self._int(tok, start, what)
            if not -lim <= v < lim:
                self.fail(f"{what} {v} does not fit in a {self.long_size}-byte long", start)
            out.append(v)
        return out

    def read_double(self, what="number"):
        (tok, start), = self._tokens(1, what)
        try:
            return float(tok)
        except ValueError:
            self.fail(f"expected a number ({what}), found {tok[:20]!r}", start)

    def read_chars(self, n, what="string"):
        self.check_count(n, 1, what)
        p = self.pos
        self.pos += n
        if n:
            self._eat_newline()
        return bytes(self.data[p:p + n])

    def read_array(self, code, n, what="storage"):
        if code in ("u1", "i1"):  # bytes and chars are raw in ASCII mode too
            return np.frombuffer(self.read_chars(n, what), dtype=code).copy()
        toks = self._tokens(n, what)
        if code in ("f2", "f4", "f8"):
            try:
                vals = [float(t) for t, _ in toks]
            except ValueError:
                bad = next((t, s) for t, s in toks if not _is_float(t))
                self.fail(f"expected a number in {what}, found {bad[0][:20]!r}", bad[1])
            with np.errstate(over="ignore"):  # 1e308 in a FloatStorage is inf, as in Torch7
                return np.array(vals, dtype=np.float64).astype(code)
        vals = [self._int(t, s, what) for t, s in toks]
        dtype = np.dtype("i8" if code == "long" else code)
        info = np.iinfo(dtype)
        if vals and (min(vals) < info.min or max(vals) > info.max):
            self.fail(f"a value in {what} does not fit in {dtype}")
        return np.array(vals, dtype=dtype)


def _is_float(t):
    try:
        float(t)
        return True
    except ValueError:
        return False

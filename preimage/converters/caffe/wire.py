"""Protobuf wire-format encoding, the two pieces preimage writes by hand (see writer.py, onnxfile.py):
base-128 varints and field keys. Decoding lives in caffemodel.py."""

VARINT, I64, LEN, I32 = 0, 1, 2, 5


def varint(n):
    """Unsigned base-128 varint."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint((field << 3) | wire)


def len_prefix(field, n):
    """Key and length of a length-delimited field of ``n`` bytes."""
    return key(field, LEN) + varint(n)

"""A small scanner over prototxt text: where top-level blocks (``layer { ... }``) start and end, and the
extent of one field (name, ``:``, value or ``{ ... }``), so that a field no schema knows can be cut out
of the text (replaced by spaces, line numbers kept) and the file parsed again.

Only what protobuf's text format allows is handled: ``#`` comments, single- or double-quoted strings
with backslash escapes, nested ``{}`` / ``<>`` messages, ``[a, b]`` lists, and ``,`` / ``;`` separators.
"""

_OPEN = {"{": "}", "<": ">"}
_DELIMS = set("{}<>[],;:#\"'")


def skip_space(text, i):
    """Index of the first character at or after ``i`` that is neither white space nor in a comment."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif c.isspace():
            i += 1
        else:
            break
    return i


def _skip_string(text, i):
    quote, i, n = text[i], i + 1, len(text)
    while i < n and text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    return min(i + 1, n)


def _skip_token(text, i):
    n = len(text)
    while i < n and not text[i].isspace() and text[i] not in _DELIMS:
        i += 1
    return i


def skip_value(text, i):
    """End index of the value starting at ``i``: a message, a list, strings or one scalar token."""
    n = len(text)
    if i >= n:
        return i
    c = text[i]
    if c in _OPEN or c == "[":
        depth, j = 0, i
        while j < n:
            c = text[j]
            if c in "\"'":
                j = _skip_string(text, j)
                continue
            if c == "#":
                j = skip_space(text, j)
                continue
            if c in "{<[":
                depth += 1
            elif c in "}>]":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return n
    if c in "\"'":  # adjacent strings concatenate
        j = _skip_string(text, i)
        k = skip_space(text, j)
        while k < n and text[k] in "\"'":
            j = _skip_string(text, k)
            k = skip_space(text, j)
        return j
    return max(_skip_token(text, i), i + 1)


def field_span(text, i):
    """``(start, end)`` of the field whose name starts at ``i`` (name, optional ``:``, its value, a
    trailing separator), or None when no field name starts there."""
    end = _skip_token(text, i)
    if end == i:
        return None
    j = skip_space(text, end)
    if j < len(text) and text[j] == ":":
        j = skip_space(text, j + 1)
    elif not (j < len(text) and text[j] in _OPEN):
        return None
    end = skip_value(text, j)
    k = skip_space(text, end)
    if k < len(text) and text[k] in ",;":
        end = k + 1
    return i, end


def field_before(text, i):
    """Start of the field name whose value starts at ``i`` (``name: VALUE``), or None."""
    j = i - 1
    while j >= 0 and text[j].isspace():
        j -= 1
    if j < 0 or text[j] != ":":
        return None
    j -= 1
    while j >= 0 and text[j].isspace():
        j -= 1
    end = j + 1
    while j >= 0 and (text[j].isalnum() or text[j] == "_"):
        j -= 1
    return j + 1 if j + 1 < end else None


def blank(text, start, end):
    """``text`` with ``[start, end)`` replaced by spaces, newlines kept (line:column stay valid)."""
    return text[:start] + "".join(c if c == "\n" else " " for c in text[start:end]) + text[end:]


def offset_of(text, line, column):
    """Offset of a 1-based line and column (as protobuf's text parser reports them)."""
    pos = 0
    for _ in range(max(0, line - 1)):
        nl = text.find("\n", pos)
        if nl < 0:
            return len(text)
        pos = nl + 1
    return min(len(text), pos + max(0, column - 1))


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def top_level_blocks(text):
    """``[(keyword, start, end, line)]`` for every top-level ``keyword { ... }`` (or ``keyword: { }``)."""
    out, i, n = [], 0, len(text)
    while True:
        i = skip_space(text, i)
        if i >= n:
            return out
        start = i
        end = _skip_token(text, i)
        if end == i:  # a stray delimiter: step over it (the parser reports real syntax errors)
            i = _skip_string(text, i) if text[i] in "\"'" else i + 1
            continue
        word = text[start:end]
        j = skip_space(text, end)
        if j < n and text[j] == ":":
            j = skip_space(text, j + 1)
        i = skip_value(text, j)
        if j < n and text[j] in _OPEN:
            out.append((word, start, i, line_of(text, start)))

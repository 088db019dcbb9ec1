import pytest

from preimage.errors import PreimageError
from preimage.registry import Registry


def test_one_function_under_several_names_and_no_silent_replacement():
    r = Registry("thing")

    @r.register("a", "b")
    def f():
        return 1

    assert r["a"] is f and r["b"] is f
    with pytest.raises(ValueError, match="thing 'b' registered twice"):
        r.register("b")(lambda: 2)
    assert r["b"] is f
    with pytest.raises(PreimageError, match="unknown thing 'c'; expected one of: a, b"):
        r.get_or_fail("c")

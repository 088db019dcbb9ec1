"""read_t7 against real Torch7 files (corpus) and against files from the independent test writer."""
import math

import numpy as np
import pytest

import t7writer as tw
from preimage.converters.torch7.reader import read_t7
from preimage.converters.torch7.types import LuaFunction, LuaTable, T7Tensor, TorchObject
from preimage.errors import FormatError, PreimageError

MODES = [(False, 8), (False, 4), (True, 8), (True, 4)]
MODE_IDS = ["binary-long8", "binary-long4", "ascii-long8", "ascii-long4"]


# ------------------------------------------------------------------ the real-Torch7 corpus
def test_corpus_tensors(torch7_corpus):
    real = torch7_corpus / "real"
    d = read_t7(real / "doubletensor.t7")
    assert d.dtype == np.float64 and d.shape == (2, 3)
    np.testing.assert_array_equal(d, [[1, 2, 3], [4, 5, 6.9]])
    f = read_t7(real / "floattensor.t7")
    assert f.dtype == np.float32 and f.shape == (2, 3, 4)
    assert abs(float(f.sum(dtype=np.float64)) - 12.9724) < 1e-3


def test_corpus_tables(torch7_corpus):
    real = torch7_corpus / "real"
    assert read_t7(real / "hello=123.t7") == {"hello": 123}
    lst = read_t7(real / "list_table.t7")
    assert lst.is_list() and lst.to_list() == ["hello", "world", "third item", 123]
    assert read_t7(real / "map_table1.t7") == {0: "zero", 1: "hello", 2: "world", 3: "third item", 4: 123}
    assert read_t7(real / "map_table2.t7") == {1: "hello", 2: "world", 3: "third item", 4: 123, "a": "non number key"}


def test_corpus_self_references(torch7_corpus):
    real = torch7_corpus / "real"
    a = read_t7(real / "recursive_class.t7")
    assert isinstance(a, TorchObject) and a.typename == "A"
    assert a["a"] is a  # the object refers back to itself
    t = read_t7(real / "recursive_kv_table.t7")
    (k, v), = t.items()
    assert k is t and v is t  # {t = t}


def test_corpus_custom_class_and_functions(torch7_corpus):
    real = torch7_corpus / "real"
    blah = read_t7(real / "custom_class.t7")
    assert blah.typename == "Blah" and blah.version == 1 and blah.fields == {}
    fn = read_t7(real / "function.t7")
    assert isinstance(fn, LuaFunction) and fn.bytecode.startswith(b"\x1bLJ")  # LuaJIT bytecode, kept opaque
    fu = read_t7(real / "function_upvals.t7")
    assert isinstance(fu, LuaFunction)
    assert {"name": "asdf", "value": 123} in fu.upvalues.to_list()


def test_corpus_tds(torch7_corpus):
    real = torch7_corpus / "real"
    h = read_t7(real / "tds_hash.t7")
    assert h.typename == "tds.Hash" and dict(h.fields) == {1: 2, 2: 3, 10: 11}
    v = read_t7(real / "tds_vec.t7")
    assert v.typename == "tds.Vec" and v.fields.to_list() == [123, 456]


def test_corpus_nngraph(torch7_corpus):
    real = torch7_corpus / "real"
    g = read_t7(real / "gmodule_with_linear_identity.t7")
    assert g.typename == "nn.gModule"
    mods = [m.typename for m in g["modules"].to_list()]
    assert "nn.Linear" in mods and "nn.Identity" in mods
    lin = next(m for m in g["modules"].to_list() if m.typename == "nn.Linear")
    assert lin["weight"].shape == (2, 1) and lin["bias"].shape == (2,)
    node = read_t7(real / "nngraph_node.t7")
    assert node.typename == "nngraph.Node" and "data" in node


# ------------------------------------------------------------------ round trips through the test writer
def _sample():
    shared = tw.Storage("torch.DoubleStorage", np.arange(12, dtype=np.float64) * 1.5)
    a = tw.Tensor("torch.DoubleTensor", [3, 4], [4, 1], 1, shared)
    b = tw.Tensor("torch.DoubleTensor", [2, 2], [1, 4], 6, shared)  # a transposed window into the same storage
    table = {"name": "conv1", "n": 3, "x": -2.25, "big": 2.0 ** 60, "flag": True, "off": False, "nothing": None,
             "a": a, "b": b, "again": a, "list": tw.lua_list(1, "two", 3.5)}
    table["self"] = table
    obj = tw.Obj("my.Class", {"payload": table})
    obj.fields["owner"] = obj
    table["obj"] = obj
    return table


@pytest.mark.parametrize("ascii,long_size", MODES, ids=MODE_IDS)
def test_round_trip_values_and_sharing(tmp_path, ascii, long_size):
    p = tw.save(tmp_path / "x.t7", _sample(), ascii=ascii, long_size=long_size)
    t = read_t7(p)
    assert t["name"] == "conv1" and t["n"] == 3 and t["x"] == -2.25 and t["big"] == 2 ** 60
    assert t["flag"] is True and t["off"] is False and "nothing" not in t or t["nothing"] is None
    assert t["list"].to_list() == [1, "two", 3.5]
    assert t["self"] is t
    assert t["obj"].typename == "my.Class" and t["obj"]["owner"] is t["obj"] and t["obj"]["payload"] is t
    full = np.arange(12, dtype=np.float64) * 1.5
    np.testing.assert_array_equal(t["a"], full.reshape(3, 4))
    np.testing.assert_array_equal(t["b"], [[full[5], full[9]], [full[6], full[10]]])
    assert t["again"] is t["a"]
    assert np.shares_memory(t["a"], t["b"])  # one storage, two views


@pytest.mark.parametrize("ascii,long_size", MODES, ids=MODE_IDS)
def test_round_trip_every_element_type(tmp_path, ascii, long_size):
    rng = np.random.default_rng(0)
    values = {
        "Byte": rng.integers(0, 256, 7), "Char": rng.integers(-128, 128, 7), "Short": rng.integers(-2**15, 2**15, 7),
        "Int": rng.integers(-2**31, 2**31, 7), "Float": rng.standard_normal(7).astype(np.float32),
        "Double": rng.standard_normal(7), "Half": rng.standard_normal(7).astype(np.float16),
        "Long": rng.integers(-2**31, 2**31, 7) if long_size == 4 else rng.integers(-2**62, 2**62, 7),
    }
    objs = {}
    for name, v in values.items():
        for cuda in ("", "Cuda"):
            typename = f"torch.{cuda}{name}Tensor" if (cuda or name) else "torch.CudaTensor"
            objs[f"{cuda}{name}"] = tw.Tensor(typename, [7], [1], 1,
                                              tw.Storage(typename.replace("Tensor", "Storage"), v))
    objs["CudaPlain"] = tw.Tensor("torch.CudaTensor", [7], [1], 1, tw.Storage("torch.CudaStorage", values["Float"]))
    p = tw.save(tmp_path / "x.t7", objs, ascii=ascii, long_size=long_size)
    got = read_t7(p)
    expect_dtype = {"Byte": np.uint8, "Char": np.int8, "Short": np.int16, "Int": np.int32, "Long": np.int64,
                    "Float": np.float32, "Double": np.float64, "Half": np.float16}
    for key, arr in got.items():
        name = "Float" if key == "CudaPlain" else key.replace("Cuda", "")
        assert arr.dtype == expect_dtype[name], key
        np.testing.assert_array_equal(arr, values[name].astype(expect_dtype[name]), err_msg=key)
    raw = read_t7(p, tensors="raw")
    assert isinstance(raw["CudaLong"], T7Tensor) and raw["CudaLong"].typename == "torch.CudaLongTensor"
    assert raw["CudaLong"].storage.typename == "torch.CudaLongStorage"


@pytest.mark.parametrize("ascii,long_size", MODES, ids=MODE_IDS)
def test_round_trip_tds_functions_and_empty(tmp_path, ascii, long_size):
    obj = tw.lua_list(
        tw.TdsHash({"k": 1, 2: "v"}), tw.TdsVec([1, 2, 3]), tw.Func(b"\x1bLJ\x01opaque\nbytes", tw.lua_list(5)),
        tw.Tensor("torch.FloatTensor", [], [], 1, None), tw.tensor(np.zeros((2, 0))), "",
        tw.Storage("torch.LongStorage", [3, 4, 5]))
    got = read_t7(tw.save(tmp_path / "x.t7", obj, ascii=ascii, long_size=long_size)).to_list()
    assert dict(got[0].fields) == {"k": 1, 2: "v"} and got[1].fields.to_list() == [1, 2, 3]
    assert got[2].bytecode == b"\x1bLJ\x01opaque\nbytes" and got[2].upvalues.to_list() == [5]
    assert got[3].size == 0 and got[4].shape == (2, 0) and got[5] == ""
    np.testing.assert_array_equal(got[6], [3, 4, 5])


def test_long_size_is_detected_and_can_be_forced(tmp_path):
    obj = tw.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    p4 = tw.save(tmp_path / "l4.t7", obj, long_size=4)
    np.testing.assert_array_equal(read_t7(p4), np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(read_t7(p4, long_size=4), np.arange(6).reshape(2, 3))
    with pytest.raises(FormatError):
        read_t7(p4, long_size=8)
    p8 = tw.save(tmp_path / "l8.t7", obj, long_size=8)
    with pytest.raises(FormatError):
        read_t7(p8, long_size=4)


def test_big_storage_is_a_view_not_a_copy(tmp_path):
    data = np.arange(600_000, dtype=np.float32)  # > 1 MB: memory-mapped
    p = tw.save(tmp_path / "big.t7", tw.tensor(data.reshape(600, 1000)))
    arr = read_t7(p)
    np.testing.assert_array_equal(arr.reshape(-1), data)
    assert not arr.flags.owndata
    arr[0, 0] = -1  # copy-on-write: writable, the file is untouched
    assert read_t7(p)[0, 0] == 0


# ------------------------------------------------------------------ bad input: clear errors
def _bad(tmp_path, data, *match, **kw):
    p = tmp_path / "bad.t7"
    p.write_bytes(data)
    with pytest.raises(PreimageError) as e:
        read_t7(p, **kw)
    msg = str(e.value)
    assert str(p) in msg
    for m in match:
        assert m in msg, msg
    return msg


def test_truncated_file(tmp_path):
    good = tw.dumps(tw.tensor(np.ones((4, 4))))
    _bad(tmp_path, good[:-5], "truncated")
    _bad(tmp_path, tw.dumps(tw.tensor(np.ones(3)), ascii=True)[:-8], "truncated")
    _bad(tmp_path, b"", "empty")


def test_unknown_type_tag(tmp_path):
    _bad(tmp_path, tw.dumps(tw.lua_list(1))[:12] + b"\x09\x00\x00\x00" + b"\0" * 8, "unknown type tag 9", "byte 12")


def test_reference_to_undefined_object(tmp_path):
    data = bytearray(tw.dumps(tw.lua_list({}, 2)))
    # the inner table is object #2; make it claim #7 instead
    i = data.index(b"\x03\x00\x00\x00\x02\x00\x00\x00", 4)
    data[i + 4] = 7
    _bad(tmp_path, bytes(data), "object #7", "not defined yet")


def test_strides_outside_storage(tmp_path):
    t = tw.Tensor("torch.FloatTensor", [3, 3], [3, 2], 1, tw.Storage("torch.FloatStorage", np.zeros(9)))
    _bad(tmp_path, tw.dumps(t), "reaches element", "storage of 9")
    t = tw.Tensor("torch.FloatTensor", [3], [1], 0, tw.Storage("torch.FloatStorage", np.zeros(9)))
    _bad(tmp_path, tw.dumps(t), "offset 0")


def test_absurd_sizes(tmp_path):
    s = bytearray(tw.dumps(tw.Storage("torch.DoubleStorage", np.zeros(2))))
    i = s.index(b"\x02\x00\x00\x00\x00\x00\x00\x00")
    s[i:i + 8] = (2**40).to_bytes(8, "little")
    _bad(tmp_path, bytes(s), "needs at least", "left", long_size=8)
    t = tw.Tensor("torch.FloatTensor", [2**30, 2**30], [0, 0], 1, tw.Storage("torch.FloatStorage", np.zeros(1)))
    _bad(tmp_path, tw.dumps(t), "absurd size")
    _bad(tmp_path, b"\x03\x00\x00\x00\x01\x00\x00\x00\xff\xff\xff\x7f", "table entries")
    _bad(tmp_path, tw.dumps(tw.Tensor("torch.FloatTensor", [0, 2**50], [1, 1], 1, None)), "absurd size")


def test_wrong_long_size_forced(tmp_path):
    _bad(tmp_path, tw.dumps(tw.tensor(np.ones(3)), long_size=8), long_size=4)


def test_not_a_t7_file(tmp_path):
    _bad(tmp_path, b"\x89PNG\r\n\x1a\n....", "not a Torch7 file")


def test_deep_nesting_is_bounded_not_a_crash(tmp_path):
    # 50 000 nested tables: no Python recursion, and a depth limit gives a clean error
    depth = 50_000
    data = bytearray()
    for i in range(1, depth + 1):
        data += (3).to_bytes(4, "little") + i.to_bytes(4, "little") + (1).to_bytes(4, "little")
        data += (1).to_bytes(4, "little") + np.float64(1).tobytes()
    data += b"\0\0\0\0"
    p = tmp_path / "deep.t7"
    p.write_bytes(bytes(data))
    t = read_t7(p)
    for _ in range(depth - 1):
        t = t[1]
    assert t == {1: None} or t[1] is None
    with pytest.raises(FormatError, match="nested deeper"):
        read_t7(p, max_depth=1000)


def test_numbers_are_ints_when_integral(tmp_path):
    got = read_t7(tw.save(tmp_path / "n.t7", tw.lua_list(3.0, 2.5, -0.0, float("inf"), float("nan"))))
    vals = got.to_list()
    assert vals[0] == 3 and type(vals[0]) is int and vals[1] == 2.5 and math.copysign(1, vals[2]) == -1
    assert vals[3] == float("inf") and math.isnan(vals[4])
    assert isinstance(got, LuaTable)

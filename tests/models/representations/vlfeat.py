"""VLFeat 0.9.21 (Debian's libvlfeat1) through ctypes: the numerical reference for the representations.

Only the tests use it; preimage never loads VLFeat. ``lib()`` is None when the shared library is absent
(the tests then skip with ``REASON``). Images are float32 C-contiguous arrays: HOG takes C x H x W planes
(VLFeat's row-major, channel-planar layout), DSIFT and LBP one H x W grey plane.
"""
import ctypes
import ctypes.util
import functools

import numpy as np

REASON = "VLFeat 0.9.21 shared library (libvl.so, Debian package libvlfeat1) not found"
_NAMES = ("libvl.so.1", "libvl.so", "/usr/lib/x86_64-linux-gnu/libvl.so.1")

_size = ctypes.c_uint64  # vl_size on LP64
_fptr = ctypes.POINTER(ctypes.c_float)


class _Geometry(ctypes.Structure):  # VlDsiftDescriptorGeometry
    _fields_ = [("numBinT", ctypes.c_int), ("numBinX", ctypes.c_int), ("numBinY", ctypes.c_int),
                ("binSizeX", ctypes.c_int), ("binSizeY", ctypes.c_int)]


class _Dsift(ctypes.Structure):  # VlDsiftFilter (its setters and getters are inline in dsift.h)
    _fields_ = [("imWidth", ctypes.c_int), ("imHeight", ctypes.c_int), ("stepX", ctypes.c_int),
                ("stepY", ctypes.c_int), ("boundMinX", ctypes.c_int), ("boundMinY", ctypes.c_int),
                ("boundMaxX", ctypes.c_int), ("boundMaxY", ctypes.c_int), ("geom", _Geometry),
                ("useFlatWindow", ctypes.c_int), ("windowSize", ctypes.c_double), ("numFrames", ctypes.c_int),
                ("descrSize", ctypes.c_int), ("frames", ctypes.c_void_p), ("descrs", _fptr)]


@functools.lru_cache(maxsize=1)
def lib():
    for name in _NAMES:
        try:
            vl = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return None
    vl.vl_hog_new.restype = ctypes.c_void_p
    vl.vl_hog_new.argtypes = [ctypes.c_int, _size, ctypes.c_int]
    vl.vl_hog_delete.argtypes = [ctypes.c_void_p]
    vl.vl_hog_set_use_bilinear_orientation_assignments.argtypes = [ctypes.c_void_p, ctypes.c_int]
    vl.vl_hog_put_image.argtypes = [ctypes.c_void_p, _fptr, _size, _size, _size, _size]
    vl.vl_hog_extract.argtypes = [ctypes.c_void_p, _fptr]
    for f in ("vl_hog_get_width", "vl_hog_get_height", "vl_hog_get_dimension"):
        getattr(vl, f).restype = _size
        getattr(vl, f).argtypes = [ctypes.c_void_p]
    vl.vl_dsift_new_basic.restype = ctypes.POINTER(_Dsift)
    vl.vl_dsift_new_basic.argtypes = [ctypes.c_int] * 4
    vl.vl_dsift_delete.argtypes = [ctypes.POINTER(_Dsift)]
    vl.vl_dsift_process.argtypes = [ctypes.POINTER(_Dsift), _fptr]
    vl._vl_dsift_update_buffers.argtypes = [ctypes.POINTER(_Dsift)]
    vl.vl_lbp_new.restype = ctypes.c_void_p
    vl.vl_lbp_new.argtypes = [ctypes.c_int, ctypes.c_int]
    vl.vl_lbp_delete.argtypes = [ctypes.c_void_p]
    vl.vl_lbp_get_dimension.restype = _size
    vl.vl_lbp_get_dimension.argtypes = [ctypes.c_void_p]
    vl.vl_lbp_process.argtypes = [ctypes.c_void_p, _fptr, _fptr, _size, _size, _size]
    return vl


def _ptr(a):
    return a.ctypes.data_as(_fptr)


def hog(image, cell=8, variant="uoctti", orientations=9, bilinear=False):
    """vl_hog_put_image + vl_hog_extract on a C x H x W image -> dimension x Hc x Wc float32."""
    vl = lib()
    im = np.ascontiguousarray(image, dtype=np.float32)
    c, h, w = im.shape
    obj = vl.vl_hog_new({"dalaltriggs": 0, "uoctti": 1}[variant], orientations, 0)
    try:
        vl.vl_hog_set_use_bilinear_orientation_assignments(obj, int(bilinear))
        vl.vl_hog_put_image(obj, _ptr(im), w, h, c, cell)
        out = np.zeros((vl.vl_hog_get_dimension(obj), vl.vl_hog_get_height(obj), vl.vl_hog_get_width(obj)),
                       np.float32)
        vl.vl_hog_extract(obj, _ptr(out))
    finally:
        vl.vl_hog_delete(obj)
    return out


def dsift(grey, bin=8, step=8, fast=True, window=2.0):
    """vl_dsift_process on an H x W image (4 x 4 x 8 geometry) -> 128 x ny x nx float32, channel order
    (bin y, bin x, orientation) as VLFeat stores a descriptor, frames in raster order."""
    vl = lib()
    im = np.ascontiguousarray(grey, dtype=np.float32)
    h, w = im.shape
    f = vl.vl_dsift_new_basic(w, h, step, bin)
    try:
        f.contents.useFlatWindow = int(fast)
        f.contents.windowSize = float(window)
        vl._vl_dsift_update_buffers(f)
        vl.vl_dsift_process(f, _ptr(im))
        s = f.contents
        frame = bin * 3 + 1
        ny, nx = (h - frame) // step + 1, (w - frame) // step + 1
        assert s.numFrames == nx * ny and s.descrSize == 128
        d = np.ctypeslib.as_array(s.descrs, shape=(ny, nx, 128)).copy()
    finally:
        vl.vl_dsift_delete(f)
    return np.ascontiguousarray(d.transpose(2, 0, 1))


def lbp(grey, cell=16):
    """vl_lbp_process (uniform, 58 patterns) on an H x W image -> 58 x floor(H/cell) x floor(W/cell)."""
    vl = lib()
    im = np.ascontiguousarray(grey, dtype=np.float32)
    h, w = im.shape
    obj = vl.vl_lbp_new(0, 0)
    try:
        out = np.zeros((vl.vl_lbp_get_dimension(obj), h // cell, w // cell), np.float32)
        vl.vl_lbp_process(obj, _ptr(out), _ptr(im), w, h, cell)
    finally:
        vl.vl_lbp_delete(obj)
    return out

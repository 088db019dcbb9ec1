"""Regenerate ``caffe_pb2.py`` from ``caffe.proto`` (developers only; users never need this).

    pip install grpcio-tools          # provides protoc as a Python module (not an install requirement)
    python -m preimage.converters.caffe.proto.regenerate

The generated module is checked in. Its generated-code version must not be newer than the protobuf
runtime the project installs; the check that newer protoc versions put at the top of the module is
relaxed here to a no-op when the runtime lacks the ``runtime_version`` module (protobuf < 5.26).
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

GUARD_OLD = "from google.protobuf import runtime_version as _runtime_version\n"
GUARD_NEW = ("try:\n    from google.protobuf import runtime_version as _runtime_version\n"
             "except ImportError:  # protobuf < 5.26 has no version check\n"
             "    _runtime_version = None\n")


def main():
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"--python_out={HERE}", os.path.join(HERE, "caffe.proto")]
    subprocess.run(cmd, check=True)
    path = os.path.join(HERE, "caffe_pb2.py")
    with open(path) as f:
        src = f.read()
    if GUARD_OLD in src:
        src = src.replace(GUARD_OLD, GUARD_NEW)
        src = src.replace("_runtime_version.ValidateProtobufRuntimeVersion(",
                          "_runtime_version and _runtime_version.ValidateProtobufRuntimeVersion(")
    with open(path, "w") as f:
        f.write(src)
    print("wrote", path)


if __name__ == "__main__":
    main()

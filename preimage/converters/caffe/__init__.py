"""Caffe prototxt + caffemodel -> ONNX, layer by layer with Caffe's exact semantics."""

"""Learned decoders: architectures, feature datasets, training, apply and experiments.

The Python API behind ``preimage decoder``::

    from preimage.decoders import extract_features, train_decoder, load_decoder, apply_decoder

    extract_features("alexnet.onnx", "fc8", "photos/", "feats/")
    train_decoder("feats/", "runs/fc8", arch="alexnet_fc8", iters=100_000)
    dec = load_decoder("runs/fc8/checkpoint.pt")
    apply_decoder(dec, ["cat.jpg"], "out/", experiment="topk=5")

Everything works on any feature callable ``x -> {name: tensor}`` with a ``.preprocess`` (a converted
model's FeatureExtractor, or your own torch module).
"""
from .apply import apply_decoder, load_decoder
from .architectures import ARCHITECTURES, build_decoder, encoder_geometry
from . import shallow_architectures  # noqa: F401  (registers hog_twostream, sift_twostream, lbp_twostream)
from .checkpoint import Decoder
from .dataset import BatchStream, FeatureStore, TargetTransform
from .experiments import EXPERIMENTS, FeatureStats, run_experiment
from .extract import extract_features, write_store
from .steps import GANStep, ReconstructionStep
from .train import train_decoder
from .trainer import TrainConfig, Trainer, read_metrics

__all__ = ["ARCHITECTURES", "EXPERIMENTS", "BatchStream", "Decoder", "FeatureStats", "FeatureStore", "GANStep",
           "ReconstructionStep", "TargetTransform", "TrainConfig", "Trainer", "apply_decoder", "build_decoder", "encoder_geometry", "extract_features", "load_decoder",
           "read_metrics", "run_experiment", "train_decoder", "write_store"]

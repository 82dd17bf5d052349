"""Data: sources (torchvision sets, ImageFolder, the JPEG archive, a synthetic set), the val split, and the loaders
(the fast device loader, and the seed programs' PIL DataLoader for comparison)."""
from .augment import AUGMENTS, Augment, Geometry
from .config import DataConfig, SyntheticConfig
from .images import ImageData, LabeledImages, channel_stats
from .jpeg_archive import read_jpeg_archive, write_jpeg_archive
from .loaders import EvalLoader, Loaders, TrainLoader, build_loaders, normalization, served_size
from .seed_style import TorchEvalLoader, TorchTrainLoader, seed_style_loader
from .shapes import DatasetShape, dataset_shape
from .sources import SOURCES, load_dataset
from .split import holdout
from .streams import stream_seed
from .synthetic import SHAPES, make_glyphs

__all__ = ["AUGMENTS", "Augment", "DataConfig", "DatasetShape", "EvalLoader", "Geometry", "ImageData", "LabeledImages",
           "Loaders", "SHAPES", "SOURCES", "SyntheticConfig", "TorchEvalLoader", "TorchTrainLoader",
           "TrainLoader", "build_loaders", "channel_stats", "dataset_shape", "holdout", "load_dataset", "make_glyphs",
           "normalization", "read_jpeg_archive", "seed_style_loader", "served_size", "stream_seed",
           "write_jpeg_archive"]

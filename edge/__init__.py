"""Edge-device face analytics runtime: int8 TFLite face models, tracking and
privacy-safe aggregate counts."""

__version__ = "0.1.0"

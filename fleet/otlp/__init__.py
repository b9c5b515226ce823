"""The OTLP/HTTP receiver (docs/OTLP.md): decoding in ``decode``, the endpoints in ``views``."""

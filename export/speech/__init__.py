"""The speech path of the exporter: Whisper checkpoints (and CTranslate2 imports) -> speech bundles."""

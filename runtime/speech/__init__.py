"""Speech: audio reading, log-mel features, Whisper on onnxruntime, live audio."""

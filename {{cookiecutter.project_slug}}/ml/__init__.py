"""Training, evaluation, policy gates, ONNX export and parity."""

"""The serving service: onnxruntime behind the Open Inference Protocol, with capture."""

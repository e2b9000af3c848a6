"""The ground layer: what every domain shares, each thing defined once.

Records (the data contract, the whole policy, the registry entry, the capture record, gate and
drift results), the project's paths, the one ONNX feed encoder and scorer, the error types the
command line maps to exit codes, the number format and the progress reporter. Domains
(data_pipelines, ml, app, monitoring, governance) import these and never re-type what they
hold; the serving image ships this package, so it imports only the standard library,
pydantic, PyYAML, numpy and onnxruntime: never pandas, scikit-learn or Great Expectations.
`make lint` (import-linter) holds both rules.
"""

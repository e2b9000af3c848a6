"""Train the benchmark's model once and write it both ways: ONNX for app/, joblib for the baseline.

Runs with the generated project's own Python (its venv has scikit-learn, skl2onnx and
pandas) from the project folder, and reuses the project's serving test helpers, so the
model has exactly the interface the service serves. Also writes the request bodies.

Usage (run.py calls it): <project>/.venv/bin/python prepare.py --out DIR [--rows 5000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def grpc_requests(contract: object, records: list[dict], out: Path) -> dict[str, str]:
    """The same rows as serialized ModelInferRequests with raw contents, as Triton's client sends them.

    Empty when the project has no gRPC server (a project generated before it existed).
    """
    try:
        import numpy as np
        from app import grpc_predict_v2_pb2 as pb
    except ImportError:
        return {}
    files = {}
    for rows in (1, 100):
        request = pb.ModelInferRequest(model_name="bench")
        for feature in contract.features:  # type: ignore[attr-defined]
            values = [record[feature.name] for record in records[:rows]]
            if feature.is_numeric:
                request.inputs.add(name=feature.name, datatype="FP32", shape=[rows, 1])
                request.raw_input_contents.append(np.asarray(values, "<f4").tobytes())
            else:
                request.inputs.add(name=feature.name, datatype="BYTES", shape=[rows, 1])
                encoded = [value.encode() for value in values]
                request.raw_input_contents.append(
                    b"".join(len(item).to_bytes(4, "little") + item for item in encoded)
                )
        path = out / f"grpc-{rows}.bin"
        path.write_bytes(request.SerializeToString())
        files[str(rows)] = str(path)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=5000, help="training rows")
    args = parser.parse_args()
    sys.path.insert(0, str(Path.cwd()))

    import joblib
    from governance.core.contract import load
    from tests.support.serving import export_onnx, fit_pipeline, sample_records, training_frame

    contract = load()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"    training on {args.rows} rows ({contract.dataset})", flush=True)
    pipeline = fit_pipeline(contract, training_frame(contract, args.rows, seed=0))
    onnx_file = export_onnx(pipeline, contract, args.out / "models", model_name="bench")
    joblib.dump(pipeline, args.out / "model.joblib")
    # The shadow rows' challenger: the same kind of model trained on other rows (another version).
    challenger = fit_pipeline(contract, training_frame(contract, args.rows, seed=1))
    challenger_file = export_onnx(challenger, contract, args.out / "challenger", model_name="bench")
    records = sample_records(contract, 100, seed=7, sensitive=False)
    bodies = {}
    for rows in (1, 100):
        bodies[rows] = args.out / f"body-{rows}.json"
        bodies[rows].write_text(json.dumps({"records": records[:rows]}))
    summary = {
        "onnx": str(onnx_file),
        "joblib": str(args.out / "model.joblib"),
        "challenger": str(challenger_file.parent),
        "bodies": {str(rows): str(path) for rows, path in bodies.items()},
        "grpc": grpc_requests(contract, records, args.out),
    }
    (args.out / "prepared.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

"""The data contract, example data, ingestion into snapshots and Great Expectations checks."""

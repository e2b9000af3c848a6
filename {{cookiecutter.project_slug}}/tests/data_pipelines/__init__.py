"""Tests of the `data_pipelines` package."""

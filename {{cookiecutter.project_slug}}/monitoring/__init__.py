"""Drift, performance and bias checks on captured production data; retraining pull requests."""

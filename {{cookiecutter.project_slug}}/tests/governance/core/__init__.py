"""Tests of the ground layer (`governance/core`)."""

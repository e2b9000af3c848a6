"""Policy (requirements as code), the model registry and model cards."""

"""Bridges to other libraries' models and pipelines (diffusers), kept out of the core layers."""

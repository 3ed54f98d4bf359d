"""Encoders: slide aggregators (LongNet, MIL, Mamba), omics and text encoders, attention layers."""

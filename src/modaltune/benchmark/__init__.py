"""Benchmarks: method x unit x task cells, paper-style tables, and patient-level analyses."""

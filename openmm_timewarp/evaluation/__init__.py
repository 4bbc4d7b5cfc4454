"""Evaluation: metrics, parallel-tempering references and benchmarks."""

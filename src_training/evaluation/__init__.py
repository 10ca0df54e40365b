"""Evaluation: scoring methods on pairs, statistics, figures, baselines.

Dice, HD95 and field regularity per pair, paired statistics against a reference,
the report's figures and the classical baseline (elastix).
"""

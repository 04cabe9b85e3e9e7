"""Tests of simcse/runs."""

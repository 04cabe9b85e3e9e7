"""Tests of simcse/data."""

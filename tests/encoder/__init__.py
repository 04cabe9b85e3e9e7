"""Tests of simcse/encoder."""

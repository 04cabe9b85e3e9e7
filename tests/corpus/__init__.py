"""Tests of simcse/corpus."""

"""Tests of simcse/evaluation."""

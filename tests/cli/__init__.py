"""Tests of simcse/cli."""

"""Tests of simcse/objectives."""

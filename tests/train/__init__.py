"""Tests of simcse/train."""

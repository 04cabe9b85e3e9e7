"""The GPU check (scripts/gpu/): tests run on CUDA there and on the CPU everywhere, and the check itself."""

"""End to end through the entry points users run: several processes (torchrun), simulated nodes, SIGKILL/SIGTERM."""

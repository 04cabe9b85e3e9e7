"""The test suite: folders mirror the package (simcse/encoder -> tests/encoder ...); end_to_end/ runs whole
processes (torchrun, simulated nodes, SIGKILL); gpu/ is the GPU check's; helpers/ is what several modules share."""

"""trainlab's Hydra launcher: one process, seeds of a sweep trained as one fused model."""

"""trainlab's Hydra launcher: a pool of fresh processes, one per job; a dead job kills no other."""

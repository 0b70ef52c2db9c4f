"""compare's outputs, apart from the reading (sweep.py) and the judgement (claims.py):
terminal lines, markdown/CSV tables, plots and TensorBoard runs."""

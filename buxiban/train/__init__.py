"""Training: one explicit loop per method, its losses, and the run directory it writes."""

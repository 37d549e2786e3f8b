"""Training data: read and validate records, check them, tokenize them with the loss mask."""

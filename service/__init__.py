"""DAIK job service: FastAPI app and database layer (arrives with the service issue)."""

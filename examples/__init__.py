"""Runnable examples of bastion as a library; each is run by tests/examples under uvicorn."""

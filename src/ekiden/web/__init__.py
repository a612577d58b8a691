"""The FastAPI application: composes each capability's router; no business logic here."""
